"""Tables of the WeCom adapter: group-message tasks and the groups in them, the welcome template, media ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot._db import UTCDateTime


class WecomTask(SQLModel, table=True):
    """One `add_msg_template` task: one owner, the groups of one post (up to 2,000), one deadline.

    `groups` / `confirmed` / `sent` / `failed` / `cancelled` count groups: in the task; in it when the owner
    confirmed it; that got it; that did not; cancelled unconfirmed. Each group's outbox row settles on its own
    (`WecomTaskRoom`).
    """

    __tablename__ = "wecom_group_task"
    __table_args__ = (Index("ix_wecom_group_task_open", "account", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    msgid: str = Field(unique=True)
    post: str
    """The outbox key without the room: every group's row of one SOP post shares it."""
    sender: str
    groups: int
    status: str = "waiting"  # waiting | done
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


class WecomTaskRoom(SQLModel, table=True):
    """One outbox row handed to the adapter: a group of a post, queued for a task, then in one until it settles.

    Rows of one owner with the same `batch` (post, content and deadline) become one task. `queued` rows have
    no task yet (a restart creates it); the others carry the task's `msgid`.
    """

    __tablename__ = "wecom_task_room"
    __table_args__ = (UniqueConstraint("account", "key"), Index("ix_wecom_task_room_state", "account", "status"))

    id: int | None = Field(default=None, primary_key=True)
    account: str
    key: str
    """The outbox key (`sop:<file>:<step>:<room>:<occurrence>` for SOP posts)."""
    room_id: str
    post: str
    sender: str
    batch: str
    text: str
    attachments: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    deadline: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    msgid: str | None = Field(default=None, index=True)
    status: str = "queued"  # queued | waiting | sent | failed | cancelled
    confirmed: bool = False
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


FIRST_VERSION_TASKS = Table(
    "wecom_task", MetaData(), Column("id", Integer, primary_key=True), Column("account", String),
    Column("key", String), Column("post", String), Column("room_id", String), Column("msgid", String),
    Column("sender", String), Column("status", String), Column("reminders", JSON),
    Column("created_at", UTCDateTime), Column("deadline", UTCDateTime))
"""The first version's tasks, one per room (only read, to adopt those still waiting; never created)."""
