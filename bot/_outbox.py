"""One persistent, paced outbox per account: every message the bot sends passes here.

Pacing keeps an account clear of WeChat's risk control: a minimum gap between
two sends of the account plus random jitter, a gap per room, and a cap per
rolling hour. Rows are keyed, so the same logical message is stored and sent
once, also across a crash and restart. A row marked `sending` when the process
died is never re-sent blindly: the adapter is asked whether it went out
(`Adapter.was_sent`); if it cannot tell, the row is logged as `uncertain`.

Faults: a database error leaves the queue intact and the loop retries with
back-off; a dropped connection (`Disconnected`) pauses the account until the
runtime has reconnected; with a lease (`bot/_lease.py`) nothing is claimed
unless the lease is current.

Members before broadcasts: answers to members (priority 0) go ahead of bulk SOP posts (priority 1)
within the same limits; each class keeps its order per room. Replies that carry a merge key (签到 at
08:00) merge into a queued message of the same key in the same room, up to `max_mentions` members,
inside the caller's transaction; a message already handed to WeChat is never altered. A merge only
appends its part: the merged text is rendered once, over all parts, when the message is claimed to be sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, inspect, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from bot._clock import Clock, TimerHandle
from bot._config import PacingSettings
from bot._db import Prepared, dialect_insert
from bot._events import Outgoing
from bot._migrations import Migration
from bot._models import OutboxMessage
from bot.adapters._base import Capabilities, Disconnected, RateLimited, Receipt

if TYPE_CHECKING:
    from bot._lease import Lease

log = logging.getLogger("qunbot.outbox")

Sender = Callable[[Outgoing], Awaitable[Receipt | None]]
Confirm = Callable[[Outgoing], Awaitable[bool | None]]
_HOUR = timedelta(hours=1)
_SCAN = 500
_DB_RETRY_MAX = 30.0
MEMBERS, BULK = 0, 1
"""Send priorities: answers and plugin interactions first, then SOP posts."""


@dataclass(frozen=True, slots=True)
class MergeInto:
    """How a reply merges with others of its kind: the merge key, its own part, and the merged form's template."""

    key: str
    part: dict[str, Any]
    template: str
    mention: str
    """The member this reply answers: the queued message's `mentions` gains them as it merges."""


RenderMerged = Callable[[OutboxMessage], tuple[str, tuple[str, ...]]]
"""A merged message's (text, mentions) over all its parts (the runtime renders them as the plugin would)."""


def _add_merge_columns(conn: Connection) -> None:
    # only what is missing: a database whose tables `create_all` made at this shape may still say version 1
    have = {column["name"] for column in inspect(conn).get_columns("core_outbox")}
    for name, ddl in (("priority", "priority INTEGER NOT NULL DEFAULT 0"), ("merge_key", "merge_key VARCHAR"),
                      ("parts", "parts JSON NOT NULL DEFAULT '[]'")):
        if name not in have:
            conn.execute(text(f"ALTER TABLE core_outbox ADD COLUMN {ddl}"))
    if "ix_outbox_merge" not in {index["name"] for index in inspect(conn).get_indexes("core_outbox")}:
        conn.execute(text("CREATE INDEX ix_outbox_merge ON core_outbox (room_id, merge_key, status)"))


def _add_merge_template(conn: Connection) -> None:
    if "merge_template" not in {column["name"] for column in inspect(conn).get_columns("core_outbox")}:
        conn.execute(text("ALTER TABLE core_outbox ADD COLUMN merge_template VARCHAR"))


MIGRATIONS = [Migration(2, "outbox: send priority and merged replies", _add_merge_columns),
              Migration(3, "outbox: merged replies rendered once, when sent", _add_merge_template)]
"""The outbox's changes to the core schema (version 1 is the first release's tables)."""

_ENQUEUE_KEYS = ("account", "key", "room_id", "to", "text", "mentions", "file", "action", "member_id", "source",
                 "status", "attempts", "created_at", "not_before", "expires_at", "last_error", "priority", "merge_key",
                 "parts", "merge_template")
QUOTA_COUNTED = ("sent", "uncertain", "awaiting_confirmation")
"""Statuses of a room post that used up the room's quota: a post waiting for the owner's confirmation counts
until it is cancelled, so the quota is never overrun by tasks confirmed late."""


class Outbox:
    """Queue, pace and send one account's messages."""

    def __init__(self, account: str, engine: Engine, clock: Clock, pacing: PacingSettings, sender: Sender,
                 *, rng: random.Random | None = None,
                 capabilities: Capabilities | Callable[[], Capabilities] | None = None) -> None:
        self.account = account
        self._capabilities = capabilities if callable(capabilities) else lambda: capabilities or Capabilities()
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
        self._idle = asyncio.Event()
        self._idle.set()
        self._again = False
        self._stopped = False
        self._offline = False
        self._db_failures = 0
        self._fresh: datetime | None = None
        """The earliest `not_before` queued since the loop last looked: a wake need not look before it."""
        self._unrecorded: dict[int, dict[str, object]] = {}
        """Outcomes the database could not record when they happened: row id -> column values."""
        self._unclaimed: dict[int, int] = {}
        """Claims a database error may have left behind (row id -> attempts before): nothing was sent."""
        self.lease: Lease | None = None
        """Set when processes share the database: only the lease holder claims messages."""
        self.on_disconnect: Callable[[Exception], None] | None = None
        """Called when the adapter reports the connection dropped (the runtime reconnects)."""
        self.render_merged: RenderMerged | None = None
        """Renders a merged message when it is claimed (set by the runtime; without it nothing merges)."""
        insert = dialect_insert(engine.dialect.name)
        self._enqueue = Prepared(insert(OutboxMessage.__table__).on_conflict_do_nothing(
            index_elements=["account", "key"]), _ENQUEUE_KEYS)
        table = OutboxMessage.__table__.c  # type: ignore[attr-defined]
        self._open_merge = Prepared(  # the newest queued message of a merge key in a room, locked until commit
            select(table.id, table.parts, table.mentions, table.created_at)
            .where(table.account == self.account, table.room_id == bindparam("room_id"),
                   table.merge_key == bindparam("merge_key"), table.status == "pending")
            .order_by(table.id.desc()).limit(1).with_for_update()
        )
        self._scan = (
            select(table.id, table.key, table.room_id, table.to, table.priority, table.merge_key, table.not_before,
                   table.expires_at, table.attempts)
            .where(table.account == self.account, table.status == "pending")
            .order_by(table.priority, table.id).limit(_SCAN)
        )
        self._merge = Prepared(
            update(OutboxMessage.__table__).where(table.id == bindparam("row_id"), table.status == "pending")
            .values(parts=bindparam("new_parts"), mentions=bindparam("new_mentions"),
                    not_before=bindparam("new_not_before"))
        )

    @property
    def capabilities(self) -> Capabilities:
        """What the account can do now (an adapter may lose a capability its service turns out not to have):
        a message it cannot send is refused, never recorded as sent."""
        return self._capabilities()

    # --- queueing -------------------------------------------------------------

    def enqueue(self, session: Session, *, key: str, text: str, room_id: str | None = None, to: str | None = None,
                mentions: tuple[str, ...] = (), file: str | None = None, source: str = "",
                not_before: datetime | None = None, expires_at: datetime | None = None,
                action: str | None = None, member_id: str | None = None, merge: MergeInto | None = None,
                ) -> str | None:
        """Add a message inside the caller's transaction; a second add with the same key is ignored.

        Returns why the account cannot send it at all (the row is then stored as failed), else None.
        With `merge` (after `merge` found no queued message to join), it starts a merged message, held
        briefly so others can join.
        """
        if (room_id is None) == (to is None):
            raise ValueError("a message goes to exactly one of room_id or to")
        now = self._clock.now()
        refused = self.capabilities.refusal(Outgoing(account=self.account, text=text, room_id=room_id, to=to,
                                                     file=file, action=action, member_id=member_id))
        if refused:
            log.warning("outbox %s: not sending %s to %s: %s", self.account, key, room_id or to, refused)
        merge_key, parts, merge_template = None, [], None
        if merge is not None and room_id is not None and self.render_merged is not None:
            merge_key, parts, merge_template = merge.key, [{"key": key, **merge.part}], merge.template
            not_before = max(not_before or now, now + timedelta(seconds=self._pacing.merge_quiet))
        self._note_fresh(not_before or now)
        # values as parameters of one prepared statement (no ORM bookkeeping, no per-call compile-cache lookup)
        self._enqueue.rowcount(session, {
            "account": self.account, "key": key, "room_id": room_id, "to": to, "text": text,
            "mentions": list(mentions), "file": file, "action": action, "member_id": member_id, "source": source,
            "status": "failed" if refused else "pending", "attempts": 0, "created_at": now,
            "not_before": not_before or now, "expires_at": expires_at, "last_error": refused,
            "priority": BULK if source.startswith("sop:") else MEMBERS, "merge_key": merge_key, "parts": parts,
            "merge_template": merge_template})
        return refused

    def merge(self, session: Session, *, key: str, room_id: str, merge: MergeInto) -> bool:
        """Add a reply to the room's queued message of its merge key, inside the caller's transaction; False if
        there is none with room for another @-mention (or it went to WeChat already): then `enqueue` it."""
        now = self._clock.now()
        conn = session.connection()
        row = self._open_merge.first(conn, {"room_id": room_id, "merge_key": merge.key})
        if row is None:
            return False
        row_id, queued_parts, mentions, created_at = row
        parts = list(queued_parts)
        if any(part.get("key") == key for part in parts):
            return True  # the same reply again (a handler run twice): it is in there once
        if len(parts) >= self._pacing.max_mentions:
            return False
        parts.append({"key": key, **merge.part})  # the text is rendered once, when the message is claimed
        full = len(parts) >= self._pacing.max_mentions
        created = created_at.astimezone(self._clock.tz)
        hold = min(now + timedelta(seconds=self._pacing.merge_quiet),
                   created + timedelta(seconds=self._pacing.merge_wait))
        merged = self._merge.rowcount(conn, {"row_id": row_id, "new_parts": parts,
                                             "new_mentions": list(dict.fromkeys([*mentions, merge.mention])),
                                             "new_not_before": now if full else hold})
        self._note_fresh(now if full else hold)
        return merged == 1

    def _note_fresh(self, not_before: datetime) -> None:
        if self._fresh is None or not_before < self._fresh:
            self._fresh = not_before

    def wake(self) -> None:
        """Look at the queue again soon (call after committing new rows)."""
        if self._stopped:
            return
        if self._busy:
            self._again = True
            return
        # nothing new can go before the account's limits and its own time allow: look then, not at every commit
        fresh, self._fresh = self._fresh, None
        self._schedule(self._gate() if fresh is None else max(self._gate(), fresh))

    # --- life cycle -------------------------------------------------------------

    async def reconcile(self, confirm: Confirm) -> None:
        """Before `start`: ask the adapter about rows a crash (or a dead previous owner) left `sending`.

        Delivered ones are marked sent, undelivered ones go back to the queue; `start` marks the
        rest `uncertain`. This is what makes a take-over exactly-once where the platform can tell.
        """
        with Session(self._engine) as session:
            stuck = session.exec(select(OutboxMessage).where(
                OutboxMessage.account == self.account, OutboxMessage.status == "sending")).all()
        for row in stuck:
            try:
                delivered = await confirm(_outgoing(row))
            except Exception as err:
                log.warning("outbox %s: could not ask whether %s went out: %s", self.account, row.key, err)
                continue
            if delivered is None:
                continue
            values: dict[str, object] = {"status": "sent", "sent_at": self._clock.now()} if delivered \
                else {"status": "pending", "attempts": max(0, row.attempts - 1)}
            with Session(self._engine) as session:
                session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id,
                                                            OutboxMessage.status == "sending").values(**values))
                session.commit()
            log.warning("outbox %s: message %s (%s) was being sent when the bot stopped; the platform says it %s",
                        self.account, row.key, row.room_id or row.to,
                        "went out (recorded as sent)" if delivered else "did not go out (queued again)")

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
        self._offline = False
        self.wake()

    def resume(self) -> None:
        """The connection is back: send again (messages past their deadline are skipped, as always)."""
        self._offline = False
        self.wake()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def finish_in_flight(self, timeout: float = 15.0) -> None:
        """After `stop()`: let a send the adapter is already doing finish and be recorded.

        Disconnecting first would cut it off: it would be retried after a restart although WeChat may
        already have posted it, which is a duplicate in the group.
        """
        if self._idle.is_set():
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("outbox %s: a send still in flight after %.0fs at stop; it is recorded after a restart",
                        self.account, timeout)

    @property
    def idle(self) -> bool:
        """No send is in flight (a lease may be handed over only then)."""
        return self._idle.is_set()

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
        self._idle.clear()
        try:
            next_time = await self._step()
            self._db_failures = 0
        except SQLAlchemyError as err:  # the database went away: keep the queue, look again soon
            self._db_failures += 1
            delay = min(2.0 ** (self._db_failures - 1), _DB_RETRY_MAX)
            log.warning("outbox %s: database error (%s); retrying in %.0fs", self.account,
                        str(err).splitlines()[0], delay)
            next_time = self._clock.now() + timedelta(seconds=delay)
        finally:
            self._busy = False
            self._idle.set()
        if self._again:
            self._again = False
            next_time = self._gate() if next_time is None else min(next_time, self._gate())
        if next_time is not None:
            self._schedule(next_time)

    async def _step(self) -> datetime | None:
        """Send the row that may go first, if it may go now; return when to look again."""
        now = self._clock.now()
        if self._unrecorded or self._unclaimed:
            self._record_unrecorded()
        if self._offline or (self.lease is not None and not self.lease.held()):
            return None  # woken again by `resume` / the lease keeper
        with Session(self._engine, expire_on_commit=False) as session:
            rows = session.execute(self._scan).all()  # only what choosing needs: no texts, no JSON
            best: tuple[tuple[datetime, int, int], Any] | None = None
            seen: set[tuple[str, int]] = set()
            newest: dict[str, int] = {}
            for row in rows:
                lane = row.room_id or f"dm:{row.to}"
                newest[lane] = max(newest.get(lane, 0), row.id or 0)
            for row in rows:
                lane = row.room_id or f"dm:{row.to}"
                if (lane, row.priority) in seen:
                    continue  # each room's messages in order (within their class)
                seen.add((lane, row.priority))
                # a merged reply waits for others to join only while nothing is queued behind it in its room
                closed = row.merge_key is not None and row.id != newest[lane]
                order = (self._allowed_at(row, lane, now, closed=closed), row.priority, row.id or 0)
                if best is None or order < best[0]:
                    best = (order, row)
            if best is None:
                return None
            (allowed, _, _), row = best
            if row.expires_at is not None and max(now, allowed) > row.expires_at:
                error = f"late: could not go out before {row.expires_at.isoformat()}"
                log.warning("outbox %s: skipped %s to %s (%s)", self.account, row.key, row.room_id or row.to, error)
                session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id,
                                                            OutboxMessage.status == "pending")
                                .values(status="skipped", last_error=error))
                session.commit()
                return now
            if allowed > now:
                return allowed
            message = session.get(OutboxMessage, row.id)  # the whole row, only for the one that goes
            if message is None or message.status != "pending":
                return now
            refused = self._refusal(session, message, now)
            if refused is not None:
                message.status, message.last_error = refused
                log.warning("outbox %s: %s %s to %s: %s", self.account, message.status, message.key,
                            message.room_id or message.to, message.last_error)
                session.add(message)
                session.commit()
                return now
            attempts = message.attempts + 1
            fence = (self.lease.fence(),) if self.lease is not None else ()
            try:
                claimed = session.execute(
                    update(OutboxMessage).where(col(OutboxMessage.id) == row.id, OutboxMessage.status == "pending",
                                                *fence).values(status="sending", attempts=attempts)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    session.rollback()
                    return now
                session.refresh(message)  # inside the claim: replies merged in before it go with it
                if message.merge_template is not None and len(message.parts) > 1:
                    self._render_merged(message)
                session.commit()
            except SQLAlchemyError:
                # Nothing went to WeChat. If the claim did commit (its answer lost with the connection), the
                # row must not sit `sending` until a restart calls it uncertain: put it back in the queue.
                assert row.id is not None
                self._unclaimed[row.id] = attempts - 1
                raise
            await self._deliver(session, message, now, attempts)
        return self._clock.now()

    def _render_merged(self, row: OutboxMessage) -> None:
        """The merged text over every part, rendered once, in the claim (committed with it, so a restart that
        asks the adapter about a `sending` row asks about the text that went)."""
        try:
            assert self.render_merged is not None
            text, mentions = self.render_merged(row)
        except Exception:  # the runtime falls back on its own for a broken template; this is a bug: still send
            log.exception("outbox %s: could not render merged message %s; sending it as it was queued", self.account,
                          row.key)
            return
        row.text, row.mentions = text, list(mentions)

    async def _deliver(self, session: Session, row: OutboxMessage, now: datetime, attempts: int) -> None:
        lane = row.room_id or f"dm:{row.to}"
        try:
            receipt = await self._send(_outgoing(row))
        except Disconnected as err:
            self._offline = True
            log.error("outbox %s: connection lost (%s); %s stays queued until the account reconnects",
                      self.account, err, row.key)
            self._finish(session, row, status="pending", error=str(err), attempts=attempts - 1)
            if self.on_disconnect is not None:
                self.on_disconnect(err)
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
            self._note_sent(sent_at, lane, jitter=True)
            if isinstance(receipt, Receipt):  # a person confirms it: `settle` records the outcome
                # only from `sending`: a settle that came first (a confirmation faster than this) wins
                self._finish(session, row, status="awaiting_confirmation", attempts=attempts, only_from="sending")
                log.info("%s to %s is task %s, waiting for confirmation", row.key, row.room_id or row.to,
                         receipt.task_id)
                return
            self._finish(session, row, status="sent", attempts=attempts, sent_at=sent_at)
            log.info("sent %s to %s", row.key, row.room_id or row.to)

    def _refusal(self, session: Session, row: OutboxMessage, now: datetime) -> tuple[str, str] | None:
        """(status, reason) if the row must not go out: the account cannot do it, or the room's quota is used up."""
        refused = self.capabilities.refusal(_outgoing(row))
        if refused:
            return "failed", refused
        quota = self.capabilities.room_quota
        if quota is None or row.room_id is None or row.action is not None:
            return None
        since = quota.period_start(now)
        used = session.exec(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.account == self.account, OutboxMessage.room_id == row.room_id,
            col(OutboxMessage.action).is_(None), col(OutboxMessage.status).in_(QUOTA_COUNTED),
            func.coalesce(OutboxMessage.sent_at, OutboxMessage.not_before) >= since)).one()
        if used < quota.allowed(now):
            return None
        return "skipped", (f"超出配额：{self.capabilities.subject}的群{quota.describe(now)}，群 {row.room_id} "
                           f"从 {since:%m-%d} 起已经收到 {used} 条，这一条不发")

    def settle(self, key: str, status: str, detail: str | None = None) -> None:
        """A message that waited for confirmation ended: `sent`, `cancelled` or `failed` (called by the adapter).

        Also settles a row a crash left `sending`/`uncertain` whose task the adapter knows about.
        """
        values: dict[str, object] = {"status": status, "last_error": detail}
        if status == "sent":
            values["sent_at"] = self._clock.now()
        with Session(self._engine) as session:
            session.execute(update(OutboxMessage).where(
                OutboxMessage.account == self.account, OutboxMessage.key == key,
                col(OutboxMessage.status).in_(("awaiting_confirmation", "sending", "uncertain"))).values(**values))
            session.commit()

    def _finish(self, session: Session, row: OutboxMessage, *, status: str, attempts: int, error: str | None = None,
                sent_at: datetime | None = None, not_before: datetime | None = None,
                only_from: str | None = None) -> None:
        values: dict[str, object] = {"status": status, "attempts": attempts, "last_error": error}
        if sent_at is not None:
            values["sent_at"] = sent_at
        if not_before is not None:
            values["not_before"] = not_before
        current = (OutboxMessage.status == only_from,) if only_from else ()
        try:
            session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id, *current).values(**values))
            session.commit()
        except SQLAlchemyError as err:  # the send happened (or failed) all the same: record it once the db is back
            assert row.id is not None
            self._unrecorded[row.id] = values
            log.warning("outbox %s: %s is %s but the database could not record it yet (%s)", self.account, row.key,
                        status, str(err).splitlines()[0])

    def _record_unrecorded(self) -> None:
        fence = (self.lease.fence(),) if self.lease is not None else ()
        with Session(self._engine) as session:
            for row_id, values in self._unrecorded.items():
                session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row_id).values(**values))
            for row_id, attempts in self._unclaimed.items():  # claimed, never handed over: queued again
                session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row_id,
                                                            OutboxMessage.status == "sending", *fence)
                                .values(status="pending", attempts=attempts))
            session.commit()
        if self._unrecorded:
            log.info("outbox %s: recorded the outcome of %d message(s) from during the database outage",
                     self.account, len(self._unrecorded))
        self._unrecorded.clear()
        self._unclaimed.clear()

    def _allowed_at(self, row: Any, lane: str, now: datetime, *, closed: bool = False) -> datetime:
        start = row.not_before.astimezone(self._clock.tz)
        times = [min(start, now) if closed else start, self._gate(now)]
        if self._chat_paced() and lane in self._room_last:
            times.append(self._room_last[lane] + timedelta(seconds=self._pacing.room_interval))
        return max(times)

    def _gate(self, now: datetime | None = None) -> datetime:
        """The earliest any message of the account may go: now, or later by its interval, cool-down, hourly cap."""
        now = now or self._clock.now()
        times = [now]
        if self._cooldown_until is not None:
            times.append(self._cooldown_until)
        if not self._chat_paced():
            return max(times)
        if self._account_next is not None:
            times.append(self._account_next)
        while self._hour and self._hour[0] <= now - _HOUR:
            self._hour.popleft()
        if len(self._hour) >= self._pacing.hourly_cap:
            times.append(self._hour[len(self._hour) - self._pacing.hourly_cap] + _HOUR)
        return max(times)

    def _chat_paced(self) -> bool:
        """Pacing imitates a person chatting, for WeChat's risk control. Where each post is a task a person
        confirms (WeCom), a send is an API call with its own rate limits (`RateLimited` cools down)."""
        return not self.capabilities.posts_need_confirmation

    def _note_sent(self, when: datetime, lane: str, *, jitter: bool) -> None:
        if not self._chat_paced():
            return
        gap = self._pacing.min_interval + (self._rng.uniform(0, self._pacing.jitter) if jitter else 0.0)
        self._account_next = when + timedelta(seconds=gap)
        self._room_last[lane] = when
        self._hour.append(when)


def _outgoing(row: OutboxMessage) -> Outgoing:
    return Outgoing(account=row.account, text=row.text, room_id=row.room_id, to=row.to, mentions=tuple(row.mentions),
                    file=row.file, action=row.action, member_id=row.member_id, key=row.key,
                    expires_at=row.expires_at)
