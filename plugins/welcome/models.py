"""Welcome tables: one row per join, which is both the greeting queue and the record of who invited whom."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from bot import UTCDateTime


class WelcomeJoin(SQLModel, table=True):
    """A member joining a room once. Rows stay after the greeting: they are the invitation record."""

    __tablename__ = "welcome_join"
    __table_args__ = (UniqueConstraint("room_id", "member_id", "joined_at", name="uq_welcome_join"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    room_id: str = Field(index=True)
    member_id: str
    inviter_id: str | None = Field(default=None, index=True)
    joined_at: datetime = Field(sa_type=UTCDateTime)
    greet_at: datetime = Field(sa_type=UTCDateTime)
    """When the batch this join belongs to is greeted (everyone joining before it shares one message)."""
    status: str = "pending"
    """pending | greeted | left (gone, or joined again, before the greeting) | template (the platform greets)"""
    greeted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
