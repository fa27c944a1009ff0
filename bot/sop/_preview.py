"""`qunbot sop preview`: a readable timeline of what will be posted where and when, rendered.

It uses the engine's own trigger computation (`fire_times`) and rendering (`render_step`, the same
variant choice), so what the preview shows is what the engine does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from bot._config import ProjectConfig
from bot._context import RoomInfo
from bot._templates import Renderer, TemplateError
from bot._yaml import YamlError
from bot.sop._load import LoadedSop, render_step, sample_member, sample_room, variant_of
from bot.sop._schema import Step, Targets, parse_duration
from bot.sop._triggers import fire_times

_WEEKDAYS = "一二三四五六日"


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    loaded: LoadedSop
    step: Step
    joined: bool


def _target_label(targets: Targets) -> str:
    parts = [*(f"群 {r}" for r in targets.rooms), *(f"群名 {t}" for t in targets.topics),
             *(f"标签 {g}" for g in targets.tags)]
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


def build_preview(files: dict[str, LoadedSop], config: ProjectConfig, renderer: Renderer, *, start: datetime,
                  days: int, room: str | None = None) -> str:
    tz = config.bot.tz
    start = start.astimezone(tz)
    end = start + timedelta(days=days)
    entries: list[Entry] = []
    for loaded in files.values():
        if not loaded.sop.enabled or _room_for(loaded, room, config) is None:
            continue
        for step in loaded.sop.steps:
            trigger = loaded.triggers.get(step.id)
            if trigger is not None:
                entries += [Entry(at, loaded, step, False) for at in fire_times(trigger, start, end)]
            elif step.after_join is not None:
                at = start + parse_duration(step.after_join, signed=False)
                if at < end:
                    entries.append(Entry(at, loaded, step, True))
    order = {name: index for index, name in enumerate(files)}
    entries.sort(key=lambda e: (e.at, order[e.loaded.name], e.loaded.sop.steps.index(e.step)))
    lines = [f"SOP 预览 {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}（{tz.key}），共 {len(entries)} 条"
             + (f"，只看 {room}" if room else "")]
    if any(e.joined for e in entries):
        lines.append(f"（入群后的步骤按一位在 {start:%m-%d %H:%M} 入群的新成员计算）")
    day = None
    for entry in entries:
        local = entry.at.astimezone(tz)
        if local.date() != day:
            day = local.date()
            lines += ["", f"{local.month}月{local.day}日 周{_WEEKDAYS[local.weekday()]}"]
        lines += _entry_lines(entry, local, config, renderer, room)
    return "\n".join(lines)


def _entry_lines(entry: Entry, local: datetime, config: ProjectConfig, renderer: Renderer,
                 room: str | None) -> list[str]:
    loaded, step = entry.loaded, entry.step
    target = _room_for(loaded, room, config)
    assert target is not None
    where = ("私聊新成员" if step.to == "dm" else f"{_target_label(loaded.sop.targets)} @新成员") if entry.joined \
        else _target_label(loaded.sop.targets)
    head = f"  {local:%H:%M}  {loaded.name}.{step.id}  → {where}  [{step.effective_kind}]"
    variant = variant_of(loaded, step, target.id)
    if step.variants:
        head += f"  变体 {variant + 1}/{len(step.variants)} {step.variants[variant]}"
    out = [head]
    if step.action is not None:
        params = json.dumps(step.action.params, ensure_ascii=False)
        out.append(f"         ▶ 启动插件动作 {step.action.plugin}.{step.action.name} {params}")
        return out
    try:
        rendered = render_step(renderer, loaded, step, variant=variant, room=target, now=entry.at,
                               member=sample_member(step))
        text = rendered.text if rendered else ""
    except (TemplateError, YamlError) as err:
        text = f"⚠ 无法渲染：{err}"
    out += [f"         {line}" for line in text.splitlines()]
    if step.file:
        out.append(f"         📎 {step.file}")
    return out
