"""Account leases: on a shared database, each account is run by exactly one live process.

A lease is a row of `core_account_lease` (account, owner, epoch, expires_at). The holder renews it
every heartbeat; another process takes it over only once `expires_at` has passed by the database's
clock, and the take-over bumps `epoch`. The holder trusts its lease only until `ttl` after it *asked*
for the last renewal, measured on its own monotonic clock, so it stops before anyone else may start
whatever the machines' wall clocks say. Sends are fenced in the database too: the outbox claims a
message only while the lease row still names this owner and epoch and has not expired.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, exists, func, select, text, update
from sqlalchemy.engine import Connection, Engine

from bot._db import dialect_insert
from bot._models import AccountLease

_TABLE = AccountLease.__table__  # type: ignore[attr-defined]


def db_now(conn: Connection) -> datetime:
    """The database server's clock (PostgreSQL), or this machine's (SQLite is local anyway)."""
    if conn.dialect.name == "postgresql":
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    return datetime.now(UTC)


class Lease:
    """One account's lease as seen by one process."""

    def __init__(self, engine: Engine, account: str, owner: str, ttl: float) -> None:
        self._engine = engine
        self.account = account
        self.owner = owner
        self.ttl = ttl
        self.epoch: int | None = None
        """Set while this process believes it holds the lease (it may have lapsed: see `held`)."""
        self._deadline = 0.0

    def held(self) -> bool:
        """True while this process may act for the account."""
        return self.epoch is not None and time.monotonic() < self._deadline

    @property
    def remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic()) if self.epoch is not None else 0.0

    def acquire(self) -> bool:
        """Take the lease if nobody holds it or the holder let it expire. True if this process holds it now."""
        asked = time.monotonic()
        taken = claim(self._engine, self.owner, [self.account], limit=1, ttl=self.ttl)
        if self.account not in taken:
            return False
        self.adopt(taken[self.account], asked)
        return True

    def adopt(self, epoch: int, asked: float) -> None:
        """Hold the lease a batch `claim` took for this process (`asked`: monotonic time of the claim)."""
        self.epoch, self._deadline = epoch, asked + self.ttl

    def renew(self) -> bool:
        """Extend the lease; False if another process took it over (this one must stop the account)."""
        if self.epoch is None:
            return False
        asked = time.monotonic()
        with self._engine.begin() as conn:
            now = db_now(conn)
            result = conn.execute(update(_TABLE).where(*self._mine()).values(
                renewed_at=now, expires_at=now + timedelta(seconds=self.ttl)))
        if result.rowcount != 1:
            self.epoch, self._deadline = None, 0.0
            return False
        self._deadline = asked + self.ttl
        return True

    def release(self) -> None:
        """Give the lease up at once (clean shutdown), so a standby takes over without waiting for expiry."""
        if self.epoch is None:
            return
        with self._engine.begin() as conn:
            conn.execute(update(_TABLE).where(*self._mine()).values(expires_at=db_now(conn)))
        self.epoch, self._deadline = None, 0.0

    def fence(self) -> ColumnElement[bool]:
        """SQL that is true only while this process's lease is current, by the database's clock."""
        now = (func.timezone("UTC", func.clock_timestamp()) if self._engine.dialect.name == "postgresql"
               else datetime.now(UTC))
        return exists(select(1).where(*self._mine(), _TABLE.c.expires_at > now))

    def holder(self) -> tuple[str, int, datetime] | None:
        """(owner, epoch, expires_at) of the account's lease row, for logs and monitoring."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_TABLE.c.owner, _TABLE.c.epoch, _TABLE.c.expires_at)
                               .where(_TABLE.c.account == self.account)).first()
        return None if row is None else (row[0], row[1], row[2])

    def _mine(self) -> tuple[ColumnElement[bool], ...]:
        return (_TABLE.c.account == self.account, _TABLE.c.owner == self.owner, _TABLE.c.epoch == self.epoch)


def claim(engine: Engine, owner: str, accounts: Iterable[str], *, limit: int, ttl: float) -> dict[str, int]:
    """Take up to `limit` of `accounts` whose leases nobody holds, in one transaction; returns account -> epoch.

    Read `time.monotonic()` before calling and pass it to `Lease.adopt` for each account taken.

    As APScheduler 4's SQLAlchemy store acquires schedules: the free rows are locked with
    `FOR UPDATE SKIP LOCKED`, so processes claiming at once take disjoint batches instead of queueing
    on the same rows, and the update re-checks expiry, so a lease is never taken while it is live.
    """
    wanted = sorted(set(accounts))
    if limit <= 0 or not wanted:
        return {}
    insert = dialect_insert(engine.dialect.name)
    with engine.begin() as conn:
        now = db_now(conn)
        known = set(conn.execute(select(_TABLE.c.account).where(_TABLE.c.account.in_(wanted))).scalars())
        if missing := [a for a in wanted if a not in known]:  # a first row (free, epoch 0), to lock like the others
            past = now - timedelta(seconds=1)
            conn.execute(insert(_TABLE).values([
                {"account": a, "owner": "", "epoch": 0, "acquired_at": past, "renewed_at": past, "expires_at": past}
                for a in missing]).on_conflict_do_nothing(index_elements=["account"]))
        free = (select(_TABLE.c.account).where(_TABLE.c.account.in_(wanted), _TABLE.c.expires_at < now)
                .order_by(_TABLE.c.account).limit(limit).with_for_update(skip_locked=True))
        rows = conn.execute(
            update(_TABLE).where(_TABLE.c.account.in_(free.scalar_subquery()), _TABLE.c.expires_at < now)
            .values(owner=owner, epoch=_TABLE.c.epoch + 1, acquired_at=now, renewed_at=now,
                    expires_at=now + timedelta(seconds=ttl))
            .returning(_TABLE.c.account, _TABLE.c.epoch)).all()
    return {account: epoch for account, epoch in rows}
