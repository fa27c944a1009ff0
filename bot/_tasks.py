"""Durable plugin timers: "remind this member in 2 hours", "draw the lottery at 20:00".

A timer is a database row armed on the clock. Its handler's work and the row's
`done` mark commit together, so a timer fires exactly once even if the bot
stops in between: after a restart, pending rows are armed again, and rows whose
time passed while the bot was down fire at once with `late=True`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from bot._clock import Clock, TimerHandle
from bot._db import dialect_insert, session_scope
from bot._models import ScheduledTask, TaskFailure

log = logging.getLogger("qunbot.tasks")
DB_RETRY = timedelta(seconds=5)
FAILED_RETRIES = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1))
"""Waits before running a timer whose handler failed again; after the last, it is marked failed."""

Fire = Callable[[ScheduledTask, bool], Awaitable[None]]


class Tasks:
    """Store, arm and cancel durable timers; the runtime supplies how one fires."""

    def __init__(self, engine: Engine, clock: Clock, fire: Fire) -> None:
        self._engine = engine
        self._clock = clock
        self._fire = fire
        self._armed: dict[int, TimerHandle] = {}
        self._account_of: dict[int, str] = {}
        self._insert = dialect_insert(engine.dialect.name)

    def add(self, session: Session, *, account: str, plugin: str, name: str, key: str, due_at: datetime,
            data: dict[str, Any], room_id: str | None, member_id: str | None) -> int | None:
        """Store a timer in the caller's transaction; returns its id, or None if the key exists."""
        stmt = self._insert(ScheduledTask.__table__).values(
            account=account, plugin=plugin, name=name, key=key, due_at=due_at, data=data,
            room_id=room_id, member_id=member_id, status="pending",
        ).on_conflict_do_nothing(index_elements=["account", "plugin", "key"]).returning(ScheduledTask.__table__.c.id)
        inserted = session.execute(stmt).first()  # RETURNING, not rowcount: see bot/_unique.py
        return None if inserted is None else int(inserted[0])

    def cancel(self, session: Session, *, account: str, plugin: str, key: str) -> bool:
        task = session.exec(select(ScheduledTask).where(
            ScheduledTask.account == account, ScheduledTask.plugin == plugin, ScheduledTask.key == key,
            ScheduledTask.status == "pending")).first()
        if task is None:
            return False
        task.status = "cancelled"
        session.add(task)
        if task.id in self._armed:
            self._armed.pop(task.id).cancel()
        return True

    def arm(self, task_ids: list[int]) -> None:
        """Arm timers after the transaction that created them committed."""
        with Session(self._engine) as session:
            for task_id in task_ids:
                task = session.get(ScheduledTask, task_id)
                if task is not None and task.status == "pending":
                    self._arm(task, late=False)

    def arm_pending(self, account: str) -> int:
        """After a (re)start: arm every pending timer of the account."""
        now = self._clock.now()
        with Session(self._engine) as session:
            tasks = session.exec(select(ScheduledTask).where(
                ScheduledTask.account == account, ScheduledTask.status == "pending")).all()
        for task in tasks:
            self._arm(task, late=task.due_at < now)
        return len(tasks)

    def disarm_all(self) -> None:
        for handle in self._armed.values():
            handle.cancel()
        self._armed.clear()
        self._account_of.clear()

    def disarm(self, account: str) -> None:
        """Drop one account's armed timers (its lease went to another process; they stay in the database)."""
        for task_id in [t for t, a in self._account_of.items() if a == account]:
            self._account_of.pop(task_id)
            handle = self._armed.pop(task_id, None)
            if handle is not None:
                handle.cancel()

    def retry_later(self, task: ScheduledTask, *, late: bool) -> None:
        """The database could not be reached when the timer came due: look again shortly."""
        log.warning("timer %s/%s (%s): database unavailable; trying again in %.0fs", task.plugin, task.name,
                    task.key, DB_RETRY.total_seconds())
        self._arm(task, late=late, at=self._clock.now() + DB_RETRY)

    def failed(self, task: ScheduledTask, error: str) -> bool:
        """The timer's handler failed: run it again later with back-off, or, after the last try, mark it
        failed and say so at error level. True if it will run again."""
        with session_scope(self._engine) as session:
            failure = session.get(TaskFailure, task.id) or TaskFailure(task_id=task.id, failed_at=self._clock.now())
            failure.attempts += 1
            failure.last_error, failure.failed_at = error[:2000], self._clock.now()
            session.add(failure)
            attempts = failure.attempts
            if attempts > len(FAILED_RETRIES):
                row = session.get(ScheduledTask, task.id)
                if row is not None and row.status == "pending":
                    row.status = "failed"
        if attempts > len(FAILED_RETRIES):
            log.error("timer %s/%s (%s) failed %d times and is given up (marked failed; the dashboard lists it): %s",
                      task.plugin, task.name, task.key, attempts, error)
            return False
        wait = FAILED_RETRIES[attempts - 1]
        log.warning("timer %s/%s (%s) failed (%s); trying again in %s (attempt %d of %d)", task.plugin, task.name,
                    task.key, error, wait, attempts + 1, len(FAILED_RETRIES) + 1)
        self._arm(task, late=True, at=self._clock.now() + wait)
        return True

    def _arm(self, task: ScheduledTask, *, late: bool, at: datetime | None = None) -> None:
        assert task.id is not None
        if task.id in self._armed:
            return
        task_id = task.id

        async def fire() -> None:
            self._armed.pop(task_id, None)
            self._account_of.pop(task_id, None)
            try:
                with Session(self._engine) as session:
                    current = session.get(ScheduledTask, task_id)
            except SQLAlchemyError:
                self.retry_later(task, late=late)
                return
            if current is None or current.status != "pending":
                return
            if late:
                log.warning("timer %s/%s (%s) was due at %s while the bot was down; running it now",
                            current.plugin, current.name, current.key, current.due_at.isoformat())
            await self._fire(current, late)

        self._account_of[task_id] = task.account
        self._armed[task_id] = self._clock.call_at((at or task.due_at).astimezone(self._clock.tz), fire,
                                                   name=f"task:{task.plugin}:{task.key}")
