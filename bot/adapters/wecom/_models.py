"""Tables of the WeCom adapter: the group-message tasks waiting for owners, and the welcome template."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from bot._db import UTCDateTime


class WecomTask(SQLModel, table=True):
    """One `add_msg_template` task: which outbox message it carries and how it ended.

    `confirmed` / `sent` / `failed` / `cancelled` are the counts `qunbot sop status` and the dashboard
    add up per post: the owner confirmed it; groups it reached; groups it failed in; cancelled unconfirmed.
    """

    __tablename__ = "wecom_task"
    __table_args__ = (Index("ix_wecom_task_open", "account", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    key: str = Field(index=True)
    """The outbox key (`sop:<file>:<step>:<room>:<occurrence>` for SOP posts)."""
    post: str = ""
    """The key without the room: every room's task of one SOP post shares it."""
    room_id: str
    msgid: str = Field(unique=True)
    sender: str
    status: str = "waiting"  # waiting | sent | failed | cancelled
    confirmed: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    reminders: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """When the owner was reminded (ISO times): at most 3 in 24 h."""
    created_at: datetime = Field(sa_type=UTCDateTime)
    deadline: datetime = Field(sa_type=UTCDateTime)
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    detail: str = ""


class WecomWelcome(SQLModel, table=True):
    """The corp's 入群欢迎语 template this account made from the welcome plugin's greeting."""

    __tablename__ = "wecom_welcome"

    account: str = Field(primary_key=True)
    template_id: str
    text: str
    updated_at: datetime = Field(sa_type=UTCDateTime)


class WecomMedia(SQLModel, table=True):
    """An image uploaded with media/upload: its id is reused until shortly before its 3 days run out."""

    __tablename__ = "wecom_media"

    account: str = Field(primary_key=True)
    path: str = Field(primary_key=True)
    mtime_ns: int = Field(primary_key=True)
    """The file's modification time: an edited image is uploaded again."""
    media_id: str
    uploaded_at: datetime = Field(sa_type=UTCDateTime)
