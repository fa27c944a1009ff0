"""Poll tables: a poll with its options, and one vote row per member (the unique constraint)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot import UTCDateTime


class Poll(SQLModel, table=True):
    __tablename__ = "poll_poll"

    id: int | None = Field(default=None, primary_key=True)
    account: str
    room_id: str = Field(index=True)
    title: str
    options: list[str] = Field(sa_column=Column(JSON, nullable=False))
    status: str = "open"
    """open | closed"""
    allow_change: bool = True
    opened_by: str | None = None
    opened_at: datetime = Field(sa_type=UTCDateTime)
    closes_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PollVote(SQLModel, table=True):
    """A member's current choice (0-based option index); a changed vote updates this row."""

    __tablename__ = "poll_vote"
    __table_args__ = (UniqueConstraint("poll_id", "member_id", name="uq_poll_vote_member"),)

    id: int | None = Field(default=None, primary_key=True)
    poll_id: int = Field(foreign_key="poll_poll.id", index=True)
    member_id: str
    option: int
    voted_at: datetime = Field(sa_type=UTCDateTime)
    changes: int = 0
