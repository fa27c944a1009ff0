"""One persistent, paced outbox per account: every message the bot sends passes here.

Pacing keeps an account clear of WeChat's risk control: a minimum gap between
two sends of the account plus random jitter, a gap per room, and a cap per
rolling hour. Rows are keyed, so the same logical message is stored and sent
once, also across a crash and restart. A row marked `sending` when the process
died is never re-sent (it may have gone out); it is logged as `uncertain`.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot._clock import Clock, TimerHandle
from bot._config import PacingSettings
from bot._events import Outgoing
from bot._models import OutboxMessage
from bot.adapters._base import RateLimited

log = logging.getLogger("qunbot.outbox")

Sender = Callable[[Outgoing], Awaitable[None]]
_HOUR = timedelta(hours=1)
_SCAN = 500


class Outbox:
    """Queue, pace and send one account's messages."""

    def __init__(self, account: str, engine: Engine, clock: Clock, pacing: PacingSettings, sender: Sender,
                 *, rng: random.Random | None = None) -> None:
        self.account = account
        self._engine = engine
        self._clock = clock
        self._pacing = pacing
        self._send = sender
        self._rng = rng or random.Random()
        self._account_next: datetime | None = None
        self._room_last: dict[str, datetime] = {}
        self._hour: deque[datetime] = deque()
        self._cooldown_until: datetime | None = None
        self._timer: TimerHandle | None = None
        self._busy = False
        self._again = False
        self._stopped = False
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # --- queueing -------------------------------------------------------------

    def enqueue(self, session: Session, *, key: str, text: str, room_id: str | None = None, to: str | None = None,
                mentions: tuple[str, ...] = (), file: str | None = None, source: str = "",
                not_before: datetime | None = None, expires_at: datetime | None = None,
                action: str | None = None, member_id: str | None = None) -> None:
        """Add a message inside the caller's transaction; a second add with the same key is ignored."""
        if (room_id is None) == (to is None):
            raise ValueError("a message goes to exactly one of room_id or to")
        now = self._clock.now()
        stmt = self._insert(OutboxMessage.__table__).values(
            account=self.account, key=key, room_id=room_id, to=to, text=text, mentions=list(mentions),
            file=file, action=action, member_id=member_id, source=source, status="pending", attempts=0, created_at=now,
            not_before=not_before or now, expires_at=expires_at,
        ).on_conflict_do_nothing(index_elements=["account", "key"])
        session.execute(stmt)

    def wake(self) -> None:
        """Look at the queue again soon (call after committing new rows)."""
        if self._stopped:
            return
        if self._busy:
            self._again = True
            return
        self._schedule(self._clock.now())

    # --- life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Restore pacing state from what was sent, flag rows a crash left mid-send, and begin."""
        now = self._clock.now()
        with Session(self._engine) as session:
            stuck = session.exec(
                select(OutboxMessage).where(OutboxMessage.account == self.account, OutboxMessage.status == "sending")
            ).all()
            for row in stuck:
                log.warning("outbox %s: message %s (%s) was being sent when the bot stopped; not re-sending it",
                            self.account, row.key, row.room_id or row.to)
                row.status = "uncertain"
                session.add(row)
            session.commit()
            sent = session.exec(
                select(OutboxMessage.sent_at, OutboxMessage.room_id, OutboxMessage.to)
                .where(OutboxMessage.account == self.account, OutboxMessage.status == "sent",
                       col(OutboxMessage.sent_at) >= now - _HOUR)
                .order_by(col(OutboxMessage.sent_at))
            ).all()
        for sent_at, room_id, to in sent:
            self._note_sent(sent_at.astimezone(self._clock.tz), room_id or f"dm:{to}", jitter=False)
        self._stopped = False
        self.wake()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def next_wakeup(self) -> datetime | None:
        """When the pacing loop looks at the queue next (None when idle)."""
        return None if self._timer is None else self._timer.when

    def pending_count(self) -> int:
        with Session(self._engine) as session:
            return session.exec(
                select(func.count()).select_from(OutboxMessage)
                .where(OutboxMessage.account == self.account, col(OutboxMessage.status).in_(("pending",)))
            ).one()

    # --- the pacing loop ------------------------------------------------------------

    def _schedule(self, when: datetime) -> None:
        if self._timer is not None:
            if self._timer.when <= when:
                return
            self._timer.cancel()
        self._timer = self._clock.call_at(when, self._tick, name=f"outbox:{self.account}")

    async def _tick(self) -> None:
        self._timer = None
        if self._stopped:
            return
        self._busy = True
        try:
            next_time = await self._step()
        finally:
            self._busy = False
        if self._again:
            self._again = False
            next_time = self._clock.now() if next_time is None else min(next_time, self._clock.now())
        if next_time is not None:
            self._schedule(next_time)

    async def _step(self) -> datetime | None:
        """Send the row that may go first, if it may go now; return when to look again."""
        now = self._clock.now()
        with Session(self._engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.account == self.account, OutboxMessage.status == "pending")
                .order_by(col(OutboxMessage.id)).limit(_SCAN)
            ).all()
            best: tuple[datetime, OutboxMessage] | None = None
            seen: set[str] = set()
            for row in rows:
                lane = row.room_id or f"dm:{row.to}"
                if lane in seen:
                    continue  # keep each room's messages in order
                seen.add(lane)
                allowed = self._allowed_at(row, lane)
                if best is None or allowed < best[0]:
                    best = (allowed, row)
            if best is None:
                return None
            allowed, row = best
            if row.expires_at is not None and max(now, allowed) > row.expires_at:
                row.status = "skipped"
                row.last_error = f"late: could not go out before {row.expires_at.isoformat()}"
                log.warning("outbox %s: skipped %s to %s (%s)", self.account, row.key, row.room_id or row.to,
                            row.last_error)
                session.add(row)
                session.commit()
                return now
            if allowed > now:
                return allowed
            attempts = row.attempts + 1
            claimed = session.execute(
                update(OutboxMessage).where(col(OutboxMessage.id) == row.id, OutboxMessage.status == "pending")
                .values(status="sending", attempts=attempts)
            )
            session.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return now
            await self._deliver(session, row, now, attempts)
        return self._clock.now()

    async def _deliver(self, session: Session, row: OutboxMessage, now: datetime, attempts: int) -> None:
        lane = row.room_id or f"dm:{row.to}"
        message = Outgoing(account=self.account, text=row.text, room_id=row.room_id, to=row.to,
                           mentions=tuple(row.mentions), file=row.file, action=row.action,
                           member_id=row.member_id)
        try:
            await self._send(message)
        except RateLimited as err:
            self._cooldown_until = now + timedelta(seconds=self._pacing.cooldown)
            log.error("outbox %s: platform rate limit (%s); pausing sends until %s", self.account, err,
                      self._cooldown_until.isoformat())
            self._finish(session, row, status="pending", error=str(err), attempts=attempts - 1)
        except Exception as err:  # the adapter's failure must not kill the loop
            if attempts >= self._pacing.max_attempts:
                log.error("outbox %s: giving up on %s after %d attempts: %s", self.account, row.key, attempts, err)
                self._finish(session, row, status="failed", error=str(err), attempts=attempts)
            else:
                delay = self._pacing.retry_base * 2 ** (attempts - 1)
                log.warning("outbox %s: send of %s failed (%s); retry %d in %.0fs", self.account, row.key, err,
                            attempts, delay)
                self._finish(session, row, status="pending", error=str(err), attempts=attempts,
                             not_before=now + timedelta(seconds=delay))
        else:
            sent_at = self._clock.now()
            self._finish(session, row, status="sent", attempts=attempts, sent_at=sent_at)
            self._note_sent(sent_at, lane, jitter=True)
            log.info("sent %s to %s", row.key, row.room_id or row.to)

    def _finish(self, session: Session, row: OutboxMessage, *, status: str, attempts: int, error: str | None = None,
                sent_at: datetime | None = None, not_before: datetime | None = None) -> None:
        values: dict[str, object] = {"status": status, "attempts": attempts, "last_error": error}
        if sent_at is not None:
            values["sent_at"] = sent_at
        if not_before is not None:
            values["not_before"] = not_before
        session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id).values(**values))
        session.commit()

    def _allowed_at(self, row: OutboxMessage, lane: str) -> datetime:
        times = [row.not_before.astimezone(self._clock.tz)]
        if self._account_next is not None:
            times.append(self._account_next)
        if lane in self._room_last:
            times.append(self._room_last[lane] + timedelta(seconds=self._pacing.room_interval))
        if self._cooldown_until is not None:
            times.append(self._cooldown_until)
        now = self._clock.now()
        while self._hour and self._hour[0] <= now - _HOUR:
            self._hour.popleft()
        if len(self._hour) >= self._pacing.hourly_cap:
            times.append(self._hour[len(self._hour) - self._pacing.hourly_cap] + _HOUR)
        return max(times)

    def _note_sent(self, when: datetime, lane: str, *, jitter: bool) -> None:
        gap = self._pacing.min_interval + (self._rng.uniform(0, self._pacing.jitter) if jitter else 0.0)
        self._account_next = when + timedelta(seconds=gap)
        self._room_last[lane] = when
        self._hour.append(when)
