"""What the dashboard pages show, read from the bot's tables (nothing here writes).

Tables of plugins a project does not run are simply absent: their charts stay empty.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from bot._models import Member, Membership, Room, ScheduledTask, TaskFailure
from bot.insight import STAGES, InsightMessage, InsightStage, InsightTag
from bot.insight._facts import existing_tables

PALETTE = ["#2f6fde", "#e4572e", "#17a398", "#f3a712", "#8e5fd3", "#6c757d", "#d6336c", "#20c997"]
STAGE_NAMES = {"aware": "认知 aware", "interested": "兴趣 interested", "purchased": "购买 purchased",
               "loyal": "忠诚 loyal"}


def _day(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def _days(now: datetime, tz: tzinfo, count: int) -> list[date]:
    today = _day(now, tz)
    return [today - timedelta(days=count - 1 - i) for i in range(count)]


def chart(kind: str, labels: list[str], datasets: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """A Chart.js config (the page's script hands it to `new Chart`)."""
    for index, dataset in enumerate(datasets):
        color = PALETTE[index % len(PALETTE)]
        dataset.setdefault("backgroundColor", color if kind != "doughnut" else PALETTE[:len(dataset["data"])])
        dataset.setdefault("borderColor", color)
    if kind != "doughnut":  # counts: whole-number ticks from zero
        options.setdefault("scales", {"x": {"ticks": {"precision": 0}}, "y": {"beginAtZero": True,
                                                                            "ticks": {"precision": 0}}})
    return {"type": kind, "data": {"labels": labels, "datasets": datasets},
            "options": {"animation": False, "responsive": True, "maintainAspectRatio": False, **options}}


@dataclass
class MemberRow:
    id: str
    name: str
    messages: int
    active_days: int
    points: int
    stage: str
    tags: list[str]


@dataclass
class RoomPage:
    id: str
    topic: str
    members: int
    top: list[MemberRow]
    tag_counts: dict[str, int]
    funnel: dict[str, int]
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)


def room_page(session: Session, room_id: str, now: datetime, tz: tzinfo, *, top: int = 10) -> RoomPage | None:
    room = session.get(Room, room_id)
    if room is None:
        return None
    present = {m.member_id: m for m in session.exec(select(Membership).where(
        Membership.room_id == room_id, col(Membership.left_at).is_(None))).all()}
    staged = dict(session.exec(select(InsightStage.member_id, InsightStage.stage).where(
        InsightStage.room_id == room_id)).all())
    tags: dict[str, set[str]] = defaultdict(set)
    for member_id, tag in session.exec(select(InsightTag.member_id, InsightTag.tag).where(
            InsightTag.room_id == room_id)).all():
        if member_id in present:
            tags[member_id].add(tag)
    week = set(_days(now, tz, 7))
    since = datetime.combine(min(week), datetime.min.time(), tz)
    said: Counter[str] = Counter()
    days: dict[str, set[date]] = defaultdict(set)
    for member_id, at in session.exec(select(InsightMessage.member_id, InsightMessage.at).where(
            InsightMessage.room_id == room_id, col(InsightMessage.at) >= since)).all():
        said[member_id] += 1
        days[member_id].add(_day(at, tz))
    points: dict[str, int] = {}
    if "points_account" in existing_tables(session):
        points = dict(session.execute(text("SELECT member_id, balance FROM points_account WHERE room_id = :r"),
                                      {"r": room_id}).all())
    names = dict(session.exec(select(Member.id, Member.name).where(col(Member.id).in_(list(present)))).all())
    ranked = sorted((m for m in present if staged.get(m) is not None or said[m]),
                    key=lambda m: (-said[m], -points.get(m, 0), m))[:top]
    rows = [MemberRow(m, present[m].alias or names.get(m) or m, said[m], len(days[m]), int(points.get(m, 0)),
                      staged.get(m, STAGES[0]), sorted(tags[m])) for m in ranked]
    counted = [m for m in present if m in staged]
    tag_counts = Counter(tag for m in counted for tag in tags[m])
    funnel = {stage: sum(1 for m in counted if staged[m] == stage) for stage in STAGES}
    active = sum(1 for m in counted if "active" in tags[m])
    silent = sum(1 for m in counted if "silent" in tags[m] and "active" not in tags[m])
    page = RoomPage(room.id, room.topic, len(present), rows, dict(sorted(tag_counts.items())), funnel)
    page.charts = {
        "share": chart("doughnut", ["活跃 active", "沉默 silent", "其他 other"],
                       [{"label": "成员", "data": [active, silent, len(counted) - active - silent]}]),
        "tags": chart("bar", list(page.tag_counts), [{"label": "成员数", "data": list(page.tag_counts.values())}]),
        "funnel": chart("bar", [STAGE_NAMES[s] for s in STAGES], [{"label": "成员数", "data": list(funnel.values())}],
                        indexAxis="y"),
    }
    return page


# --- lottery, quiz, polls ----------------------------------------------------------------------


@dataclass
class DrawRow:
    id: int
    room_id: str
    prize: str
    status: str
    opened_at: datetime
    deadline: datetime
    entrants: int
    winners: list[str]
    verified: bool | None
    problems: list[str]
    number: int = 0
    """第 N 期 in its room."""
    mode: str = "seed"


def draws(session: Session, lottery_service: Any | None, names: Mapping[str, str],
          beacon: Any = None) -> list[DrawRow]:
    """Every draw with its verification; `beacon`: the project's pinned drand settings (default: mainnet)."""
    if lottery_service is None or "lottery_draw" not in existing_tables(session):
        return []
    out = []
    for draw in lottery_service.history(session, None, limit=200):
        result = lottery_service.verify(session, draw.id, beacon=beacon) if draw.status == "drawn" else None
        out.append(DrawRow(draw.id, draw.room_id, draw.prize, draw.status, draw.opened_at, draw.deadline,
                           len(draw.entrants), [names.get(w, w) for w in draw.winners],
                           None if result is None else result.ok, [] if result is None else result.problems,
                           getattr(draw, "number", 0), getattr(draw, "mode", "seed")))
    return out


def _utc(value: Any) -> datetime:
    """A UTC time read with plain SQL (stored naive) as an aware datetime."""
    value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def quiz_rounds(session: Session) -> list[dict[str, Any]]:
    if not {"quiz_round", "quiz_answer"} <= existing_tables(session):
        return []
    rows = session.execute(text(
        "SELECT r.id, r.room_id, r.bank, r.status, r.started_at, r.questions, "
        "(SELECT COUNT(*) FROM quiz_answer a WHERE a.round_id = r.id), "
        "(SELECT COUNT(*) FROM quiz_answer a WHERE a.round_id = r.id AND a.correct), "
        "(SELECT COUNT(DISTINCT a.member_id) FROM quiz_answer a WHERE a.round_id = r.id) "
        "FROM quiz_round r ORDER BY r.id DESC LIMIT 200")).all()
    return [{"id": r[0], "room_id": r[1], "bank": r[2], "status": r[3], "started_at": _utc(r[4]),
             "questions": len(json.loads(r[5]) if isinstance(r[5], str) else r[5]), "answers": r[6],
             "correct": r[7], "players": r[8]} for r in rows]


def polls(session: Session) -> list[dict[str, Any]]:
    if not {"poll_poll", "poll_vote"} <= existing_tables(session):
        return []
    out = []
    for pid, room_id, title, options, status in session.execute(text(
            "SELECT id, room_id, title, options, status FROM poll_poll ORDER BY id DESC LIMIT 200")).all():
        options = json.loads(options) if isinstance(options, str) else options
        votes = Counter(dict(session.execute(text(
            "SELECT option, COUNT(*) FROM poll_vote WHERE poll_id = :p GROUP BY option"), {"p": pid}).all()))
        out.append({"id": pid, "room_id": room_id, "title": title, "status": status,
                    "results": [(o, votes.get(i, 0)) for i, o in enumerate(options)]})
    return out


# --- SOP variants ------------------------------------------------------------------------------


@dataclass
class VariantRow:
    file: str
    step: str
    variant: int
    template: str
    rooms: list[str]
    posts: int
    replies: int
    repliers: int

    @property
    def per_post(self) -> float:
        return self.replies / self.posts if self.posts else 0.0


def variant_stats(session: Session, files: Mapping[str, Any], *, window: timedelta = timedelta(hours=1),
                  ) -> list[VariantRow]:
    """For each SOP step with variants: posts sent per variant and member messages within `window` after.

    Two grouped queries per step (deliveries joined to the sent outbox row, and to the messages after it),
    whatever the number of deliveries."""
    from bot.sop._load import variant_of

    postgres = session.get_bind().dialect.name == "postgresql"
    # The upper bound must stay a plain comparison of m.at, so each post reads only its hour off the index.
    until = ("o.sent_at + make_interval(secs => :seconds)" if postgres
             else "datetime(o.sent_at, :modifier) || substr(o.sent_at, 20)")  # stored as text: keep the fraction
    sent = ("FROM sop_delivery d JOIN core_outbox o ON o.account = d.account AND o.key = d.key AND o.status = 'sent' "
            "WHERE d.file = :file AND d.step = :step AND d.member_id IS NULL")
    out: list[VariantRow] = []
    for name, loaded in files.items():
        for step in loaded.sop.steps:
            if not step.variants:
                continue
            rows = {i: VariantRow(name, step.id, i, t, [], 0, 0, 0) for i, t in enumerate(step.variants)}
            params = {"file": name, "step": step.id, "seconds": window.total_seconds(),
                      "modifier": f"+{int(window.total_seconds())} seconds"}
            for room_id, posts in session.execute(text(
                    f"SELECT d.room_id, COUNT(*) {sent} GROUP BY d.room_id ORDER BY d.room_id"), params).all():
                row = rows[variant_of(loaded, step, room_id)]
                row.rooms.append(room_id)
                row.posts += int(posts)
            replies_sql = (sent.replace(" WHERE", " JOIN insight_message m ON m.room_id = d.room_id "
                                        f"AND m.at > o.sent_at AND m.at <= {until} WHERE")
                           + " GROUP BY d.room_id, m.member_id")
            for room_id, _member, replies in session.execute(text(
                    f"SELECT d.room_id, m.member_id, COUNT(*) {replies_sql}"), params).all():
                row = rows[variant_of(loaded, step, room_id)]
                row.replies += int(replies)
                row.repliers += 1
            out.extend(rows.values())
    return out


@dataclass(frozen=True)
class FailedTimer:
    """A plugin timer that failed every retry: a lottery draw left open, a reward unpaid."""

    plugin: str
    name: str
    key: str
    room_id: str | None
    due_at: datetime
    attempts: int
    last_error: str


def failed_timers(session: Session, limit: int = 50) -> list[FailedTimer]:
    """Timers given up after their retries (`bot/_tasks.py`), newest first, for the overview's warning."""
    rows = session.exec(select(ScheduledTask, TaskFailure).join(
        TaskFailure, col(TaskFailure.task_id) == col(ScheduledTask.id), isouter=True).where(
        ScheduledTask.status == "failed").order_by(col(ScheduledTask.due_at).desc()).limit(limit)).all()
    return [FailedTimer(task.plugin, task.name, task.key, task.room_id, task.due_at,
                        failure.attempts if failure else 1, failure.last_error if failure else "")
            for task, failure in rows]
