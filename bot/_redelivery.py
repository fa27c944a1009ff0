"""Redelivered messages count once: WeChat and puppet services resend recent messages after a reconnect.

Every handler that commits work for an inbound message also inserts (account, message id, handler) in the
same transaction. The primary key decides: a second run of that handler on that message (a redelivery,
or another process racing) finds the row and rolls back, so a redemption or an admin's adjustment is
applied once even if the bot crashed between two handlers. Marks older than the retention window are
pruned; platforms redeliver minutes, not days, after the fact.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, literal_column, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot._db import Prepared, dialect_insert
from bot._events import DirectMessage, Event, MemberRenamed, MembersJoined, MembersLeft, RoomMessage, RoomTopicChanged
from bot._models import InboundMark

log = logging.getLogger("qunbot.redelivery")

RETENTION = timedelta(days=7)
"""How long a message id is remembered; a redelivery later than this would run again."""
PRUNE_EVERY = timedelta(hours=6)
INBOUND = (RoomMessage, DirectMessage, MembersJoined, MembersLeft, MemberRenamed, RoomTopicChanged)
"""Events that come from the transport with its message id (timers and actions carry their own keys)."""
RECORD = ""
"""The `handler` of the runtime's own record of a membership event."""

_MARK = InboundMark.__table__.c  # type: ignore[attr-defined]
_DONE = Prepared(select(_MARK.handler).where(_MARK.account == bindparam("account"),
                                             _MARK.message_id == bindparam("mid")))


def from_transport(event: Event) -> bool:
    return isinstance(event, INBOUND) and bool(event.id)


class Redelivery:
    """Remembers which handlers committed for which inbound message, in the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._claim = Prepared(dialect_insert(engine.dialect.name)(InboundMark.__table__).on_conflict_do_nothing(
        ).returning(literal_column("1")), ("account", "message_id", "handler", "seen_at"))

    def handled(self, event: Event, session: Session | None = None) -> frozenset[str]:
        """Handlers that already committed for this message (empty the first time it arrives).

        Read in `session` if given (the handler's own, which it opens anyway: no connection of its own)."""
        if not from_transport(event):
            return frozenset()
        params = {"account": event.account, "mid": event.id}
        if session is not None:
            return frozenset(row[0] for row in _DONE.all(session, params))
        with self._engine.connect() as connection:
            return frozenset(connection.execute(_DONE.statement, params).scalars().all())

    def claim(self, session: Session, event: Event, handler: str, at: datetime) -> bool:
        """Mark `handler` done for this message in the caller's transaction; False if it was already.

        On PostgreSQL a concurrent claim of the same mark waits for the first to commit or roll back.
        """
        if not from_transport(event):
            return True
        row = {"account": event.account, "message_id": event.id, "handler": handler, "seen_at": at}
        return self._claim.first(session, row) is not None

    def prune(self, now: datetime) -> int:
        """Forget message ids older than the retention window; returns how many marks went."""
        with self._engine.begin() as connection:
            gone = connection.execute(delete(InboundMark.__table__).where(_MARK.seen_at < now - RETENTION))
        count = int(gone.rowcount or 0)
        if count:
            log.info("forgot %d handled message id(s) older than %d days", count, RETENTION.days)
        return count
