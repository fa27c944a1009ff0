"""The adapter seam: the only boundary between qunbot and a chat protocol.

An adapter connects one account, pushes typed events into the runtime through
the `sink` it is given, and sends `Outgoing` messages. Only the Wechaty adapter
module imports `wechaty`.
"""

from __future__ import annotations

import calendar
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from bot._events import Event, MemberRef, Outgoing, RoomSnapshot

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

EventSink = Callable[[Event], Awaitable[None]]
Settle = Callable[[str, str, str | None], None]
"""The outbox's `settle(key, status, detail)`: a message that waited for confirmation is now sent,
cancelled or failed."""


class SendError(Exception):
    """A send failed; the outbox retries it with back-off."""


class RateLimited(SendError):
    """The platform said we send too fast (发送消息过于频繁): the account cools down."""


class Disconnected(SendError):
    """The connection to the platform dropped: the account pauses and the runtime reconnects with back-off."""


class AdapterError(Exception):
    """The adapter cannot connect or authenticate; `qunbot run` reports it and exits non-zero."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """What `send` returns when the platform took the message but a person must still confirm it.

    WeCom: a group-message task the group owner confirms in the app. The outbox keeps the row
    `awaiting_confirmation` until the adapter calls the `settle` it was bound to.
    """

    task_id: str


@dataclass(frozen=True, slots=True)
class RoomQuota:
    """How many bot posts one room may receive per period (WeCom: group-message tasks per customer group).

    `limit=None` means "as many as the period has days" (a month of 30 days: 30 posts).
    """

    per: Literal["month", "week", "day"] = "month"
    limit: int | None = None

    def period_start(self, now: datetime) -> datetime:
        """Midnight starting the period `now` is in (local time of `now`; weeks start on Monday)."""
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.per == "month":
            return day.replace(day=1)
        if self.per == "week":
            return day - timedelta(days=day.weekday())
        return day

    def allowed(self, now: datetime) -> int:
        """Posts one room may receive in the period `now` is in."""
        if self.limit is not None:
            return self.limit
        if self.per == "month":
            return calendar.monthrange(now.year, now.month)[1]
        return 7 if self.per == "week" else 1

    def describe(self, now: datetime) -> str:
        """`每月最多 31 条` in the admin's words."""
        unit = {"month": "每月", "week": "每周", "day": "每天"}[self.per]
        return f"{unit}最多 {self.allowed(now)} 条"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an account's transport can do. The runtime asks these, never "which adapter is this?"."""

    read_room_messages: bool = True
    """Room messages reach the bot (sign-in, quizzes, lottery entries need this)."""
    reply_at_will: bool = True
    """The bot can post into a room whenever it wants (not only through confirmed tasks)."""
    mention: bool = True
    send_files: bool = True
    remove_members: bool = True
    set_topic: bool = True
    direct_messages: bool = True
    posts_need_confirmation: bool = False
    """Each post is a task a person (the group owner) confirms before it goes out."""
    welcome_by_template: bool = False
    """Newcomers are greeted by a platform-side welcome template, not by a bot message."""
    room_quota: RoomQuota | None = None
    max_rooms_per_post: int | None = None
    label: str = ""
    """What the account is, in the admin's words (企业微信官方接口): the subject of every "cannot" sentence."""

    def has(self, need: str) -> bool:
        """True if the account has this boolean capability (a name from `CAPABILITY_NAMES`)."""
        if need not in CAPABILITY_NAMES:
            raise ValueError(f"unknown capability {need!r} (known: {', '.join(CAPABILITY_NAMES)})")
        return bool(getattr(self, need))

    def refusal(self, message: Outgoing) -> str | None:
        """Why this account cannot send `message` at all, in plain Chinese; None if it can."""
        if message.action == "welcome_template":  # the account's own welcome, not a message to anyone
            return None if self.welcome_by_template else f"{self.subject}{CANNOT['welcome_by_template']}"
        if message.action == "remove_member" and not self.remove_members:
            return f"{self.subject}{CANNOT['remove_members']}"
        if message.action == "set_topic" and not self.set_topic:
            return f"{self.subject}{CANNOT['set_topic']}"
        if message.action is None and message.file is not None and not self.send_files:
            return f"{self.subject}{CANNOT['send_files']}"
        if message.action is None and message.to is not None and not self.direct_messages:
            return f"{self.subject}{CANNOT['direct_messages']}"
        return None

    @property
    def subject(self) -> str:
        return self.label or "这个账号"


CAPABILITY_NAMES = tuple(f.name for f in fields(Capabilities) if f.type in ("bool", bool))
"""The yes/no capabilities a plugin can declare it `needs` (`Plugin(..., needs={"read_room_messages"})`)."""

CANNOT = {
    "read_room_messages": "读不到群消息",
    "reply_at_will": "不能随时在群里发消息",
    "mention": "发消息时不能 @ 人",
    "send_files": "发不了图片和文件",
    "remove_members": "不能把人移出群",
    "set_topic": "不能改群名",
    "direct_messages": "不能私聊群成员",
    "posts_need_confirmation": "发群消息不需要群主确认",
    "welcome_by_template": "没有入群欢迎语模板",
}
"""What an account lacks, as the second half of "企业微信官方接口读不到群消息"."""

NEEDS = {
    "read_room_messages": "能读群消息的账号",
    "reply_at_will": "能随时在群里发消息的账号",
    "mention": "能 @ 人的账号",
    "send_files": "能发图片和文件的账号",
    "remove_members": "能把人移出群的账号",
    "set_topic": "能改群名的账号",
    "direct_messages": "能私聊的账号",
    "posts_need_confirmation": "由群主确认发送的账号",
    "welcome_by_template": "有入群欢迎语模板的账号",
}
"""What a plugin or step needs, as the end of "签到、答题需要能读群消息的账号"."""


class Adapter(ABC):
    """One WeChat account's connection."""

    capabilities: Capabilities = Capabilities()
    """Declared per adapter class (or per instance, when it depends on the service behind it)."""

    def __init__(self, account: str) -> None:
        self.account = account

    @abstractmethod
    async def start(self, sink: EventSink) -> None:
        """Connect and begin delivering events to `sink`. Returns once connected."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect; safe to call twice."""

    def bind(self, engine: Engine, settle: Settle) -> None:
        """The runtime hands over its database and the account outbox's `settle`, before `start`.

        Adapters whose posts need confirmation keep their tasks there and settle rows when they end.
        """
        return None

    @abstractmethod
    async def send(self, message: Outgoing) -> Receipt | None:
        """Send one message, or perform one room action (`message.action`), now.

        Return a `Receipt` when the message waits for a person's confirmation (see `Receipt`).

        Raise `SendError` (or `RateLimited`) on failure; the outbox retries. Raise `Disconnected`
        when the connection is gone: the runtime calls `stop()` then `start()` again, with back-off.
        """

    async def was_sent(self, message: Outgoing) -> bool | None:
        """After a crash mid-send: did this message reach the platform? None if the adapter cannot tell.

        Lets a restarted or taking-over process finish a send exactly once (e.g. by looking at the
        room's recent messages from the account) instead of leaving it `uncertain`.
        """
        return None

    async def rooms(self) -> list[RoomSnapshot]:
        """Rooms the account is in, with members and admins, where the protocol tells."""
        return []

    async def self_member(self) -> MemberRef | None:
        """The logged-in account as a contact, once known."""
        return None
