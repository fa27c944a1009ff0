"""The long-term group rule: marketing stays at or under a share of all posts in any 7-day window.

Operations playbooks keep long-term groups (长期群) mostly content and interaction (default share
20%, `[sop] marketing_share`). Flash groups (`group: flash`) exist to sell and are not counted.
Join-relative steps are per member, not per room, so they are left out of the count.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from bot._config import RoomSettings
from bot.sop._load import LoadedSop
from bot.sop._triggers import fire_times

WINDOW = timedelta(days=7)
HORIZON = timedelta(days=28)


@dataclass(frozen=True, slots=True)
class _Post:
    at: datetime
    marketing: bool
    file: LoadedSop
    line: int | None


def _audiences(files: Iterable[LoadedSop], rooms: Mapping[str, RoomSettings]) -> dict[str, list[LoadedSop]]:
    """Who sees what: each room id, topic pattern and tag a long-term file names, with every file it gets."""
    audiences: dict[str, list[LoadedSop]] = {}
    long_term = [f for f in files if f.sop.group == "long-term" and f.sop.enabled]
    for loaded in long_term:
        t = loaded.sop.targets
        for label in [f"room {r}" for r in t.rooms] + [f"topic {p}" for p in t.topics] + [f"tag {g}" for g in t.tags]:
            audiences.setdefault(label, [])
    for label, members in audiences.items():
        kind, _, value = label.partition(" ")
        for loaded in long_term:
            t = loaded.sop.targets
            room_tags = rooms[value].tags if kind == "room" and value in rooms else ()
            if ((kind == "room" and (value in t.rooms or set(room_tags) & set(t.tags)))
                    or (kind == "topic" and value in t.topics) or (kind == "tag" and value in t.tags)):
                members.append(loaded)
    return audiences


def _posts(files: Iterable[LoadedSop], start: datetime, end: datetime) -> list[_Post]:
    posts = []
    for loaded in files:
        for step in loaded.sop.steps:
            trigger = loaded.triggers.get(step.id)
            if trigger is None:
                continue
            marketing = step.effective_kind == "marketing"
            for fire in fire_times(trigger, start, end):
                posts.append(_Post(fire, marketing, loaded, loaded.line(step, "kind") or loaded.line(step)))
    return sorted(posts, key=lambda p: p.at)


def marketing_problems(files: Iterable[LoadedSop], rooms: Mapping[str, RoomSettings], share: float, tz: tzinfo, *,
                       start: datetime) -> list[str]:
    """One problem per audience whose marketing share breaks the rule, naming the violating windows."""
    files = list(files)
    anchors = [f.anchor for f in files if f.anchor is not None and f.anchor > start]
    end = max([start + HORIZON, *(a + HORIZON for a in anchors)])
    problems = []
    for label, members in sorted(_audiences(files, rooms).items()):
        posts = _posts(members, start, end)
        times = [p.at for p in posts]
        # A window [s, s + 7d) changes content only where s passes a post or s + 7d reaches one, so
        # windows starting at each post and windows ending just before each post cover them all.
        starts = sorted({*times, *(t - WINDOW for t in times if t - WINDOW >= start)})
        windows: list[tuple[datetime, int, int]] = []
        for begin in starts:
            if begin + WINDOW > end:
                break  # a window cut off by the horizon would overstate the share
            if windows and begin < windows[-1][0] + WINDOW:
                continue  # report windows that do not overlap a reported one
            inside = posts[bisect_left(times, begin):bisect_left(times, begin + WINDOW)]
            sold = sum(p.marketing for p in inside)
            if sold and sold / len(inside) > share + 1e-9:
                windows.append((begin, sold, len(inside)))
        if not windows:
            continue
        at, sold, total = windows[0]
        blame = next(p for p in posts if p.marketing and at <= p.at < at + WINDOW)
        more = f"；另外还有 {len(windows) - 1} 段也超了（从 " + "、".join(
            w[0].astimezone(tz).strftime("%m-%d") for w in windows[1:]) + " 开始）" if len(windows) > 1 else ""
        kind, _, value = label.partition(" ")
        who = {"room": f"群 {value}", "topic": f"群名 {value}", "tag": f"标签 {value}"}[kind]
        problems.append(
            f"{blame.file.doc.file}:{blame.line}: 长期群营销比例超了（{who}）：从 "
            f"{at.astimezone(tz).strftime('%Y-%m-%d %H:%M')} 起的 7 天里 {total} 条有 {sold} 条是营销"
            f"（{sold / total:.0%}，[sop] marketing_share 只允许 {share:.0%}）{more}。减少 kind: marketing 的步骤、"
            "加几条内容，或把文件改成 group: flash")
    return problems
