"""Core tables: rooms, members, memberships, the outbox and durable plugin timers.

Plugins add their own tables (prefixed with the plugin name) on the same
metadata; invariants such as uniqueness live in the database, not in Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot._db import UTCDateTime


class Room(SQLModel, table=True):
    __tablename__ = "core_room"

    id: str = Field(primary_key=True)
    account: str = Field(index=True)
    topic: str = ""
    owner_id: str | None = None
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Member(SQLModel, table=True):
    __tablename__ = "core_member"

    id: str = Field(primary_key=True)
    name: str = ""


class Membership(SQLModel, table=True):
    """A member's life in one room: when they joined, who invited them, their group nickname."""

    __tablename__ = "core_membership"

    room_id: str = Field(primary_key=True)
    member_id: str = Field(primary_key=True, index=True)
    alias: str | None = None
    is_admin: bool = False
    joined_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    inviter_id: str | None = None
    left_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_spoke_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboxMessage(SQLModel, table=True):
    """One message waiting to be sent, or the record that it was.

    `key` makes enqueueing idempotent: the same logical message (a reply to one
    event, one SOP post for one room on one day) is stored once, sent once.
    """

    __tablename__ = "core_outbox"
    __table_args__ = (
        UniqueConstraint("account", "key", name="uq_outbox_account_key"),
        Index("ix_outbox_pending", "account", "status", "id"),
        Index("ix_outbox_merge", "room_id", "merge_key", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str
    key: str
    room_id: str | None = None
    to: str | None = None
    text: str
    mentions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    file: str | None = None
    action: str | None = None
    member_id: str | None = None
    source: str = ""
    status: str = Field(default="pending")
    """pending | sending | sent | failed | skipped | uncertain | awaiting_confirmation (a task a person
    confirms: settled to sent | cancelled | failed)"""
    attempts: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime)
    not_before: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None
    priority: int = 0
    """0: an answer to a member or a plugin interaction; 1: a bulk SOP post (members go first)."""
    merge_key: str | None = None
    """Replies with the same merge key to the same room merge into one message while it is still queued."""
    parts: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """For a merged message: one entry per reply in it (key, member, the values its line shows)."""
    merge_template: str | None = None
    """For a merged message: the merged form's template, rendered over `parts` once, when the message is claimed
    to be sent (until then `text` is the first reply's own, and `mentions` lists every reply's member)."""


class ScheduledTask(SQLModel, table=True):
    """A durable plugin timer: it fires once, also after a restart."""

    __tablename__ = "core_scheduled_task"
    __table_args__ = (UniqueConstraint("account", "plugin", "key", name="uq_task_key"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    plugin: str
    name: str
    key: str
    due_at: datetime = Field(sa_type=UTCDateTime, index=True)
    room_id: str | None = None
    member_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending")  # pending | done | failed | cancelled
    fired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SchemaVersion(SQLModel, table=True):
    """Which schema version each owner (core or a plugin) has applied."""

    __tablename__ = "core_schema_version"

    owner: str = Field(primary_key=True)
    version: int


class AccountLease(SQLModel, table=True):
    """Which process runs an account (`qunbot run` on a shared database); see `bot/_lease.py`."""

    __tablename__ = "core_account_lease"

    account: str = Field(primary_key=True)
    owner: str
    epoch: int = 1
    """Bumped at every take-over: the fencing token sends are checked against."""
    acquired_at: datetime = Field(sa_type=UTCDateTime)
    renewed_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class InboundMark(SQLModel, table=True):
    """A redelivered message is handled once: which handler already committed its work for which message.

    `handler` is "plugin.function", or "" for the runtime's own record of a membership event. The primary
    key is the dedupe: a second run's insert conflicts and that run rolls back. Rows older than the
    retention window are pruned (`bot/_redelivery.py`).
    """

    __tablename__ = "core_inbound"

    account: str = Field(primary_key=True)
    message_id: str = Field(primary_key=True)
    handler: str = Field(primary_key=True)
    seen_at: datetime = Field(sa_type=UTCDateTime, index=True)


class TaskFailure(SQLModel, table=True):
    """Why a durable timer's handler failed, and how often: it is retried with back-off, then marked failed
    (the dashboard and the log show it; a timer is never dropped silently)."""

    __tablename__ = "core_task_failure"

    task_id: int = Field(primary_key=True)
    attempts: int = 0
    last_error: str = ""
    failed_at: datetime = Field(sa_type=UTCDateTime)


class ClusterNode(SQLModel, table=True):
    """A live `qunbot run` process, so each can work out its fair share of the accounts (`bot/_balance.py`)."""

    __tablename__ = "core_cluster_node"

    node: str = Field(primary_key=True)
    """The process's lease owner name."""
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    """Past this (database clock) the process counts as gone: its share goes to the others."""
    draining: bool = False
    """Handing every account to the others before it stops (SIGUSR1 or `qunbot run --drain`)."""
