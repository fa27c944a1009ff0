"""FAQ tables: AI answers used per room per day (the budget is a conditional UPDATE, so it never overruns)."""

from __future__ import annotations

from datetime import date

from sqlmodel import Field, SQLModel


class FaqAiUsage(SQLModel, table=True):
    __tablename__ = "faq_ai_usage"

    room_id: str = Field(primary_key=True)
    """The room, or `dm:<member>` for direct messages."""
    day: date = Field(primary_key=True)
    """The local calendar day (bot time zone)."""
    used: int = 0
