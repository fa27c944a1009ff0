"""Load `sop/*.yaml` into runnable form, checking everything a file refers to.

A file is usable only if all of it is: schema, triggers, templates (present, parseable, no
undefined variables) and actions (plugin enabled, params valid). Problems are `file:line: ...`.
Template sources are snapshotted at load, so a broken template edit leaves the last good text running.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from apscheduler.triggers.base import BaseTrigger
from pydantic import BaseModel, ValidationError

from bot._context import MemberInfo, RoomInfo
from bot._files import FileRefused, check_url_syntax, inside, is_url, project_file
from bot._i18n import did_you_mean, explain_cron, explain_error, explain_template, keys_at, not_utf8, template_text
from bot._plugin import Plugin
from bot._templates import Rendered, Renderer, TemplateError
from bot._yaml import YamlDoc, YamlError, load_yaml
from bot.sop._schema import SopFile, Step, parse_sop
from bot.sop._triggers import anchor_of, trigger_for

log = logging.getLogger("qunbot.sop")

BASE_VARIABLES = ("room", "now", "today", "step", "sop")


class _AnyFilter(dict[str, Any]):
    """Filter names are the renderer's business; finding a text's variables must not trip over them."""

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, _identity)


def _identity(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


_PARSER = jinja2.Environment()  # syntax and names of inline text; rendering uses the bot's sandbox
_PARSER.filters = _AnyFilter()


@dataclass
class LoadedSop:
    """One valid SOP file, ready to run."""

    name: str
    """The file stem (`daily` for sop/daily.yaml): part of every idempotency key."""
    path: Path
    doc: YamlDoc
    sop: SopFile
    anchor: datetime | None
    triggers: dict[str, BaseTrigger | None]
    sources: dict[str, str] = field(default_factory=dict)

    def line(self, step: Step, *keys: str) -> int | None:
        return self.doc.line("steps", self.sop.steps.index(step), *keys)

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.sop.steps if s.id == step_id), None)


def sop_files(project: Path, directory: str) -> list[Path]:
    folder = project / directory
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []


def load_all(project: Path, directory: str, renderer: Renderer, templates: Sequence[Path], tz: tzinfo, *,
             now: datetime, room_tags: set[str], plugins: Mapping[str, Plugin] | None,
             ) -> tuple[dict[str, LoadedSop], dict[str, str]]:
    """Every valid file by name, and the first problem of every invalid one (`file:line: ...`) by name."""
    loaded, problems = {}, {}
    for path in sop_files(project, directory):
        try:
            loaded[path.stem] = load_one(path, project, renderer, templates, tz, now=now, room_tags=room_tags,
                                         plugins=plugins)
        except (YamlError, TemplateError) as err:
            problems[path.stem] = str(err)
        except Exception as err:  # whatever an edit does, it must not take the other files (or the bot) down
            log.exception("SOP file %s: unexpected error while loading", path)
            problems[path.stem] = f"{_display(path, project)}: cannot load: {type(err).__name__}: {err}"
    return loaded, problems


def load_one(path: Path, project: Path, renderer: Renderer, templates: Sequence[Path], tz: tzinfo, *,
             now: datetime, room_tags: set[str], plugins: Mapping[str, Plugin] | None) -> LoadedSop:
    display = _display(path, project)
    try:
        raw = load_yaml(path)
    except YamlError as err:  # name the file as the admin knows it, relative to the project
        raise YamlError(display, err.line, err.message) from None
    doc = YamlDoc(display, raw.data, raw.lines)
    sop = parse_sop(doc)
    for index, tag in enumerate(sop.targets.tags):
        if tag not in room_tags:
            raise YamlError(display, doc.line("targets", "tags", index),
                            f"targets.tags: qunbot.toml 里没有哪个群带标签 {tag!r}（在 [rooms.<群id>] tags 里加上）")
    triggers: dict[str, BaseTrigger | None] = {}
    loaded = LoadedSop(path.stem, path, doc, sop, anchor_of(sop, tz), triggers)
    for step in sop.steps:
        when = step.when
        try:
            triggers[step.id] = trigger_for(sop, step, tz)
        except ValueError as err:
            raise YamlError(display, loaded.line(step, when), f"steps.{step.id}.{when}: {explain_cron(str(err))}"
                            ) from None
        for index, name in enumerate(step.templates):
            try:
                loaded.sources[name] = _template_source(renderer, templates, name)
            except TemplateError as err:  # both places: the step that uses it and the template's own line
                key = ("variants", index) if step.variants else ("template",)
                raise YamlError(display, loaded.line(step, *key), f"steps.{step.id}: {template_text(err)}") from None
        if step.file is not None:
            _check_file(loaded, step, project)
        if step.action is not None and plugins is not None:
            _check_action(loaded, step, plugins)
        if step.member_tags and plugins is not None and "insight" not in plugins:
            raise YamlError(display, loaded.line(step, "member_tags"), f"steps.{step.id}.member_tags: 需要 insight "
                            "插件（在 qunbot.toml 的 [plugins] enabled 里加上 \"insight\"）")
        if step.text is not None:
            _check_inline(loaded, step)
        for name in step.templates:
            try:
                _check_variables(renderer, loaded, step, name, templates)
            except TemplateError as err:  # an included or extended template that is missing or broken
                raise YamlError(display, loaded.line(step), f"steps.{step.id}: {name}: {template_text(err)}") from None
        for index, _ in enumerate(step.variants or (None,)):
            _trial_render(renderer, loaded, step, index, now)
    return loaded


def _trial_render(renderer: Renderer, loaded: LoadedSop, step: Step, variant: int, now: datetime) -> None:
    """Render with a stand-in room and member: catches misspelt names and attributes, and renders over
    budget. Errors that depend on a real room's data (an empty tag list) are left to run time, where they
    fail that room only."""
    try:
        render_step(renderer, loaded, step, variant=variant, room=sample_room(loaded.sop),
                    now=loaded.anchor or now, member=sample_member(step))
    except TemplateError as err:
        message = err.message.lower()
        signs = ("is undefined", "has no attribute", "no filter", "no test", "recursion")
        if err.over_budget or any(sign in message for sign in signs):
            text = template_text(err, available=available_variables(loaded, step))
            raise YamlError(loaded.doc.file, loaded.line(step), f"steps.{step.id}: {text}") from None


def _check_inline(loaded: LoadedSop, step: Step) -> None:
    assert step.text is not None
    line = loaded.line(step, "text")
    try:
        ast = _PARSER.parse(step.text)
    except jinja2.TemplateSyntaxError as err:
        raise YamlError(loaded.doc.file, line, f"steps.{step.id}.text: {explain_template(err.message or '')}"
                        ) from None
    unknown = jinja2.meta.find_undeclared_variables(ast) - available_variables(loaded, step)
    if unknown:
        raise YamlError(loaded.doc.file, line, f"steps.{step.id}.text: {_unknown_text(unknown, loaded, step)}")


def variant_of(loaded: LoadedSop, step: Step, room_id: str) -> int:
    """Which variant a room gets: a stable hash of file, step and room, the same after every restart."""
    if not step.variants:
        return 0
    digest = hashlib.sha256(f"{loaded.name}:{step.id}:{room_id}".encode()).hexdigest()
    return int(digest, 16) % len(step.variants)


def render_step(renderer: Renderer, loaded: LoadedSop, step: Step, *, variant: int, room: RoomInfo,
                now: datetime, member: MemberInfo | None = None) -> Rendered | None:
    """The text of one post (None for an action step), from the snapshotted template or inline text."""
    if step.action is not None:
        return None
    variables: dict[str, Any] = {"room": room, "now": now, "today": now.date(), "step": step.id,
                                 "sop": loaded.sop.name or loaded.name, **step.vars}
    if loaded.anchor is not None:
        variables["start"] = loaded.anchor
    if member is not None:
        variables["member"] = member
    if step.text is not None:
        return renderer.render_string(step.text, name=f"{loaded.doc.file}:{loaded.line(step, 'text')}", **variables)
    name = step.templates[variant]
    return renderer.render_string(loaded.sources[name], name=name, **variables)


def sample_room(sop: SopFile) -> RoomInfo:
    """A stand-in room for check and preview when the real rooms are not known."""
    if sop.targets.rooms:
        return RoomInfo(sop.targets.rooms[0], "", sop.targets.tags)
    pattern = sop.targets.topics[0] if sop.targets.topics else ""
    return RoomInfo(f"<{pattern or ','.join(sop.targets.tags)}>", pattern.replace("*", ""), sop.targets.tags)


def sample_member(step: Step) -> MemberInfo | None:
    return MemberInfo("new_member", "新成员") if step.after_join is not None else None


def grace_of(loaded: LoadedSop, step: Step) -> timedelta:
    return loaded.sop.grace_of(step)


def _check_file(loaded: LoadedSop, step: Step, project: Path) -> None:
    """A step's `file:` is a file inside the project (symlinks resolved) or an http(s) URL; the address
    a URL reaches is checked again when it is sent, after DNS."""
    assert step.file is not None
    where = loaded.doc.file, loaded.line(step, "file")
    try:
        if is_url(step.file):
            check_url_syntax(step.file)
        elif not project_file(project, step.file).is_file():
            raise YamlError(*where, f"steps.{step.id}.file: 项目文件夹里没有 {step.file!r}"
                            "（写项目里的路径，或 http(s) 网址）")
    except FileRefused as err:
        raise YamlError(*where, f"steps.{step.id}.file: {err}") from None


def _template_source(renderer: Renderer, templates: Sequence[Path], name: str) -> str:
    for folder in templates:
        candidate = folder / name
        if candidate.is_file():
            if not inside(folder, candidate):
                raise TemplateError(f"{folder.name}/{name}", None,
                                    f"模板 {name} 是指向模板文件夹之外的符号链接，不能使用")
            try:
                source = candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                line = candidate.read_bytes()[:err.start].count(b"\n") + 1 if isinstance(err, UnicodeDecodeError) \
                    else None
                raise TemplateError(f"{folder.name}/{name}", line, not_utf8() if line else f"读不了这个模板：{err}"
                                    ) from None
            renderer.check(name)
            return source
    raise TemplateError(f"{templates[0].name}/{name}" if templates else name, None, f"找不到模板 {name}")


def available_variables(loaded: LoadedSop, step: Step) -> set[str]:
    """Every name a step's text may use: the engine's variables, the step's `vars:` and `bot_name`."""
    allowed = {*BASE_VARIABLES, "bot_name", *step.vars}
    if loaded.anchor is not None:
        allowed.add("start")
    if step.after_join is not None:
        allowed.add("member")
    return allowed


def _unknown_text(unknown: set[str], loaded: LoadedSop, step: Step) -> str:
    return (f"用了没有定义的变量 {'、'.join(sorted(unknown))}（可以用的变量："
            f"{'、'.join(sorted(available_variables(loaded, step)))}；自己的值写在这一步的 vars: 里）")


def _check_variables(renderer: Renderer, loaded: LoadedSop, step: Step, name: str, templates: Sequence[Path]) -> None:
    """Every variable a template names must be given, even one only in a branch that will not run for this
    step (`{% else %}`): which branch runs can depend on the room, so only the names are checked."""
    unknown = renderer.undeclared_variables(name) - available_variables(loaded, step)
    if unknown:
        where = _first_use(templates, name, unknown) or name
        raise YamlError(loaded.doc.file, loaded.line(step), f"steps.{step.id}: 模板 {where} "
                        f"{_unknown_text(unknown, loaded, step)}")


def _first_use(templates: Sequence[Path], name: str, variables: set[str], depth: int = 0) -> str | None:
    """`scripts_templates/t.j2:4`: the template file and line where one of `variables` is first read,
    following includes (the line docs/sop.md promises)."""
    for folder in templates:
        path = folder / name
        if not path.is_file():
            continue
        try:
            ast = _PARSER.parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError):
            return None
        lines = [n.lineno for n in ast.find_all(jinja2.nodes.Name) if n.ctx == "load" and n.name in variables]
        if lines:
            return f"{folder.name}/{name}:{min(lines)}"
        if depth < 5:
            for ref in jinja2.meta.find_referenced_templates(ast):
                if ref and (found := _first_use(templates, ref, variables, depth + 1)):
                    return found
        return None
    return None


def _check_action(loaded: LoadedSop, step: Step, plugins: Mapping[str, Plugin]) -> None:
    assert step.action is not None
    spec, file = step.action, loaded.doc.file
    plugin = plugins.get(spec.plugin)
    if plugin is None:
        raise YamlError(file, loaded.line(step, "action", "plugin"),
                        f"steps.{step.id}.action: 插件 {spec.plugin} 没有启用（在 qunbot.toml 的 [plugins] enabled "
                        "里加上它）")
    action = plugin.actions.get(spec.name)
    if action is None:
        known = "、".join(sorted(plugin.actions))
        guess = did_you_mean(spec.name, sorted(plugin.actions))
        raise YamlError(file, loaded.line(step, "action", "name"),
                        f"steps.{step.id}.action: 插件 {spec.plugin} 没有动作 {spec.name}"
                        + (f"，是不是想写 {guess}？" if guess else f"（它有的动作：{known or '无'}）"))
    if action.params is not None:
        _validate_params(loaded, step, action.params)


def _validate_params(loaded: LoadedSop, step: Step, model: type[BaseModel]) -> None:
    assert step.action is not None
    try:
        model.model_validate(step.action.params)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = [str(p) for p in first["loc"]]
        line = loaded.line(step, "action", "params", *loc) if loc else loaded.line(step, "action", "params")
        where = ".".join(["params", *loc])
        parent = first["loc"][:-1] if first["type"] == "extra_forbidden" else first["loc"]
        text = explain_error(first, allowed=keys_at(model, parent))
        raise YamlError(loaded.doc.file, line, f"steps.{step.id}.action.{where}: {text}") from None


def _display(path: Path, project: Path) -> str:
    try:
        return str(path.relative_to(project))
    except ValueError:
        return str(path)
