"""Insight tables: message times, tags (from rules or set by hand), lifecycle stages and purchases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot._db import UTCDateTime


class InsightMessage(SQLModel, table=True):
    """When a member spoke in a room (no text): daily activity, replies after a post. Pruned after a while."""

    __tablename__ = "insight_message"
    __table_args__ = (Index("ix_insight_message_room_at", "room_id", "at"),
                      Index("ix_insight_message_room_member_at", "room_id", "member_id", "at"))

    id: int | None = Field(default=None, primary_key=True)
    room_id: str
    member_id: str = Field(index=True)
    at: datetime = Field(sa_type=UTCDateTime)


class InsightTag(SQLModel, table=True):
    """A member's tag in a room. `source` is rule (recomputed on a schedule) or manual (an admin's command)."""

    __tablename__ = "insight_tag"

    room_id: str = Field(primary_key=True)
    member_id: str = Field(primary_key=True, index=True)
    tag: str = Field(primary_key=True)
    source: str = Field(primary_key=True)
    since: datetime = Field(sa_type=UTCDateTime)
    set_by: str | None = None


class InsightStage(SQLModel, table=True):
    """A member's lifecycle stage in a room (aware → interested → purchased → loyal) and since when."""

    __tablename__ = "insight_stage"

    room_id: str = Field(primary_key=True)
    member_id: str = Field(primary_key=True, index=True)
    stage: str
    since: datetime = Field(sa_type=UTCDateTime)


class InsightPurchase(SQLModel, table=True):
    """A purchase reported by a shop; `order_id` makes reporting the same order twice harmless."""

    __tablename__ = "insight_purchase"
    __table_args__ = (UniqueConstraint("order_id", name="uq_insight_purchase_order"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str
    member_id: str = Field(index=True)
    room_id: str | None = None
    """The room the sale is credited to; None counts it in every room the member is in."""
    amount_cents: int
    currency: str = "CNY"
    item: str = ""
    paid_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
