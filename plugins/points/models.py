"""Points tables: the append-only ledger (the truth), a per-member account row kept in step with it
in the same transaction (fast balances, the non-negativity check), sign-ins, stock and redemptions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, UniqueConstraint, text
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from bot import Migration, UTCDateTime


class PointsLedger(SQLModel, table=True):
    """One change of one member's points in one room; rows are only ever inserted."""

    __tablename__ = "points_ledger"
    __table_args__ = (UniqueConstraint("room_id", "key", name="uq_points_ledger_key"),)

    id: int | None = Field(default=None, primary_key=True)
    room_id: str = Field(index=True)
    member_id: str = Field(index=True)
    amount: int = Field(sa_type=BigInteger)
    """Signed: + earned, - spent or deducted."""
    kind: str
    """earn | spend | adjust (an admin's change, which also moves the level basis)."""
    reason: str
    source: str
    """The plugin that made the change."""
    key: str | None = None
    """Idempotency key, unique per room; NULL for changes that may repeat."""
    actor_id: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)


class PointsAccount(SQLModel, table=True):
    """Derived from the ledger, updated in the same transaction; the CHECK makes overdrafts impossible."""

    __tablename__ = "points_account"
    __table_args__ = (CheckConstraint("balance >= 0", name="ck_points_account_balance"),)

    room_id: str = Field(primary_key=True)
    member_id: str = Field(primary_key=True)
    balance: int = Field(default=0, sa_type=BigInteger)
    earned: int = Field(default=0, sa_type=BigInteger)
    """Level basis: everything earned or adjusted, not reduced by spending."""
    level_rank: int = 1
    """The highest level reached (and announced)."""


class PointsSignIn(SQLModel, table=True):
    __tablename__ = "points_signin"
    __table_args__ = (UniqueConstraint("room_id", "member_id", "day", name="uq_points_signin_day"),)

    id: int | None = Field(default=None, primary_key=True)
    room_id: str
    member_id: str
    day: date
    """The local calendar day (bot time zone)."""
    streak: int
    points: int = Field(sa_type=BigInteger)
    signed_at: datetime = Field(sa_type=UTCDateTime)


class PointsStock(SQLModel, table=True):
    """How many of a catalog item were redeemed; the catalog file holds the stock."""

    __tablename__ = "points_stock"

    item: str = Field(primary_key=True)
    sold: int = 0


class PointsRedemption(SQLModel, table=True):
    """A redemption for the admin to fulfil."""

    __tablename__ = "points_redemption"

    id: int | None = Field(default=None, primary_key=True)
    room_id: str = Field(index=True)
    member_id: str
    item: str
    cost: int = Field(sa_type=BigInteger)
    status: str = "pending"
    """pending | fulfilled"""
    created_at: datetime = Field(sa_type=UTCDateTime)


_BIGINT_COLUMNS = {"points_ledger": ["amount"], "points_account": ["balance", "earned"],
                   "points_signin": ["points"], "points_redemption": ["cost"]}


def _widen_to_bigint(conn: Connection) -> None:
    """PostgreSQL's INTEGER is 32 bits: a balance past 2,147,483,647 made every later sign-in fail.
    (SQLite's INTEGER is 64 bits already.)"""
    if conn.dialect.name != "postgresql":
        return
    for table, columns in _BIGINT_COLUMNS.items():
        conn.execute(text(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} TYPE BIGINT" for c in columns)))


MIGRATIONS = (Migration(2, "points columns widened to 64-bit integers", _widen_to_bigint),)
