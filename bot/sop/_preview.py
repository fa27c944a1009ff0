"""`qunbot sop preview`: a readable timeline of what will be posted where and when, rendered.

It uses the engine's own trigger computation (`fire_times`) and rendering (`render_step`, the same
variant choice), so what the preview shows is what the engine does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

from bot._config import ProjectConfig
from bot._context import RoomInfo
from bot._i18n import template_text
from bot._templates import Renderer, TemplateError
from bot._yaml import YamlError
from bot.sop._load import LoadedSop, render_step, sample_member, sample_room, variant_of
from bot.sop._schema import Step, Targets, parse_duration
from bot.sop._triggers import date_range, fire_times

_WEEKDAYS = "一二三四五六日"
KIND_LABELS = {"content": "内容", "interaction": "互动", "marketing": "营销"}
GROUP_LABELS = {"long-term": "长期群", "flash": "快闪群"}


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    loaded: LoadedSop
    step: Step
    joined: bool


def target_label(targets: Targets) -> str:
    """Which rooms, in words an admin reads at a glance: `群名以「快闪」开头的群`."""
    parts = [f"群 {room}" for room in targets.rooms]
    for pattern in targets.topics:
        stem = pattern.rstrip("*")
        if stem and pattern.endswith("*") and not any(c in stem for c in "*?["):
            parts.append(f"群名以「{stem}」开头的群")
        elif any(c in pattern for c in "*?["):
            parts.append(f"群名匹配「{pattern}」的群")
        else:
            parts.append(f"群名为「{pattern}」的群")
    parts += [f"标签为「{tag}」的群" for tag in targets.tags]
    return "、".join(parts)


def _room_for(loaded: LoadedSop, room: str | None, config: ProjectConfig) -> RoomInfo | None:
    """The room to render for; None if `room` (an id, or a topic) is not targeted by this file."""
    if room is None:
        return sample_room(loaded.sop)
    targets, tags = loaded.sop.targets, config.room(room).tags
    if room in targets.rooms or set(tags) & set(targets.tags):
        return RoomInfo(room, "", tags)
    if any(fnmatchcase(room, pattern) for pattern in targets.topics):
        return RoomInfo(room, room, tags)
    return None


def _entries(loaded: LoadedSop, start: datetime, end: datetime) -> list[Entry]:
    entries = []
    for step in loaded.sop.steps:
        trigger = loaded.triggers.get(step.id)
        if trigger is not None:
            entries += [Entry(at, loaded, step, False) for at in fire_times(trigger, start, end)]
        elif step.after_join is not None:
            at = start + parse_duration(step.after_join, signed=False)
            if at < end:
                entries.append(Entry(at, loaded, step, True))
    return entries


def _next_post(loaded: LoadedSop, after: datetime) -> datetime | None:
    found = [next(fire_times(trigger, after, after + timedelta(days=3660)), None)
             for trigger in loaded.triggers.values() if trigger is not None]
    return min((at for at in found if at is not None), default=None)


def build_preview(files: dict[str, LoadedSop], config: ProjectConfig, renderer: Renderer, *, start: datetime,
                  days: int, room: str | None = None) -> str:
    tz = config.bot.tz
    start = start.astimezone(tz)
    end = start + timedelta(days=days)
    shown = {name: loaded for name, loaded in files.items()
             if loaded.sop.enabled and _room_for(loaded, room, config) is not None}
    entries = [entry for loaded in shown.values() for entry in _entries(loaded, start, end)]
    order = {name: index for index, name in enumerate(files)}
    entries.sort(key=lambda e: (e.at, order[e.loaded.name], e.loaded.sop.steps.index(e.step)))
    lines = [f"SOP 预览：{start:%Y-%m-%d %H:%M} 起 {days} 天（到 {end:%m-%d %H:%M}，时区 {tz.key}）"
             + (f"，只看「{room}」" if room else "") + f"，共 {len(entries)} 条", ""]
    lines += _legend(files, shown, entries, start, end, room)
    for name, loaded in files.items():
        if not loaded.sop.enabled:
            lines.append(f"  {name}：enabled: false，已停用，不会发送")
    day = None
    for entry in entries:
        local = entry.at.astimezone(tz)
        if local.date() != day:
            day = local.date()
            lines += ["", f"{local.month}月{local.day}日 周{_WEEKDAYS[local.weekday()]}"]
        lines += _entry_lines(entry, local, config, renderer, room)
    return "\n".join(lines)


def _legend(files: dict[str, LoadedSop], shown: dict[str, LoadedSop], entries: list[Entry], start: datetime,
            end: datetime, room: str | None) -> list[str]:
    """One line per file: its name, kind of group, audience, and why it is quiet in this window if it is."""
    counts = {name: sum(1 for e in entries if e.loaded.name == name) for name in shown}
    width = max((len(name) for name in shown), default=0)
    lines = []
    for name, loaded in shown.items():
        sop = loaded.sop
        label = f"{sop.name}（{GROUP_LABELS[sop.group]}）" if sop.name else GROUP_LABELS[sop.group]
        line = f"  {name:<{width}}  {label} → {target_label(sop.targets)}：{counts[name]} 条"
        if any(step.after_join is not None for step in sop.steps):
            line += f"（入群后的步骤按一位在 {start:%m-%d %H:%M} 入群的新成员计算）"
        if counts[name] == 0:
            upcoming = _next_post(loaded, end)
            if upcoming is not None:
                line += (f"；下一条在 {upcoming:%Y-%m-%d %H:%M}，用 --start {upcoming - timedelta(days=1):%Y-%m-%d}"
                         " 查看")
            elif loaded.anchor is not None and loaded.anchor < start:
                line += f"；这一场（{loaded.anchor:%Y-%m-%d %H:%M} 开始）已经结束"
        lines.append(line)
        lines += _range_lines(loaded)
    skipped = [name for name in files if name not in shown and files[name].sop.enabled]
    if room and skipped:
        line = f"  （{'、'.join(skipped)} 不发到「{room}」"
        by_topic = any(fnmatchcase(room, p) for loaded in shown.values() for p in loaded.sop.targets.topics)
        if not by_topic and any(files[name].sop.targets.topics for name in skipped):
            line += "；按群名选群的文件，请用 --room 加群名预览"
        lines.append(line + "）")
    return lines


def _range_lines(loaded: LoadedSop) -> list[str]:
    """The date range of each recurring step that has one, and where it comes from (from/until, or start:)."""
    lines = []
    for step in loaded.sop.steps:
        trigger = loaded.triggers.get(step.id)
        if (step.at is None and step.cron is None) or trigger is None:
            continue
        first, last = date_range(loaded.sop, step, getattr(trigger, "timezone", UTC))
        if first is None and last is None:
            continue
        given = step.from_ or step.until or loaded.sop.from_ or loaded.sop.until
        why = "from/until" if given else "按 start: 这一场的日子；要一直发，写 until: 不限"
        span = (f"{first:%m-%d %H:%M}" if first else "不限") + " 到 " + (f"{last:%m-%d %H:%M}" if last else "不限")
        lines.append(f"      · {step.id} 只在 {span} 之间发（{why}）")
    return lines


def _entry_lines(entry: Entry, local: datetime, config: ProjectConfig, renderer: Renderer,
                 room: str | None) -> list[str]:
    loaded, step = entry.loaded, entry.step
    target = _room_for(loaded, room, config)
    assert target is not None
    where = target_label(loaded.sop.targets)
    if entry.joined:
        where = f"私聊新成员（{where}）" if step.to == "dm" else f"{where}，@新成员"
        if step.member_tags:
            where += f"，只发给有标签「{'、'.join(step.member_tags)}」的新成员"
    head = f"  {local:%H:%M}  {loaded.name}.{step.id}  [{KIND_LABELS[step.effective_kind]}]  → {where}"
    if step.action is not None:
        spec = step.action
        params = "，".join(f"{key}: {_plain(value)}" for key, value in spec.params.items())
        return [head, f"         ▶ 启动插件动作 {spec.plugin}.{spec.name}" + (f"（{params}）" if params else ""),
                "           （消息由插件自己发出）"]
    out = [head]
    targets = loaded.sop.targets
    room_id_known = room is not None and (room in targets.rooms or bool(set(target.tags) & set(targets.tags)))
    if step.variants and not room_id_known:  # the variant follows the room id, which a topic does not tell
        out[0] += f"  {len(step.variants)} 个版本，每个群固定用其中一个"
        for index, name in enumerate(step.variants):
            out.append(f"         ── 版本 {index + 1}（{name}）")
            out += _text_lines(entry, index, target, renderer)
    else:
        variant = variant_of(loaded, step, target.id)
        if step.variants:
            out[0] += f"  这个群用版本 {variant + 1}/{len(step.variants)}（{step.variants[variant]}）"
        out += _text_lines(entry, variant, target, renderer)
    if step.file:
        out.append(f"         📎 附件：{step.file}")
    return out


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _text_lines(entry: Entry, variant: int, target: RoomInfo, renderer: Renderer) -> list[str]:
    try:
        rendered = render_step(renderer, entry.loaded, entry.step, variant=variant, room=target, now=entry.at,
                               member=sample_member(entry.step))
        text = rendered.text if rendered else ""
    except (TemplateError, YamlError) as err:
        text = f"⚠ 无法渲染：{template_text(err) if isinstance(err, TemplateError) else err}"
    return [f"         {line}" if line.strip() else "" for line in text.splitlines()]
