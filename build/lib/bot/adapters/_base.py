"""The adapter seam: the only boundary between qunbot and a chat protocol.

An adapter connects one account, pushes typed events into the runtime through
the `sink` it is given, and sends `Outgoing` messages. Only the Wechaty adapter
module imports `wechaty`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot._events import Event, MemberRef, Outgoing, RoomSnapshot

EventSink = Callable[[Event], Awaitable[None]]


class SendError(Exception):
    """A send failed; the outbox retries it with back-off."""


class RateLimited(SendError):
    """The platform said we send too fast (发送消息过于频繁): the account cools down."""


class Disconnected(SendError):
    """The connection to the platform dropped: the account pauses and the runtime reconnects with back-off."""


class AdapterError(Exception):
    """The adapter cannot connect or authenticate; `qunbot run` reports it and exits non-zero."""


@dataclass(frozen=True, slots=True)
class RoomQuota:
    """How many bot posts one room may receive per period (WeCom: group-message tasks per customer group).

    `limit=None` means "as many as the period has days" (a month of 30 days: 30 posts).
    """

    per: Literal["month", "week", "day"] = "month"
    limit: int | None = None


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

    @abstractmethod
    async def send(self, message: Outgoing) -> None:
        """Send one message, or perform one room action (`message.action`), now.

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
