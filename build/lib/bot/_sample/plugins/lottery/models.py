"""Lottery tables: every draw with its commitment, seed, entrants and winners, and one row per entry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot import UTCDateTime


class LotteryDraw(SQLModel, table=True):
    """One draw. `seed` stays secret (never posted) until `status` becomes drawn."""

    __tablename__ = "lottery_draw"

    id: int | None = Field(default=None, primary_key=True)
    account: str
    room_id: str = Field(index=True)
    prize: str
    winners_count: int
    keyword: str
    status: str = "open"
    """open | drawn"""
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
