"""The adapter seam: the only boundary between qunbot and a chat protocol.

An adapter connects one account, pushes typed events into the runtime through
the `sink` it is given, and sends `Outgoing` messages. Only the Wechaty adapter
module imports `wechaty`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

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


class Adapter(ABC):
    """One WeChat account's connection."""

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
