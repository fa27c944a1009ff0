"""Quiz tables: a round with a snapshot of its questions, and each member's one answer per question."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot import UTCDateTime


class QuizRound(SQLModel, table=True):
    """A round. `questions` is a copy of the bank's questions, so a later bank edit cannot change results."""

    __tablename__ = "quiz_round"

    id: int | None = Field(default=None, primary_key=True)
    account: str
    room_id: str = Field(index=True)
    bank: str
    questions: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    current: int = 0
    """Index of the question being asked (or last asked)."""
    status: str = "running"
    """running | finished"""
    seconds: int
    winners_per_question: int
    default_points: int
    started_by: str | None = None
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class QuizAnswer(SQLModel, table=True):
    """A member's first answer to one question; the unique constraint makes later ones not count."""

    __tablename__ = "quiz_answer"
    __table_args__ = (UniqueConstraint("round_id", "question", "member_id", name="uq_quiz_answer_member"),)

    id: int | None = Field(default=None, primary_key=True)
    """Ascending in arrival order: ranks who answered first."""
    round_id: int = Field(foreign_key="quiz_round.id", index=True)
    question: int
    member_id: str
    text: str
    correct: bool
    awarded: int = 0
    answered_at: datetime = Field(sa_type=UTCDateTime)
