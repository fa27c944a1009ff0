"""Retention: a year on one database. Finished work is pruned daily, off the hot path, in small batches.

Every post to every room leaves an outbox row (with its text), an SOP delivery row and often a timer row:
at 10,000 rooms and three posts a day that is 22 million rows a year per table. What is kept, and for how
long, is `[retention]` in qunbot.toml:
- texts of finished outbox rows, with whom they @-mention and a merged reply's parts (which name members),
  are blanked after `sent_texts` (the row and its key stay: the key is what keeps a message from being sent
  twice, so it outlives any redelivery or catch-up window);
- finished outbox rows, finished SOP deliveries and finished timers are deleted after `outbox`,
  `deliveries` and `tasks`, each first counted into a per-day aggregate (`core_daily_count`) that the
  dashboard's totals read;
- rows still in play (pending, sending, uncertain, waiting for a confirmation) are never touched, nor are
  the sources in `keep_sources` (the lottery's posts: `lottery verify` reads them back).
Each batch is one short transaction run in a worker thread, so the bot keeps answering while it prunes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col

from bot._db import dialect_insert
from bot._models import OutboxMessage, ScheduledTask, TaskFailure
from bot._simulation import register_component

if TYPE_CHECKING:
    from bot._clock import TimerHandle
    from bot._config import RetentionSettings
    from bot._runtime import Runtime

log = logging.getLogger("qunbot.retention")

OUTBOX_FINISHED = ("sent", "failed", "skipped", "cancelled", "over_quota", "unsupported")
"""Outbox states nothing will act on again; everything else (pending, sending, uncertain, waiting for a
confirmation) is left alone."""
TASKS_FINISHED = ("done", "cancelled", "failed")
DELIVERIES_FINISHED = ("done", "skipped", "cancelled", "failed")


class DailyCount(SQLModel, table=True):
    """What pruned rows amounted to: per local day, table, account, source (plugin or SOP file) and status."""

    __tablename__ = "core_daily_count"

    day: date = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    """outbox | delivery | task"""
    account: str = Field(primary_key=True)
    source: str = Field(primary_key=True)
    status: str = Field(primary_key=True)
    count: int = 0


@dataclass
class PruneReport:
    """Rows touched by one run, per kind (for the log and the tests)."""

    blanked: int = 0
    deleted: dict[str, int] = field(default_factory=lambda: {"outbox": 0, "delivery": 0, "task": 0})

    def __str__(self) -> str:
        return (f"{self.blanked} text(s) blanked; deleted {self.deleted['outbox']} outbox, "
                f"{self.deleted['delivery']} delivery and {self.deleted['task']} timer row(s)")


class Pruner:
    """Prunes one database by the settings; `run(now)` does one full pass in batches."""

    def __init__(self, engine: Engine, settings: RetentionSettings, tz: tzinfo) -> None:
        self.engine = engine
        self.settings = settings
        self.tz = tz
        """Aggregates count by the bot's local day."""
        insert = dialect_insert(engine.dialect.name)
        counts = insert(DailyCount.__table__)  # type: ignore[arg-type]
        self._add_counts = counts.on_conflict_do_update(
            index_elements=["day", "kind", "account", "source", "status"],
            set_={"count": DailyCount.__table__.c.count + counts.excluded.count})  # type: ignore[attr-defined]

    def run(self, now: datetime) -> PruneReport:
        report = PruneReport()
        s = self.settings
        report.deleted["outbox"] = self._batches(lambda session: self._delete_outbox(session, now - s.outbox_age))
        report.blanked = self._batches(lambda session: self._blank_texts(session, now - s.sent_texts_age))
        report.deleted["delivery"] = self._batches(
            lambda session: self._delete_deliveries(session, now - s.deliveries_age))
        report.deleted["task"] = self._batches(lambda session: self._delete_tasks(session, now - s.tasks_age))
        return report

    def _batches(self, step: Any) -> int:
        total = 0
        while True:
            with Session(self.engine) as session:
                done = step(session)
                session.commit()
            total += done
            if done < self.settings.batch:
                return total

    # --- the four kinds ------------------------------------------------------------------

    def _finished_outbox(self, before: datetime) -> Any:
        t = OutboxMessage
        return [col(t.status).in_(OUTBOX_FINISHED), func.coalesce(t.sent_at, t.created_at) < before,
                col(t.source).not_in(self.settings.keep_sources)]

    def _blank_texts(self, session: Session, before: datetime) -> int:
        ids = session.execute(select(OutboxMessage.id).where(*self._finished_outbox(before), OutboxMessage.text != "")
                              .order_by(OutboxMessage.id).limit(self.settings.batch)).scalars().all()
        if ids:
            session.execute(update(OutboxMessage).where(col(OutboxMessage.id).in_(list(ids)))
                            .values(text="", mentions=[], parts=[]))
        return len(ids)

    def _delete_outbox(self, session: Session, before: datetime) -> int:
        t = OutboxMessage
        rows = session.execute(select(t.id, t.account, t.source, t.status, func.coalesce(t.sent_at, t.created_at))
                            .where(*self._finished_outbox(before)).order_by(t.id).limit(self.settings.batch)).all()
        self._count(session, "outbox", [(r[1], r[2], r[3], r[4]) for r in rows])
        if rows:
            session.execute(delete(t).where(col(t.id).in_([r[0] for r in rows])))
        return len(rows)

    def _delete_deliveries(self, session: Session, before: datetime) -> int:
        from bot.sop._models import SopDelivery as d

        rows = session.execute(select(d.id, d.account, d.file, d.status, d.due_at).where(
            col(d.status).in_(DELIVERIES_FINISHED), d.due_at < before).order_by(d.id)
            .limit(self.settings.batch)).all()
        self._count(session, "delivery", [(r[1], r[2], r[3], r[4]) for r in rows])
        if rows:
            session.execute(delete(d).where(col(d.id).in_([r[0] for r in rows])))
        return len(rows)

    def _delete_tasks(self, session: Session, before: datetime) -> int:
        t = ScheduledTask
        rows = session.execute(select(t.id, t.account, t.plugin, t.status, func.coalesce(t.fired_at, t.due_at)).where(
            col(t.status).in_(TASKS_FINISHED), func.coalesce(t.fired_at, t.due_at) < before).order_by(t.id)
            .limit(self.settings.batch)).all()
        self._count(session, "task", [(r[1], r[2], r[3], r[4]) for r in rows])
        if rows:
            session.execute(delete(t).where(col(t.id).in_([r[0] for r in rows])))
            session.execute(delete(TaskFailure).where(col(TaskFailure.task_id).in_([r[0] for r in rows])))
        return len(rows)

    def _count(self, session: Session, kind: str, rows: list[tuple[str, str, str, datetime]]) -> None:
        tally: dict[tuple[date, str, str, str], int] = {}
        for account, source, status, at in rows:
            key = (at.astimezone(self.tz).date(), account, source or "", status)
            tally[key] = tally.get(key, 0) + 1
        if tally:
            session.execute(self._add_counts, [
                {"day": day, "kind": kind, "account": account, "source": source, "status": status, "count": n}
                for (day, account, source, status), n in tally.items()])


def sent_per_day(session: Session, since: date, tz: tzinfo) -> dict[date, int]:
    """Messages sent per local day: pruned rows from the aggregate plus the rows still kept."""
    totals: dict[date, int] = {}
    for day, count in session.execute(select(DailyCount.day, func.sum(DailyCount.count)).where(
            DailyCount.kind == "outbox", DailyCount.status == "sent", DailyCount.day >= since)
            .group_by(DailyCount.day)).all():
        totals[day] = totals.get(day, 0) + int(count)
    start = datetime.combine(since, time(0), tz)
    for (sent_at,) in session.execute(select(OutboxMessage.sent_at).where(
            OutboxMessage.status == "sent", col(OutboxMessage.sent_at) >= start)):
        day = sent_at.astimezone(tz).date()
        totals[day] = totals.get(day, 0) + 1
    return totals


class RetentionComponent:
    """Runs the pruner once a day at `[retention] at` (local time), in a worker thread."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.pruner = Pruner(runtime.engine, runtime.config.retention, runtime.config.bot.tz)
        self._timer: TimerHandle | None = None
        self.last: PruneReport | None = None

    async def start(self, runtime: Runtime) -> None:
        self._arm()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def next_run(self, now: datetime) -> datetime:
        local = now.astimezone(self.rt.config.bot.tz)
        at = datetime.combine(local.date(), self.rt.config.retention.at_time, local.tzinfo)
        return at if at > local else at + timedelta(days=1)

    def _arm(self) -> None:
        self._timer = self.rt.clock.call_at(self.next_run(self.rt.clock.now()), self._run, name="retention",
                                            background=True)

    async def _run(self) -> None:
        self._arm()  # first: a failure below must not end the schedule
        now = self.rt.clock.now()
        try:
            self.last = await asyncio.to_thread(self.pruner.run, now)
        except Exception:
            log.exception("retention: pruning failed; it runs again tomorrow")
            return
        log.info("retention: %s", self.last)


def _component(runtime: Runtime) -> RetentionComponent | None:
    return RetentionComponent(runtime) if runtime.config.retention.enabled else None


register_component(_component)
