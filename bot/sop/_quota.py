"""Per-room post budgets: an SOP set that would post more into a room than its account's quota allows is refused.

WeCom lets each customer group receive at most as many group messages a month as the month has days (the
console offers 7 a week or 1 a day instead). `sop check` and `sop preview` count, for every room a
quota-limited account serves, the posts of every file that reaches it, period by period, with the engine's
own trigger arithmetic; the outbox enforces the same budget at send time. Join steps are per member and
cannot be counted ahead; plugin actions count as one post each (they post at least once).
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from itertools import islice

from bot._config import ProjectConfig
from bot._coverage import KnownRoom
from bot.adapters._base import Capabilities, RoomQuota
from bot.sop._load import LoadedSop
from bot.sop._needs import matches
from bot.sop._schema import Step
from bot.sop._triggers import fire_times

HORIZON = {"month": timedelta(days=400), "week": timedelta(days=63), "day": timedelta(days=14)}
"""How far ahead budgets are counted: every calendar month of a year (February too), 9 weeks, 2 weeks."""
MAX_FIRES = 5000
"""Fires counted per step: more than this in the horizon exceeds any quota long before."""


@dataclass(frozen=True, slots=True)
class Post:
    at: datetime
    loaded: LoadedSop
    step: Step


@dataclass(frozen=True, slots=True)
class Audience:
    """A room (or every room whose topic matches a pattern) of one quota-limited account, and what it gets."""

    label: str
    account: str
    files: tuple[LoadedSop, ...]


def audiences(files: Sequence[LoadedSop], config: ProjectConfig, capabilities: Mapping[str, Capabilities],
              rooms: Sequence[KnownRoom]) -> list[Audience]:
    limited = {account for account, caps in capabilities.items() if caps.room_quota is not None}
    enabled = [f for f in files if f.sop.enabled]
    found = [Audience(f"群 {room.id}", room.account, tuple(f for f in enabled if matches(f.sop.targets, room)))
             for room in rooms if room.account in limited]
    only = config.accounts[0].id if len(config.accounts) == 1 else None
    if only in limited:  # rooms chosen by topic are unknown until the bot runs: one stand-in per pattern
        patterns = dict.fromkeys(p for f in enabled for p in f.sop.targets.topics)
        found += [Audience(f"群名匹配「{p}」的群", only, tuple(f for f in enabled if p in f.sop.targets.topics))
                  for p in patterns]
    groups: dict[tuple[str, tuple[str, ...]], list[Audience]] = {}
    for audience in found:  # rooms that get the same files share one budget verdict: one line, not 200
        if audience.files:
            groups.setdefault((audience.account, tuple(f.name for f in audience.files)), []).append(audience)
    return [Audience(_labels([a.label for a in same]), same[0].account, same[0].files) for same in groups.values()]


def _labels(labels: list[str]) -> str:
    if len(labels) == 1:
        return labels[0]
    rooms = [label.removeprefix("群 ") for label in labels if label.startswith("群 ")]
    others = [label for label in labels if not label.startswith("群 ")]
    shown = "、".join(rooms[:5]) + (f" 等 {len(rooms)} 个群" if len(rooms) > 5 else "")
    return "、".join(([f"群 {shown}"] if rooms else []) + others)


def posts_of(loaded: LoadedSop, start: datetime, end: datetime) -> list[Post]:
    """Room posts a file makes in [start, end): scheduled steps into the room (join steps are per member)."""
    posts = []
    for step in loaded.sop.steps:
        trigger = loaded.triggers.get(step.id)
        if trigger is None or step.to == "dm":
            continue
        posts += [Post(at, loaded, step) for at in islice(fire_times(trigger, start, end), MAX_FIRES)]
    return posts


def quota_problems(files: Iterable[LoadedSop], config: ProjectConfig, capabilities: Mapping[str, Capabilities],
                   rooms: Sequence[KnownRoom], *, start: datetime, tz: tzinfo) -> list[str]:
    """One problem per room whose budget some period exceeds, naming file, step, room and the numbers."""
    files = list(files)
    problems = []
    cache: dict[str, list[Post]] = {}
    for audience in audiences(files, config, capabilities, rooms):
        caps = capabilities[audience.account]
        quota = caps.room_quota
        assert quota is not None
        end = max([start + HORIZON[quota.per], *(f.anchor + timedelta(days=60) for f in audience.files
                                                  if f.anchor is not None and f.anchor > start)])
        posts: list[Post] = []
        for loaded in audience.files:
            key = f"{loaded.name}:{end.isoformat()}"
            if key not in cache:
                cache[key] = posts_of(loaded, start, end)
            posts += cache[key]
        problem = _over_budget(audience, caps, quota, sorted(posts, key=lambda p: p.at), tz)
        if problem:
            problems.append(problem)
    return problems


def budget_lines(files: Iterable[LoadedSop], config: ProjectConfig, capabilities: Mapping[str, Capabilities],
                 rooms: Sequence[KnownRoom], *, start: datetime, tz: tzinfo) -> list[str]:
    """For `sop preview`: each quota-limited room's budget and the busiest period the SOP set makes there."""
    files = list(files)
    lines = []
    for audience in audiences(files, config, capabilities, rooms):
        caps = capabilities[audience.account]
        quota = caps.room_quota
        assert quota is not None
        posts = sorted((p for f in audience.files for p in posts_of(f, start, start + HORIZON[quota.per])),
                       key=lambda p: p.at)
        periods = Counter(quota.period_start(p.at.astimezone(tz)) for p in posts)
        busiest, count = max(periods.items(), key=lambda item: (item[1], -item[0].timestamp()), default=(None, 0))
        head = f"  {audience.label}（账号 {audience.account}，{caps.subject}）：{quota.describe(start.astimezone(tz))}"
        if caps.posts_need_confirmation:
            head += "，每条要群主在企业微信里确认后才发出"
        if busiest is None:
            lines.append(f"{head}；这套 SOP 不按时间给它发群消息")
            continue
        mark = "超出！" if count > quota.allowed(busiest) else "够用"
        lines.append(f"{head}；最多的是{_period_name(quota, busiest)}，要发 {count} 条"
                     f"（额度 {quota.allowed(busiest)}），{mark}")
    return lines


def _over_budget(audience: Audience, caps: Capabilities, quota: RoomQuota, posts: list[Post],
                 tz: tzinfo) -> str | None:
    by_period: dict[datetime, list[Post]] = {}
    for post in posts:
        by_period.setdefault(quota.period_start(post.at.astimezone(tz)), []).append(post)
    over = [(period, items) for period, items in sorted(by_period.items()) if len(items) > quota.allowed(period)]
    if not over:
        return None
    period, items = over[0]
    allowed = quota.allowed(period)
    blame = items[allowed]
    counts = Counter(f"{p.loaded.name}.{p.step.id}" for p in items)
    breakdown = "、".join(f"{name} {n} 条" for name, n in counts.most_common())
    days = _days(quota, period)
    average = len(items) / days
    text = (f"{blame.loaded.doc.file}:{blame.loaded.line(blame.step)}: 账号 {audience.account}（{caps.subject}）的"
            f"{audience.label} {quota.describe(period)}群发消息，这套 SOP 在{_period_name(quota, period)}要给它发 "
            f"{len(items)} 条（{breakdown}），超出 {len(items) - allowed} 条：从 "
            f"{blame.at.astimezone(tz):%m-%d %H:%M} 的步骤 {blame.step.id}（第 {allowed + 1} 条）起发不出去。")
    if days > 1 and average > allowed / days:
        text += (f"这套 SOP 平均每天要发 {_number(average)} 条，这里平均每天最多 {_number(allowed / days)} 条："
                 "每天发这么多条在这个账号的群里跑不了，请减少步骤、隔天发，或让这些群由没有配额的账号来管。")
    elif days == 1:
        text += "请减少当天的步骤，或让这些群由没有配额的账号来管。"
    if len(over) > 1:
        text += f"之后还有 {len(over) - 1} 个{_unit(quota)}也超出。"
    return text


def _days(quota: RoomQuota, period: datetime) -> int:
    if quota.per == "month":
        return calendar.monthrange(period.year, period.month)[1]
    return 7 if quota.per == "week" else 1


def _period_name(quota: RoomQuota, period: datetime) -> str:
    if quota.per == "month":
        return f" {period.year}年{period.month}月"
    if quota.per == "week":
        return f" {period:%m-%d} 起的一周"
    return f" {period:%m-%d} 这一天"


def _unit(quota: RoomQuota) -> str:
    return {"month": "月", "week": "周", "day": "天"}[quota.per]


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def task_lines(files: Iterable[LoadedSop], capabilities: Mapping[str, Capabilities],
               rooms: Sequence[KnownRoom]) -> list[str]:
    """For `sop preview`: posts that reach more rooms of an account than one task may name (WeCom: 2,000)."""
    lines = []
    for account, caps in capabilities.items():
        limit = caps.max_rooms_per_post
        if limit is None:
            continue
        own = [room for room in rooms if room.account == account]
        for loaded in files:
            reached = sum(1 for room in own if matches(loaded.sop.targets, room))
            if loaded.sop.enabled and reached > limit:
                tasks = -(-reached // limit)
                confirm = "，每个都要群主确认" if caps.posts_need_confirmation else ""
                lines.append(f"  {loaded.name}（账号 {account}，{caps.subject}）：每条发到 {reached} 个群，"
                             f"一个任务最多 {limit} 个群，会分成 {tasks} 个任务{confirm}")
    return lines
