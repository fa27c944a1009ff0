"""The SOP engine's own table: one row per (step, room or member, occurrence), the exactly-once ledger.

Recurring and sequence posts get their row when they fire (queued or skipped); join-relative steps
get theirs when the member joins (pending) and one sweeper sends the rows that come due, so ten
thousand new members are ten thousand rows, not ten thousand scheduler jobs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot._db import UTCDateTime


class SopDelivery(SQLModel, table=True):
    __tablename__ = "sop_delivery"
    __table_args__ = (
        UniqueConstraint("account", "key", name="uq_sop_delivery_key"),
        Index("ix_sop_delivery_due", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str
    key: str
    file: str
    step: str
    room_id: str
    member_id: str | None = None
    due_at: datetime = Field(sa_type=UTCDateTime)
    status: str = "pending"  # pending | queued | done | skipped | cancelled | failed
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the post was handed to the outbox (or the action ran)."""
    detail: str = ""
