"""Scripts (话术) in jinja2: written by group admins, rendered by plugins and the SOP engine.

Admins are not programmers and templates are not trusted code, so the
environment is sandboxed (no attribute games reach Python internals), an
undefined variable is an error rather than an empty string, and every error
names the template file and line.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

_WEEKDAYS = "一二三四五六日"
_mentions: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("qunbot_mentions", default=None)


@dataclass(frozen=True, slots=True)
class Rendered:
    """Final chat text and the member ids it @-mentions."""

    text: str
    mentions: tuple[str, ...] = ()


class TemplateError(Exception):
    """A template cannot be loaded, parsed or rendered; `str()` reads `file:line: message`."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line, self.message = file, line, message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


class Renderer:
    """Load templates from search paths (earlier paths override later ones) and render them."""

    def __init__(self, search_paths: Sequence[Path], *, timezone: ZoneInfo,
                 globals: Mapping[str, Any] | None = None) -> None:
        self._paths = [Path(p) for p in search_paths]
        self._tz = timezone
        self._env = ImmutableSandboxedEnvironment(
            loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(p)) for p in self._paths]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=True,
            keep_trailing_newline=False,
        )
        self._env.globals.update(globals or {})
        self._env.filters.update({
            "mention": self._mention,
            "mention_all": self._mention_all,
            "cn_date": self._cn_date,
            "cn_weekday": self._cn_weekday,
            "hm": self._hm,
            "cn_duration": cn_duration,
        })

    # --- rendering -----------------------------------------------------------------

    def render(self, name: str, /, **variables: Any) -> Rendered:
        try:
            template = self._env.get_template(name)
        except jinja2.TemplateNotFound as err:
            raise TemplateError(self._display(name), None, f"template not found: {err.name}") from None
        except jinja2.TemplateSyntaxError as err:
            raise self._syntax_error(err, name) from None
        return self._render(template, name, variables)

    def render_string(self, source: str, /, *, name: str = "<inline>", **variables: Any) -> Rendered:
        try:
            template = self._env.from_string(source)
        except jinja2.TemplateSyntaxError as err:
            raise TemplateError(name, err.lineno, err.message or "syntax error") from None
        return self._render(template, name, variables)

    def _render(self, template: jinja2.Template, name: str, variables: dict[str, Any]) -> Rendered:
        collected: list[str] = []
        token = _mentions.set(collected)
        try:
            text = template.render(**variables)
        except TemplateError:
            raise
        except Exception as err:
            file, line = self._where(err, template.filename)
            raise TemplateError(file or name, line, _plain(err)) from None
        finally:
            _mentions.reset(token)
        return Rendered(text.strip(), tuple(dict.fromkeys(collected)))

    # --- inspection (for `check` and SOP validation) ---------------------------------

    def exists(self, name: str) -> bool:
        try:
            self._env.loader.get_source(self._env, name)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            return False
        return True

    def list_templates(self) -> list[str]:
        return sorted(n for n in self._env.list_templates() if n.endswith(".j2"))

    def check(self, name: str) -> None:
        """Parse a template (and nothing more); raise TemplateError with the line on failure."""
        self._parse(name)

    def undeclared_variables(self, name: str) -> set[str]:
        """Variables a template (and what it includes) needs from the caller."""
        seen: set[str] = set()
        found: set[str] = set()
        pending = [name]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            ast = self._parse(current)
            found |= jinja2.meta.find_undeclared_variables(ast)
            pending.extend(ref for ref in jinja2.meta.find_referenced_templates(ast) if ref)
        return found - set(self._env.globals)

    def _parse(self, name: str) -> jinja2.nodes.Template:
        try:
            source, _, _ = self._env.loader.get_source(self._env, name)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            raise TemplateError(self._display(name), None, f"template not found: {name}") from None
        try:
            return self._env.parse(source, name)
        except jinja2.TemplateSyntaxError as err:
            raise self._syntax_error(err, name) from None

    def _syntax_error(self, err: jinja2.TemplateSyntaxError, name: str) -> TemplateError:
        missing = isinstance(err, jinja2.TemplateNotFound) or "not found" in (err.message or "")
        return TemplateError(self._display(err.name or name), err.lineno,
                             err.message if not missing else f"template not found: {err.message}")

    def _where(self, err: Exception, filename: str | None) -> tuple[str | None, int | None]:
        """The innermost template frame of a rendering error (jinja2 maps it to the template line)."""
        roots = [str(p.resolve()) for p in self._paths]
        found: tuple[str | None, int | None] = (None, None)
        tb = err.__traceback__
        while tb is not None:
            code_file = tb.tb_frame.f_code.co_filename
            if code_file == "<template>":
                found = (None, tb.tb_lineno)
            else:
                for root in roots:
                    if code_file.startswith(root + "/"):
                        found = (f"{Path(root).name}/{code_file[len(root) + 1:]}", tb.tb_lineno)
            tb = tb.tb_next
        return found

    def _display(self, name: str) -> str:
        """The path an admin would open: `scripts_templates/points/ok.j2`."""
        for path in self._paths:
            if (path / name).exists():
                return f"{path.name}/{name}"
        return name

    # --- filters -------------------------------------------------------------------

    def _mention(self, who: Any) -> str:
        member_id, name = _who(who)
        collected = _mentions.get()
        if collected is not None:
            collected.append(member_id)
        return f"@{name}"

    def _mention_all(self, people: Any) -> str:
        return " ".join(self._mention(p) for p in people)

    def _local(self, value: datetime | date) -> datetime | date:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(self._tz)
        return value

    def _cn_date(self, value: datetime | date, year: bool = False) -> str:
        local = self._local(value)
        text = f"{local.month}月{local.day}日"
        return f"{local.year}年{text}" if year else text

    def _cn_weekday(self, value: datetime | date, prefix: str = "周") -> str:
        return f"{prefix}{_WEEKDAYS[self._local(value).weekday()]}"

    def _hm(self, value: datetime) -> str:
        local = self._local(value)
        return f"{local.hour:02d}:{local.minute:02d}"  # type: ignore[union-attr]


def cn_duration(value: timedelta | float | int) -> str:
    """`5400` or `timedelta(hours=1, minutes=30)` → "1小时30分" (at most two parts)."""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    parts = []
    for unit, size in (("天", 86400), ("小时", 3600), ("分", 60), ("秒", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts[:2]) or "0秒"


def _who(who: Any) -> tuple[str, str]:
    if isinstance(who, Mapping):
        return str(who["id"]), str(who.get("display") or who.get("name") or who["id"])
    member_id = getattr(who, "id", None)
    if member_id is None:
        raise TypeError(f"mention needs a member (with id and name), got {type(who).__name__}")
    return str(member_id), str(getattr(who, "display", None) or getattr(who, "name", None) or member_id)


def _plain(err: Exception) -> str:
    if isinstance(err, jinja2.UndefinedError):
        return err.message or "undefined variable"
    if isinstance(err, SecurityError):
        return f"not allowed in a template: {err}"
    return f"{type(err).__name__}: {err}"
