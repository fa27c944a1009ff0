"""The overview at hundreds of groups: totals per day, one row per group, and the groups going quiet.

Every count is a GROUP BY in the database (per day, per room and day); Python only adds up the rows,
so the page costs the same few queries at 10 rooms and at 1,000.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import bindparam, func, or_, text
from sqlmodel import Session, col, select

from bot._db import UTCDateTime
from bot._models import Membership, OutboxMessage, Room
from bot._retention import DailyCount
from bot.dashboard._data import chart
from bot.insight._facts import existing_tables, local_day

QUIET_RATIO = 0.5
"""A group is going quiet when its member messages of the last 7×24 h are at most this share of the 7×24 h before…"""
QUIET_FLOOR = 20
"""…and it had at least this many messages in the week before (a group that was never lively is not "going" quiet)."""


@dataclass
class RoomRow:
    id: str
    topic: str
    account: str
    tags: tuple[str, ...]
    members: int
    joins: int
    leaves: int
    messages: int
    signins: int
    this_week: int = 0
    """Member messages in the 7×24 h up to now (the quiet rule; the columns above are whole local days)."""
    last_week: int = 0
    """…and in the 7×24 h before that."""

    @property
    def name(self) -> str:
        return self.topic or self.id

    @property
    def change(self) -> float | None:
        """This week's messages over last week's, minus one (-0.6 = 60 % fewer); None without last week."""
        return self.this_week / self.last_week - 1 if self.last_week else None

    @property
    def quiet(self) -> bool:
        return self.last_week >= QUIET_FLOOR and self.this_week <= QUIET_RATIO * self.last_week


@dataclass
class Totals:
    rooms: int
    members: int
    joins: int
    leaves: int
    messages: int
    signins: int
    sent: int


@dataclass
class Overview:
    totals: Totals
    rooms: list[RoomRow]
    quiet: list[RoomRow]
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)


def natural_key(text_: str) -> tuple[tuple[str, int], ...]:
    """Sort key that orders the numbers inside a topic by value: 完子会员2 before 完子会员10."""
    parts = re.split(r"(\d+)", text_.casefold())
    return tuple((parts[i], int(parts[i + 1]) if i + 1 < len(parts) else -1) for i in range(0, len(parts), 2))


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _per_room_day(rows: Any, first: date) -> dict[str, dict[date, int]]:
    out: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for room_id, day, count in rows:
        day = _as_date(day)
        if day >= first:
            out[room_id][day] += int(count)
    return out


def sent_per_day(session: Session, since: date, now: datetime, tz: tzinfo) -> dict[date, int]:
    """Messages the bot sent per local day: the pruned rows' daily aggregate plus the kept rows, both summed in SQL
    (the same figures as `bot._retention.sent_per_day`)."""
    totals: dict[date, int] = defaultdict(int)
    for day, count in session.exec(select(DailyCount.day, func.sum(DailyCount.count)).where(
            DailyCount.kind == "outbox", DailyCount.status == "sent", DailyCount.day >= since)
            .group_by(DailyCount.day)).all():
        totals[_as_date(day)] += int(count)
    day = local_day(session, OutboxMessage.sent_at, now, tz)
    for on, count in session.exec(select(day, func.count()).where(
            OutboxMessage.status == "sent", col(OutboxMessage.sent_at) >= datetime.combine(since, time(0), tz))
            .group_by(day)).all():
        totals[_as_date(on)] += int(count)
    return totals


def overview(session: Session, now: datetime, tz: tzinfo, room_tags: Mapping[str, tuple[str, ...]], *,
             days: int = 14) -> Overview:
    """Every room's row (last 7 local days, members at the end of today) and the totals per day over `days`."""
    today = now.astimezone(tz).date()
    labels = [today - timedelta(days=days - 1 - i) for i in range(days)]
    first = labels[0]
    start = datetime.combine(first, time(0), tz)
    rooms = session.exec(select(Room.id, Room.topic, Room.account)).all()

    before = dict(session.exec(select(Membership.room_id, func.count()).where(
        or_(col(Membership.joined_at).is_(None), col(Membership.joined_at) < start),
        or_(col(Membership.left_at).is_(None), col(Membership.left_at) >= start)).group_by(Membership.room_id)).all())
    joined_day = local_day(session, Membership.joined_at, now, tz)
    joins = _per_room_day(session.exec(select(Membership.room_id, joined_day, func.count()).where(
        col(Membership.joined_at) >= start).group_by(Membership.room_id, joined_day)).all(), first)
    left_day = local_day(session, Membership.left_at, now, tz)
    leaves = _per_room_day(session.exec(select(Membership.room_id, left_day, func.count()).where(
        col(Membership.left_at) >= start).group_by(Membership.room_id, left_day)).all(), first)
    bounds = [datetime.combine(d, time(0), tz) for d in [*labels, today + timedelta(days=1)]]
    messages = {room_id: {d: n for d, n in zip(labels, counts, strict=True) if n}
                for room_id, counts in _spans(session, bounds).items()}
    signins: dict[str, dict[date, int]] = {}
    if "points_signin" in existing_tables(session):
        signins = _per_room_day(session.execute(text(
            "SELECT room_id, day, COUNT(*) FROM points_signin WHERE day >= :first GROUP BY room_id, day"),
            {"first": first}).all(), first)
    weeks = _weeks(session, now)
    sent = sent_per_day(session, first, now, tz)

    week = labels[-7:]
    zero: dict[date, int] = {}
    rows, member_days = [], [0] * days
    for room_id, topic, account in rooms:
        count, running = [], before.get(room_id, 0)
        room_joins, room_leaves = joins.get(room_id, zero), leaves.get(room_id, zero)
        for index, d in enumerate(labels):
            running += room_joins.get(d, 0) - room_leaves.get(d, 0)
            count.append(running)
            member_days[index] += running
        said, signed = messages.get(room_id, zero), signins.get(room_id, zero)
        this_week, last_week = weeks.get(room_id, (0, 0))
        rows.append(RoomRow(room_id, topic, account, tuple(room_tags.get(room_id, ())), count[-1],
                            sum(room_joins.get(d, 0) for d in week), sum(room_leaves.get(d, 0) for d in week),
                            sum(said.get(d, 0) for d in week), sum(signed.get(d, 0) for d in week),
                            this_week, last_week))

    def per_day(series: dict[str, dict[date, int]]) -> list[int]:
        return [sum(by_day.get(d, 0) for by_day in series.values()) for d in labels]

    known = {row.id for row in rows}
    totals = Totals(len(rows), member_days[-1], sum(r.joins for r in rows), sum(r.leaves for r in rows),
                    sum(r.messages for r in rows), sum(r.signins for r in rows), sum(sent.get(d, 0) for d in week))
    names = [f"{d.month}/{d.day}" for d in labels]

    def known_only(series: dict[str, dict[date, int]]) -> dict[str, dict[date, int]]:
        return {room: by_day for room, by_day in series.items() if room in known}

    result = Overview(totals, sorted(rows, key=lambda r: (natural_key(r.name), r.id)),
                      sorted((r for r in rows if r.quiet), key=lambda r: (r.this_week / r.last_week, -r.last_week,
                                                                          natural_key(r.name))))
    result.charts = {
        "members": chart("line", names, [{"label": "成员总数", "data": member_days}]),
        "joins": chart("bar", names, [{"label": "入群 joins", "data": per_day(known_only(joins))},
                                      {"label": "退群 leaves", "data": per_day(known_only(leaves))}]),
        "messages": chart("bar", names, [{"label": "成员消息", "data": per_day(known_only(messages))}]),
        "signins": chart("bar", names, [{"label": "签到", "data": per_day(known_only(signins))}]),
        "sent": chart("bar", names, [{"label": "机器人发出", "data": [sent.get(d, 0) for d in labels]}]),
    }
    return result


def _weeks(session: Session, now: datetime) -> dict[str, tuple[int, int]]:
    """Member messages per room in the 7×24 h up to `now` and in the 7×24 h before (equal spans, so a morning
    does not look like a quiet day)."""
    counts = _spans(session, [now - timedelta(days=14), now - timedelta(days=7), now])
    return {room_id: (this, last) for room_id, (last, this) in counts.items()}


def _spans(session: Session, bounds: list[datetime]) -> dict[str, list[int]]:
    """Per room, its member messages with bounds[i] <= at < bounds[i+1], for each i.

    One count per room and span, each a range read off the (room_id, at) index inside the database:
    no function of `at` per row and no sort, so it costs about the rows in the spans (50 ms for 350,000)."""
    spans = ", ".join(f"(SELECT COUNT(*) FROM insight_message m WHERE m.room_id = r.id AND m.at >= :b{i} "
                      f"AND m.at < :b{i + 1})" for i in range(len(bounds) - 1))
    query = text(f"SELECT r.id, {spans} FROM core_room r").bindparams(
        *(bindparam(f"b{i}", at, type_=UTCDateTime()) for i, at in enumerate(bounds)))
    return {room_id: [int(n) for n in counts] for room_id, *counts in session.execute(query)}


# --- the group table: filters, sort, pages -------------------------------------------------------

PAGE_SIZE = 50
SORTS = {"topic": "群名", "members": "成员", "joins": "入群", "leaves": "退群", "messages": "消息",
         "signins": "签到", "change": "周环比"}


@dataclass
class GroupQuery:
    """The table's query string: ?q=完子*&tag=vip&account=a1&quiet=1&sort=-messages&page=2 (all optional)."""

    q: str = ""
    tag: str = ""
    account: str = ""
    quiet: bool = False
    sort: str = "topic"
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> GroupQuery:
        sort = params.get("sort", "topic")
        if sort.lstrip("-") not in SORTS:
            sort = "topic"
        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1
        return cls(params.get("q", "").strip()[:200], params.get("tag", ""), params.get("account", ""),
                   params.get("quiet", "") in ("1", "on", "true"), sort, page)

    def params(self, **changes: Any) -> dict[str, str]:
        """This query as URL parameters (defaults left out), with `changes` applied."""
        values = {"q": self.q, "tag": self.tag, "account": self.account, "quiet": "1" if self.quiet else "",
                  "sort": "" if self.sort == "topic" else self.sort, "page": "" if self.page == 1 else str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v and not (k == "page" and v == "1")}

    def toggle(self, key: str) -> str:
        """The sort a click on column `key` asks for: the other direction if it is the current one, else the
        column's natural first direction (topics A→Z, the biggest fall first, other numbers largest first)."""
        if self.sort.lstrip("-") == key:
            return key if self.sort.startswith("-") else f"-{key}"
        return key if key in ("topic", "change") else f"-{key}"

    def matches(self, row: RoomRow) -> bool:
        if self.q:
            pattern = self.q if any(c in self.q for c in "*?[") else f"*{self.q}*"
            if not (fnmatchcase(row.topic.casefold(), pattern.casefold()) or fnmatchcase(row.id, pattern)):
                return False
        return ((not self.tag or self.tag in row.tags) and (not self.account or row.account == self.account)
                and (not self.quiet or row.quiet))


@dataclass
class GroupPage:
    rows: list[RoomRow]
    matched: int
    page: int
    pages: int
    sums: dict[str, int]


def group_page(rows: list[RoomRow], query: GroupQuery, *, size: int = PAGE_SIZE) -> GroupPage:
    """The rows matching `query`, sorted (topics naturally, ties by topic) and cut to its page."""
    key, descending = query.sort.lstrip("-"), query.sort.startswith("-")
    matched = [r for r in rows if query.matches(r)]
    matched.sort(key=lambda r: (natural_key(r.name), r.id))
    if key == "change":
        known = sorted((r for r in matched if r.change is not None), key=lambda r: r.change or 0.0,
                       reverse=descending)
        matched = known + [r for r in matched if r.change is None]  # no last week: always last
    elif key != "topic":
        matched.sort(key=lambda r: getattr(r, key), reverse=descending)  # stable: ties stay in topic order
    elif descending:
        matched.reverse()
    pages = max(1, -(-len(matched) // size))
    page = min(query.page, pages)
    sums = {k: sum(getattr(r, k) for r in matched) for k in ("members", "joins", "leaves", "messages", "signins")}
    return GroupPage(matched[(page - 1) * size:page * size], len(matched), page, pages, sums)
