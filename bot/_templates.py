"""Scripts (话术) in jinja2: written by group admins, rendered by plugins and the SOP engine.

Admins are not programmers and templates are not trusted code, so the
environment is sandboxed (no attribute games reach Python internals, no mutating
method is reachable, variables arrive as plain data), every render runs within a
budget, an undefined variable is an error rather than an empty string, and every
error names the template file and line.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import jinja2.meta
from jinja2 import nodes

from bot._files import inside
from bot._sandbox import (
    BudgetedEnvironment,
    BudgetExceeded,
    RenderBudget,
    metering,
    static_overrun,
    stop_metering,
)
from bot._template_data import template_data

_WEEKDAYS = "一二三四五六日"
_COMPILED_CACHE = 256
# Per-render collector: a ContextVar is private to the running task/thread, so concurrent renders
# on one Renderer never share it, and templates cannot reach it by name.
_mentions: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("qunbot_mentions", default=None)


@dataclass(frozen=True, slots=True)
class Rendered:
    """Final chat text and the member ids it @-mentions (the adapter needs both to send a real @)."""

    text: str
    mentions: tuple[str, ...] = ()


class TemplateError(Exception):
    """A template cannot be loaded, parsed or rendered; `str()` reads `file:line: message`.

    `over_budget` marks a render stopped by its budget (`check` reports those too)."""

    def __init__(self, file: str, line: int | None, message: str, *, over_budget: bool = False) -> None:
        self.file, self.line, self.message, self.over_budget = file, line, message, over_budget
        super().__init__(f"{file}: {message}" if line is None else f"{file}:{line}: {message}")


class Renderer:
    """Load templates from search paths (earlier paths override later ones) and render them."""

    def __init__(self, search_paths: Sequence[Path], *, timezone: ZoneInfo,
                 globals: Mapping[str, Any] | None = None, budget: RenderBudget | None = None) -> None:
        self._paths = [Path(p) for p in search_paths]
        self._tz = timezone
        self.budget = budget or RenderBudget()
        self._loader = jinja2.ChoiceLoader([_ContainedLoader(p) for p in self._paths])
        self._env = BudgetedEnvironment(
            loader=self._loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=True,
        )
        self._env.globals.update(globals or {})
        self._compiled: dict[str, jinja2.Template] = {}
        self._env.filters.update({
            "mention": _mention,
            "mention_all": _mention_all,
            "cn_date": self._cn_date,
            "cn_weekday": self._cn_weekday,
            "hm": self._hm,
            "cn_duration": _cn_duration,
        })

    # --- rendering -----------------------------------------------------------------

    def render(self, name: str, /, **variables: Any) -> Rendered:
        return self._render(self._load(name), name, variables)

    def render_string(self, source: str, /, *, name: str = "<inline>", **variables: Any) -> Rendered:
        template = self._compiled.get(source)
        if template is None:  # compiling costs ~1 ms; SOP fan-out renders one source for hundreds of rooms
            try:
                template = self._env.from_string(source)
            except jinja2.TemplateSyntaxError as err:
                raise TemplateError(name, err.lineno, err.message or "syntax error") from None
            if len(self._compiled) >= _COMPILED_CACHE:
                self._compiled.clear()
            self._compiled[source] = template
        return self._render(template, name, variables)

    def _render(self, template: jinja2.Template, name: str, variables: dict[str, Any]) -> Rendered:
        collected: list[str] = []
        token = _mentions.set(collected)
        budget = metering(self.budget)
        try:
            text = template.render(**{key: template_data(value) for key, value in variables.items()})
        except TemplateError:
            raise  # from a nested render: it already names its own file and line
        except jinja2.TemplateSyntaxError as err:  # an included template that does not parse
            raise self._syntax_error(err, err.name or name) from None
        except Exception as err:
            file, line = self._where(err)
            raise TemplateError(file or name, line, _plain(err), over_budget=isinstance(err, BudgetExceeded)) from None
        finally:
            stop_metering(budget)
            _mentions.reset(token)
        return Rendered(text.strip(), tuple(dict.fromkeys(collected)))

    # --- inspection (for `check` and SOP validation) ---------------------------------

    def exists(self, name: str) -> bool:
        try:
            self._loader.get_source(self._env, name)
        except jinja2.TemplateNotFound:
            return False
        return True

    def list_templates(self) -> list[str]:
        return sorted(n for n in self._loader.list_templates() if n.endswith(".j2"))

    def check(self, name: str) -> None:
        """Parse and compile a template, without rendering, so `qunbot check` reports it before it is sent.

        Compiling also catches unknown filters and tests, which parsing alone lets through; loops and
        repetition that are over the render budget whatever the data are reported here too.
        """
        self._load(name)
        found = static_overrun(self._parse(name), self.budget)
        if found is not None:
            source = self._loader.get_source(self._env, name)[1]
            raise TemplateError(self._display(source) or name, found[0], found[1], over_budget=True)

    def undeclared_variables(self, name: str) -> set[str]:
        """Variables a template (and what it includes) needs from the caller, for SOP validation.

        Names the including template sets (`{% set %}`, loop variables) count as given to what it includes.
        """
        found: set[str] = set()
        seen: set[tuple[str, frozenset[str]]] = set()
        pending: list[tuple[str, frozenset[str]]] = [(name, frozenset())]
        while pending:
            current, given = pending.pop()
            if (current, given) in seen:
                continue
            seen.add((current, given))
            ast = self._parse(current)
            found |= jinja2.meta.find_undeclared_variables(ast) - given
            assigned = given | {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
            pending.extend((ref, assigned) for ref in jinja2.meta.find_referenced_templates(ast) if ref)
        # Filters live in their own namespace and never show up here; subtracting their names would
        # hide real variables called `items`, `title`, `list`...
        return found - set(self._env.globals)

    def _load(self, name: str) -> jinja2.Template:
        try:
            return self._env.get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(name, None, f"template not found: {name}") from None
        except jinja2.TemplateSyntaxError as err:
            raise self._syntax_error(err, name) from None

    def _parse(self, name: str) -> nodes.Template:
        try:
            source, filename, _ = self._loader.get_source(self._env, name)
        except jinja2.TemplateNotFound:
            raise TemplateError(name, None, f"template not found: {name}") from None
        try:
            return self._env.parse(source, name, filename)
        except jinja2.TemplateSyntaxError as err:
            raise self._syntax_error(err, name) from None

    # --- where an error happened ---------------------------------------------------

    def _syntax_error(self, err: jinja2.TemplateSyntaxError, name: str) -> TemplateError:
        file = self._display(err.filename) if err.filename else None
        return TemplateError(file or name, err.lineno, err.message or "syntax error")

    def _where(self, err: Exception) -> tuple[str | None, int | None]:
        """The innermost template frame of a rendering error.

        jinja2 rewrites the traceback so each template frame is a fake frame (marked by
        `__jinja_exception__` in its globals) whose filename and line are the template's.
        """
        found: tuple[str | None, int | None] = (None, None)
        tb = err.__traceback__
        while tb is not None:
            if "__jinja_exception__" in tb.tb_frame.f_globals:
                filename = tb.tb_frame.f_code.co_filename
                found = (None if filename == "<template>" else self._display(filename), tb.tb_lineno)
            tb = tb.tb_next
        return found

    def _display(self, filename: str) -> str | None:
        """The path an admin would open, `scripts_templates/points/ok.j2`: relative to the search path's parent."""
        for path in self._paths:
            relative = os.path.relpath(filename, path)
            if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
                return Path(path.resolve().name, relative).as_posix()
        return None

    # --- filters that need the bot's timezone ------------------------------------------

    def _local(self, value: Any, filter_name: str) -> datetime | date:
        if isinstance(value, datetime):
            return value.astimezone(self._tz) if value.tzinfo is not None else value
        if isinstance(value, date):
            return value
        raise TypeError(f"{filter_name} needs a date or time, got {type(value).__name__}")

    def _cn_date(self, value: datetime | date, year: bool = False) -> str:
        local = self._local(value, "cn_date")
        text = f"{local.month}月{local.day}日"
        return f"{local.year}年{text}" if year else text

    def _cn_weekday(self, value: datetime | date, prefix: str = "周") -> str:
        return f"{prefix}{_WEEKDAYS[self._local(value, 'cn_weekday').weekday()]}"

    def _hm(self, value: datetime | time) -> str:
        local = value if isinstance(value, time) else self._local(value, "hm")
        if not isinstance(local, datetime | time):
            raise TypeError("hm needs a time of day, got a date")
        return f"{local.hour:02d}:{local.minute:02d}"


def _mention(who: Any) -> str:
    """`{{ member | mention }}` → "@名字", and the id goes into `Rendered.mentions`."""
    member_id, name = _who(who)
    collected = _mentions.get()
    if collected is not None:
        collected.append(member_id)
    return f"@{name}"


def _mention_all(people: Any) -> str:
    return " ".join(_mention(p) for p in people)


def _who(who: Any) -> tuple[str, str]:
    if isinstance(who, Mapping):
        member_id, name = who.get("id"), who.get("display") or who.get("name")
    else:
        member_id, name = getattr(who, "id", None), getattr(who, "display", None) or getattr(who, "name", None)
    if member_id is None:
        raise TypeError(f"mention needs a member (with id and name), got {type(who).__name__}")
    return str(member_id), str(name or member_id)


def _cn_duration(value: timedelta | float) -> str:
    """`5400` or `timedelta(hours=1, minutes=30)` → "1小时30分钟": zero parts dropped, at most two parts
    ("分钟", not "分": next to "10 积分" a bare 分 reads as points)."""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    parts = []
    for unit, size in (("天", 86400), ("小时", 3600), ("分钟", 60), ("秒", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return sign + "".join(parts[:2]) if parts else "0秒"


class _ContainedLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that refuses a template whose real path (symlinks resolved) leaves its folder:
    `{% include %}` must not read server files through a symlink under scripts_templates/."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if not any(inside(Path(folder), Path(filename)) for folder in self.searchpath):
            raise TemplateError(template, None, f"模板 {template} 是指向模板文件夹之外的符号链接，不能使用")
        return source, filename, uptodate


def _plain(err: Exception) -> str:
    if isinstance(err, BudgetExceeded):
        return str(err)
    if isinstance(err, jinja2.TemplateNotFound):
        return f"template not found: {err.name}"
    if isinstance(err, jinja2.TemplateError):  # UndefinedError, SecurityError: jinja2's words are plain
        return err.message or type(err).__name__
    return f"{type(err).__name__}: {err}"
