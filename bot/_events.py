"""Typed events: what an adapter reports, and what a message to send looks like.

Adapters turn their own protocol into these frozen dataclasses; nothing past the
adapter boundary knows whether an event came from Wechaty or the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class MemberRef:
    """A WeChat contact as seen in a room: its stable id and display name."""

    id: str
    name: str


DEFAULT_BOT = MemberRef("bot", "小完子")
"""The bot account in simulations unless a scenario names another."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event. `id` is unique per account and lets replies be idempotent."""

    account: str
    id: str
    time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomMessage(Event):
    """A member said something in a room. `text` is exactly what WeChat shows."""

    room_id: str
    sender: MemberRef
    text: str
    mentions: tuple[str, ...] = ()
    mentions_bot: bool = False
    file: str | None = None
    kind: str = "text"
    """What the adapter saw: text, image, file, video, voice, sticker, link, mini_program, contact_card, share."""
    content: str | None = None
    """A received image's bytes saved under the project while the event is handled (for the guard's QR check);
    the adapter deletes it afterwards. `file` is the name the sender gave."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectMessage(Event):
    """A one-to-one message to the bot."""

    sender: MemberRef
    text: str
    file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MembersJoined(Event):
    room_id: str
    members: tuple[MemberRef, ...]
    inviter_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MembersLeft(Event):
    room_id: str
    member_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRenamed(Event):
    """A member changed their group nickname (room alias) in a room."""

    room_id: str
    member_id: str
    alias: str
    old_alias: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomTopicChanged(Event):
    room_id: str
    topic: str
    old_topic: str | None = None
    changer_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomCreated(Event):
    """A room the account can see came into being (WeCom: a customer group was created)."""

    room_id: str
    topic: str = ""
    owner_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomOwnerChanged(Event):
    room_id: str
    owner_id: str
    old_owner_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomDismissed(Event):
    """The room is gone (WeCom: the owner dismissed the customer group): every membership ends."""

    room_id: str


MessageEvent = RoomMessage | DirectMessage
"""Events that carry text a member typed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One message the bot sends: to a room (`room_id`) or to a contact (`to`).

    `text` is the full text WeChat shows, @-names included; `mentions` are the
    member ids the adapter must @-mention so WeChat notifies them. Room actions
    travel the same way, so one paced queue covers every write the bot makes.
    """

    account: str
    text: str
    room_id: str | None = None
    to: str | None = None
    mentions: tuple[str, ...] = ()
    file: str | None = None
    action: str | None = None
    """Not a message but a room action: "remove_member" (`member_id`) or "set_topic" (`text` is the topic)."""
    member_id: str | None = None
    key: str = ""
    """The outbox key: names the message to adapters that settle it later (`Receipt`)."""
    expires_at: datetime | None = None
    """Past this, the message must not go out (an SOP step's grace): a task not confirmed by then is cancelled."""

    def __post_init__(self) -> None:
        if (self.room_id is None) == (self.to is None):
            raise ValueError("an outgoing message goes to exactly one of room_id or to")


@dataclass(frozen=True, slots=True)
class RoomSnapshot:
    """What an adapter knows about a room when it connects."""

    id: str
    topic: str
    members: tuple[MemberRef, ...] = ()
    admin_ids: tuple[str, ...] = ()
    owner_id: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    """A durable plugin timer came due (`late` if the bot was down at `due_at`)."""

    plugin: str
    name: str
    key: str
    due_at: datetime
    room_id: str | None = None
    member_id: str | None = None
    data: dict[str, object] = field(default_factory=dict)
    late: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionInvoked(Event):
    """An SOP step (or another caller) started a plugin action in a room."""

    plugin: str
    name: str
    room_id: str | None
    source: str = ""


def message_parts(event: Event) -> tuple[str | None, str | None]:
    """(room_id, member_id) an event is about, for building a context."""
    if isinstance(event, RoomMessage):
        return event.room_id, event.sender.id
    if isinstance(event, DirectMessage):
        return None, event.sender.id
    return getattr(event, "room_id", None), getattr(event, "member_id", None)
