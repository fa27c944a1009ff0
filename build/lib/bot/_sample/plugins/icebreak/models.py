"""Ice-breaking table: one row per newcomer per room, holding what they have done and what the bot said."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from bot import UTCDateTime


class IcebreakNewcomer(SQLModel, table=True):
    """A newcomer in a room. The nullable times are "done" marks, each set once."""

    __tablename__ = "icebreak_newcomer"
    __table_args__ = (UniqueConstraint("room_id", "member_id", name="uq_icebreak_newcomer"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    room_id: str = Field(index=True)
    member_id: str
    joined_at: datetime = Field(sa_type=UTCDateTime)
    ask_at: datetime = Field(sa_type=UTCDateTime)
    """When the batch invitation to introduce themselves is due."""
    asked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    intro_until: datetime = Field(sa_type=UTCDateTime)
    """The end of the window in which their first self-introduction is recognised."""
    intro_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    intro_text: str | None = None
    intro_points: int = 0
    nickname_ok_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """First time their group nickname matched the room's format."""
    reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
