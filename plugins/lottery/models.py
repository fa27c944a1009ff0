"""Lottery tables: every draw with its terms, commitment, seed, public value, entrants and winners, and one
row per entry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from bot import Migration, UTCDateTime


class LotteryDraw(SQLModel, table=True):
    """One draw. `seed` stays secret (never posted) until `status` becomes drawn."""

    __tablename__ = "lottery_draw"
    __table_args__ = (Index("uq_lottery_draw_room_number", "room_id", "number", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    room_id: str = Field(index=True)
    number: int = 0
    """第 N 期: counts per room, from 1."""
    prize: str
    winners_count: int
    keyword: str
    status: str = "open"
    """open | closed (entries closed, waiting for the public value) | drawn"""
    mode: str = "seed"
    """seed | beacon | announced: what the seed is mixed with (docs/lottery.md)."""
    announce_source: str | None = None
    """announced mode: where the value will be published, as posted at the open."""
    beacon_round: int | None = None
    public_value: str | None = None
    """The beacon's randomness, or the value an admin announced; None in seed mode."""
    beacon: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The beacon round as fetched (round, randomness, signature, previous_signature), re-checkable offline."""
    opened_by: str | None = None
    opened_at: datetime = Field(sa_type=UTCDateTime)
    deadline: datetime = Field(sa_type=UTCDateTime)
    commitment: str
    seed: str
    min_level: int | None = None
    signed_in_today: bool = False
    joined_before: datetime | None = Field(default=None, sa_type=UTCDateTime)
    include_admins: bool = False
    drawn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    drawn_late: bool = False
    entrants: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """Sorted entrant ids as used for the draw (the canonical list of docs/lottery.md)."""
    winners: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class LotteryEntry(SQLModel, table=True):
    """A member's entry; the unique constraint is what makes it one entry per member per draw."""

    __tablename__ = "lottery_entry"
    __table_args__ = (UniqueConstraint("draw_id", "member_id", name="uq_lottery_entry_member"),)

    id: int | None = Field(default=None, primary_key=True)
    draw_id: int = Field(foreign_key="lottery_draw.id", index=True)
    member_id: str
    entered_at: datetime = Field(sa_type=UTCDateTime)
    message_id: str | None = None
    """The transport's id of the message that entered (the entry as received)."""


def _v2(conn: Connection) -> None:
    json_type = "JSON" if conn.dialect.name == "postgresql" else "TEXT"
    for column in ("number INTEGER NOT NULL DEFAULT 0", "mode VARCHAR NOT NULL DEFAULT 'seed'",
                   "announce_source VARCHAR", "beacon_round INTEGER", "public_value VARCHAR", f"beacon {json_type}"):
        conn.exec_driver_sql(f"ALTER TABLE lottery_draw ADD COLUMN {column}")
    conn.exec_driver_sql("ALTER TABLE lottery_entry ADD COLUMN message_id VARCHAR")
    conn.exec_driver_sql("UPDATE lottery_draw SET number = (SELECT COUNT(*) FROM lottery_draw d "
                         "WHERE d.room_id = lottery_draw.room_id AND d.id <= lottery_draw.id)")
    conn.exec_driver_sql("CREATE UNIQUE INDEX uq_lottery_draw_room_number ON lottery_draw (room_id, number)")


MIGRATIONS = [Migration(2, "draw numbers per room, public-value modes, entry message ids", _v2)]
