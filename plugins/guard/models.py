"""Guard tables: every detection and action (the record an admin can audit), and the whitelist."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from bot import UTCDateTime


class GuardRecord(SQLModel, table=True):
    """One detection and what was done about it. The evidence is a hash, not the ad itself."""

    __tablename__ = "guard_record"
    __table_args__ = (UniqueConstraint("room_id", "event_id", name="uq_guard_record_event"),)

    id: int | None = Field(default=None, primary_key=True)
    room_id: str = Field(index=True)
    member_id: str = Field(index=True)
    event_id: str
    """The message that was caught; unique per room, so a redelivered message is recorded once."""
    rule: str
    label: str
    evidence_hash: str
    action: str
    """warn | remove | notify_owner (could not remove) | flag (mass join) | revoke"""
    strike: int = 0
    """This member's strike count in the window, this one included (0 for non-strikes)."""
    actor_id: str | None = None
    """Who acted: None for the bot's own rule, else the admin (revoke, whitelist)."""
    revoked: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)


class GuardWhitelist(SQLModel, table=True):
    __tablename__ = "guard_whitelist"

    room_id: str = Field(primary_key=True)
    member_id: str = Field(primary_key=True)
    added_by: str
    created_at: datetime = Field(sa_type=UTCDateTime)
