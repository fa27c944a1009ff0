"""Load hand-edited YAML (scenarios, SOP files, quiz banks) as plain data that remembers its lines.

Admins edit these files by hand, so every error must say `file:line: problem`. Parsing is YAML 1.2
(`08:00` and `yes` stay strings) and timestamps stay the strings the admin wrote; callers parse them.
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

from bot._i18n import explain_error, explain_yaml, keys_at, not_utf8, os_error

Path_ = tuple[str | int, ...]


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
        data = Path(path).read_bytes()
    except OSError as err:
        raise YamlError(str(path), None, os_error(err)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise YamlError(str(path), data[:err.start].count(b"\n") + 1, not_utf8()) from None
    return load_yaml_text(text, str(path))


def load_yaml_text(text: str, file: str = "<string>") -> YamlDoc:
    """Parse YAML text; `file` names it in errors."""
    yaml = YAML(typ="rt")
    yaml.Constructor, yaml.Resolver = _Constructor, _Resolver
    try:
        raw = yaml.load(text)
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
    return YamlDoc(file, _plain(raw, (), lines), lines)


def _plain(node: Any, path: Path_, lines: dict[Path_, int]) -> Any:
    """Convert ruamel's round-trip types to plain Python, recording each child's line under its path."""
    if isinstance(node, CommentedMap):
        result = {}
        for key, value in node.items():
            plain_key = _scalar(key)
            if (pos := node.lc.data.get(key)) is not None:  # merged (`<<:`) keys have no position
                lines[(*path, plain_key)] = pos[0] + 1
            result[plain_key] = _plain(value, (*path, plain_key), lines)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            if (pos := node.lc.data.get(index)) is not None:
                lines[(*path, index)] = pos[0] + 1
            items.append(_plain(value, (*path, index), lines))
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
