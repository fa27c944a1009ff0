"""What the bot already knows about each member of a room, gathered in a few queries per room.

Plugin tables (points, quiz, lottery) are read only if they exist, so a project that does not run a
plugin simply has zeros for its facts.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Date, bindparam, cast, func, inspect, text
from sqlmodel import Session, col, select

from bot._models import Membership
from bot.insight._models import InsightMessage, InsightPurchase, InsightTag

Facts = dict[str, Any]


_known_tables: dict[int, set[str]] = {}


def existing_tables(session: Session) -> set[str]:
    """Table names in the database; plugin tables once seen are remembered per engine (they are never dropped)."""
    bind = session.get_bind()
    known = _known_tables.get(id(bind))
    if known is None or not {"points_signin", "quiz_answer", "lottery_draw", "poll_vote"} <= known:
        known = _known_tables[id(bind)] = set(inspect(bind).get_table_names())
    return known


def _window(days: dict[date, int], today: date) -> Callable[[int], tuple[int, int]]:
    def count(n: int) -> tuple[int, int]:
        first = today - timedelta(days=int(n) - 1)
        inside = [c for d, c in days.items() if first <= d <= today]
        return len(inside), sum(inside)
    return count


def local_day(session: Session, column: Any, now: datetime, tz: tzinfo) -> Any:
    """SQL for the local calendar day of a UTC time column, so counting per day happens in the database.

    It shifts by the zone's offset at `now`: exact for zones without daylight saving (China's), an hour
    off around midnight for part of the year elsewhere."""
    minutes = int((now.astimezone(tz).utcoffset() or timedelta(0)).total_seconds() // 60)
    if session.get_bind().dialect.name == "postgresql":
        return cast(column + func.make_interval(0, 0, 0, 0, 0, minutes), Date)
    return func.date(column, f"{minutes:+d} minutes")


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def room_facts(session: Session, room_id: str, now: datetime, tz: tzinfo, *, since: datetime,
               members: Collection[str] | None = None, exclude: Iterable[str] = ()) -> dict[str, Facts]:
    """Facts of the members now in `room_id` (or of `members` only), keyed by member id."""
    tables = existing_tables(session)
    today = now.astimezone(tz).date()
    excluded = set(exclude)
    query = select(Membership).where(Membership.room_id == room_id, col(Membership.left_at).is_(None))
    if members is not None:
        query = query.where(col(Membership.member_id).in_(list(members)))
    present = {m.member_id: m for m in session.exec(query).all() if m.member_id not in excluded}
    if not present:
        return {}
    wanted = list(present)

    def only(query: Any, column: Any) -> Any:
        return query.where(col(column).in_(wanted)) if members is not None else query

    def sql(statement: str, **params: Any) -> Any:
        """Plain SQL over a plugin's tables, limited to the wanted members when there are few."""
        if members is not None:
            statement = statement.replace("{members}", "AND {}member_id IN :members")
            return session.execute(text(statement.format("a." if " a " in statement else "")).bindparams(
                bindparam("members", expanding=True)), {**params, "members": wanted})
        return session.execute(text(statement.replace("{members}", "")), params)

    message_days: dict[str, Counter[date]] = defaultdict(Counter)
    day = local_day(session, InsightMessage.at, now, tz)
    for member_id, on, count in session.exec(only(select(InsightMessage.member_id, day, func.count()).where(
            InsightMessage.room_id == room_id, col(InsightMessage.at) >= since).group_by(
            InsightMessage.member_id, day), InsightMessage.member_id)).all():
        message_days[member_id][_as_date(on)] += count
    last_at: dict[str, datetime] = {}
    for member_id, at in session.exec(only(select(InsightMessage.member_id, func.max(InsightMessage.at)).where(
            InsightMessage.room_id == room_id).group_by(InsightMessage.member_id), InsightMessage.member_id)).all():
        last_at[member_id] = at if isinstance(at, datetime) and at.tzinfo else _utc(at)
    first = session.exec(select(func.min(InsightMessage.at)).where(InsightMessage.room_id == room_id)).one()
    watched_since = _utc(first) if first is not None else now
    """Members who were there before the bot looked and never spoke: quiet since it started watching."""

    invited, stayed = Counter[str](), Counter[str]()
    invites = select(Membership.inviter_id, Membership.left_at).where(
        Membership.room_id == room_id, col(Membership.inviter_id).is_not(None))
    for inviter, left_at in session.exec(only(invites, Membership.inviter_id)).all():
        invited[inviter] += 1
        stayed[inviter] += left_at is None

    signin_days: dict[str, Counter[date]] = defaultdict(Counter)
    streak: dict[str, int] = {}
    points: dict[str, int] = {}
    if "points_signin" in tables:
        for member_id, on, run in sql("SELECT member_id, day, streak FROM points_signin WHERE room_id = :room "
                                      "AND day >= :first {members} ORDER BY day",
                                      room=room_id, first=since.astimezone(tz).date()):
            on = _as_date(on)
            signin_days[member_id][on] += 1
            streak[member_id] = run if on >= today - timedelta(days=1) else 0
    if "points_account" in tables:
        points = dict(sql("SELECT member_id, balance FROM points_account WHERE room_id = :room {members}",
                          room=room_id).all())
    quiz: dict[str, tuple[int, int]] = {}
    if {"quiz_answer", "quiz_round"} <= tables:
        for member_id, answers, correct in sql(
                "SELECT a.member_id, COUNT(*), SUM(CASE WHEN a.correct THEN 1 ELSE 0 END) FROM quiz_answer a "
                "JOIN quiz_round r ON r.id = a.round_id WHERE r.room_id = :room {members} GROUP BY a.member_id",
                room=room_id):
            quiz[member_id] = (int(answers), int(correct or 0))
    entries, wins = Counter[str](), Counter[str]()
    if {"lottery_entry", "lottery_draw"} <= tables:
        entries.update(dict(sql(
            "SELECT a.member_id, COUNT(*) FROM lottery_entry a JOIN lottery_draw d ON d.id = a.draw_id "
            "WHERE d.room_id = :room {members} GROUP BY a.member_id", room=room_id).all()))
        for (winners,) in session.execute(text(
                "SELECT winners FROM lottery_draw WHERE room_id = :room AND status = 'drawn'"), {"room": room_id}):
            wins.update(_json_list(winners))
    purchases: dict[str, list[int]] = defaultdict(list)
    for member_id, cents in session.exec(only(select(InsightPurchase.member_id, InsightPurchase.amount_cents).where(
            (InsightPurchase.room_id == room_id) | col(InsightPurchase.room_id).is_(None)),
            InsightPurchase.member_id)).all():
        purchases[member_id].append(cents)
    manual: dict[str, set[str]] = defaultdict(set)
    for member_id, tag in session.exec(only(select(InsightTag.member_id, InsightTag.tag).where(
            InsightTag.room_id == room_id, InsightTag.source == "manual"), InsightTag.member_id)).all():
        manual[member_id].add(tag)

    out: dict[str, Facts] = {}
    for member_id, ms in present.items():
        spoke = max((t for t in (last_at.get(member_id), ms.last_spoke_at) if t is not None), default=None)
        reference = spoke or ms.joined_at or watched_since
        messages = _window(message_days[member_id], today)
        signins = _window(signin_days[member_id], today)
        out[member_id] = {
            "active_days": lambda n, w=messages: w(n)[0],
            "messages": lambda n, w=messages: w(n)[1],
            "signin_days": lambda n, w=signins: w(n)[0],
            "quiet_days": max((now - reference).days, 0),
            "days_in_room": (now - ms.joined_at).days if ms.joined_at else 0,
            "invited": invited[member_id],
            "invited_stayed": stayed[member_id],
            "points": int(points.get(member_id, 0)),
            "signin_streak": streak.get(member_id, 0),
            "quiz_answers": quiz.get(member_id, (0, 0))[0],
            "quiz_correct": quiz.get(member_id, (0, 0))[1],
            "lottery_entries": int(entries[member_id]),
            "lottery_wins": wins[member_id],
            "purchases": len(purchases[member_id]),
            "spent": sum(purchases[member_id]) / 100,
            "tags": frozenset(manual[member_id]),
            "is_admin": ms.is_admin,
        }
    return out


def _utc(value: Any) -> datetime:
    value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _json_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in value or ()]
