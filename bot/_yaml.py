"""Load hand-edited YAML (scenarios, SOP files, quiz banks) as plain data that remembers its lines.

Admins edit these files by hand, so every error must say `file:line: problem`. Parsing is YAML 1.2
(`08:00` and `yes` stay strings) and timestamps stay the strings the admin wrote; callers parse them.

A broken edit must never stop the bot, so size is bounded before anything is built: the file's bytes,
its nesting depth (checked on the token stream, before the recursive composer sees it) and the number
of values after aliases are expanded (a few hundred bytes of `&a [*b, *b, ...]` would otherwise expand
into gigabytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tokens import (
    BlockEndToken,
    BlockMappingStartToken,
    BlockSequenceStartToken,
    FlowMappingEndToken,
    FlowMappingStartToken,
    FlowSequenceEndToken,
    FlowSequenceStartToken,
)

from bot._i18n import explain_error, explain_yaml, keys_at, not_utf8, os_error

Path_ = tuple[str | int, ...]

MAX_BYTES = 2_000_000
"""Largest YAML file read: far more than any hand-written SOP file, scenario, catalog or bank."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_VALUES = 200_000
"""Most values (keys, items, scalars) in one file once aliases are expanded."""
_OPEN = (BlockMappingStartToken, BlockSequenceStartToken, FlowMappingStartToken, FlowSequenceStartToken)
_CLOSE = (BlockEndToken, FlowMappingEndToken, FlowSequenceEndToken)


class YamlError(Exception):
    """A problem in a YAML file, located for the person who has to fix it."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line, self.message = file, line, message
        super().__init__(f"{file}:{line}: {message}" if line is not None else f"{file}: {message}")


@dataclass(frozen=True)
class YamlDoc:
    """Plain data from one YAML document, plus the line of every key and item in it."""

    file: str
    data: Any
    lines: Mapping[Path_, int] = field(default_factory=dict, repr=False, compare=False)

    def line(self, *path: str | int) -> int | None:
        """1-based line of the entry at `path` (a key's own line); if missing, that of its deepest parent."""
        for end in range(len(path), -1, -1):
            if (found := self.lines.get(tuple(path[:end]))) is not None:
                return found
        return None


class _Constructor(RoundTripConstructor):
    """Round-trip constructor that keeps timestamps as the scalar text the admin wrote."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", lambda self, node: self.construct_scalar(node))


class _Resolver(VersionedResolver):
    """YAML 1.2 even under a `%YAML 1.1` directive: `08:00` must not become 480, nor `yes` True."""

    @property
    def processing_version(self) -> tuple[int, int]:
        return (1, 2)


def load_yaml(path: Path | str) -> YamlDoc:
    """Read and parse a YAML file; any problem (unreadable, bad syntax, duplicate key) is a YamlError."""
    try:
        with Path(path).open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as err:
        raise YamlError(str(path), None, os_error(err)) from None
    if len(data) > MAX_BYTES:
        raise YamlError(str(path), None, f"文件太大：超过 {MAX_BYTES} 字节，请拆成几个小文件")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise YamlError(str(path), data[:err.start].count(b"\n") + 1, not_utf8()) from None
    return load_yaml_text(text, str(path))


def load_yaml_text(text: str, file: str = "<string>") -> YamlDoc:
    """Parse YAML text; `file` names it in errors."""
    if len(text) > MAX_BYTES:
        raise YamlError(file, None, f"文件太大：超过 {MAX_BYTES} 字符，请拆成几个小文件")
    yaml = YAML(typ="rt")
    yaml.Constructor, yaml.Resolver = _Constructor, _Resolver
    try:
        _check_depth(yaml, text, file)
        raw = yaml.load(text)
    except RecursionError:  # the depth check should make this unreachable; never a traceback for an admin
        raise YamlError(file, None, f"嵌套太深（最多 {MAX_DEPTH} 层）") from None
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        started = err.context_mark.line + 1 if err.context_mark else line
        message = explain_yaml(str(err.problem or err.context or ""))
        if err.context and started != line and not isinstance(err, DuplicateKeyError):
            message += f"（从第 {started} 行开始的那一段）"
        raise YamlError(file, line, message) from None
    except YAMLError as err:
        raise YamlError(file, None, explain_yaml((str(err).strip() or "").splitlines()[0])) from None
    lines: dict[Path_, int] = {}
    root_line = getattr(getattr(raw, "lc", None), "line", None)
    if root_line is not None:
        lines[()] = root_line + 1
    return YamlDoc(file, _Plain(file, lines).convert(raw, ()), lines)


def _check_depth(yaml: YAML, text: str, file: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, from the scanner's tokens (the scanner does not recurse)."""
    depth = 0
    for token in yaml.scan(text):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlError(file, token.start_mark.line + 1, f"嵌套太深（最多 {MAX_DEPTH} 层）")
        elif isinstance(token, _CLOSE):
            depth -= 1


class _Plain:
    """Convert ruamel's round-trip types to plain Python, recording each child's line under its path,
    and counting every value made: aliases are expanded here, so here is where a bomb would go off."""

    def __init__(self, file: str, lines: dict[Path_, int]) -> None:
        self.file, self.lines, self.made = file, lines, 0

    def convert(self, node: Any, path: Path_) -> Any:
        self.made += 1
        if self.made > MAX_VALUES:
            line = next((self.lines[path[:end]] for end in range(len(path), -1, -1) if path[:end] in self.lines),
                        None)
            raise YamlError(self.file, line, f"内容太多：展开别名（*引用）后超过 {MAX_VALUES} 项"
                            "，请不要用别名层层复制大块内容")
        if isinstance(node, CommentedMap):
            result = {}
            for key, value in node.items():
                plain_key = _scalar(key)
                if (pos := node.lc.data.get(key)) is not None:  # merged (`<<:`) keys have no position
                    self.lines.setdefault((*path, plain_key), pos[0] + 1)
                result[plain_key] = self.convert(value, (*path, plain_key))
            return result
        if isinstance(node, CommentedSeq):
            items = []
            for index, value in enumerate(node):
                if (pos := node.lc.data.get(index)) is not None:
                    self.lines.setdefault((*path, index), pos[0] + 1)
                items.append(self.convert(value, (*path, index)))
            return items
        return _scalar(node)


def _scalar(value: Any) -> Any:
    if isinstance(value, TaggedScalar):
        return value.value
    for kind in (bool, str, int, float):  # bool first: it is an int subclass
        if isinstance(value, kind):
            return kind(value)
    if value is None or isinstance(value, tuple):  # complex keys come back as tuples
        return value
    return str(value)


def pydantic_error_to_yaml_error(doc: YamlDoc, err: pydantic.ValidationError, *, root: Path_ = (),
                                 model: type[pydantic.BaseModel] | None = None) -> YamlError:
    """The first validation error, in Chinese, as `file:line: dotted.path: 说明` (`root` prefixes its location;
    `model`, the validated model, lets an unknown key be answered with the likely one).

    A misspelt key shows up as a missing key plus an unknown one; the unknown one is reported, since
    its line is where the typo is."""
    errors = err.errors(include_url=False)
    first = errors[0]
    allowed = keys_at(model, first["loc"][:-1]) if model is not None else []
    message = explain_error(first, allowed=allowed)
    if first["type"] == "missing":
        parent = first["loc"][:-1]
        typo = next((e for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent), None)
        if typo is not None:
            wanted = str(first["loc"][-1])
            first, message = typo, f"不认识的键 {typo['loc'][-1]}，是不是想写 {wanted}？"
    loc = _data_path(doc.data, (*root, *first["loc"]))
    if loc:
        message = f"{'.'.join(str(part) for part in loc)}: {message}"
    return YamlError(doc.file, doc.line(*loc), message)


def _data_path(data: Any, loc: Path_) -> Path_:
    """Keep the parts of a pydantic location that exist in the data (plus a final missing key);
    drop the union-member names pydantic inserts, such as `list[str]`."""
    kept: list[str | int] = []
    for index, part in enumerate(loc):
        if isinstance(data, dict):
            found = part in data
        else:
            found = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if found:
            data = data[part]
        elif index < len(loc) - 1:
            continue
        kept.append(part)
    return tuple(kept)
