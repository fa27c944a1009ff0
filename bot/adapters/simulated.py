"""A simulated WeChat: rooms and members in memory, events pushed in, sends recorded.

It backs `qunbot simulate`, `qunbot chat` and the plugin-author harness, so all
three run the real runtime, plugins, templates and database code.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from bot._clock import Clock
from bot._events import (
    DEFAULT_BOT,
    DirectMessage,
    Event,
    MemberRef,
    MemberRenamed,
    MembersJoined,
    MembersLeft,
    Outgoing,
    RoomMessage,
    RoomSnapshot,
    RoomTopicChanged,
)
from bot.adapters._base import Adapter, AdapterError, Capabilities, Disconnected, EventSink, SendError
from bot.adapters._profiles import SIMULATED


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What the simulated WeChat received from the bot, and when."""

    at: datetime
    text: str
    room_id: str | None = None
    to: str | None = None
    mentions: tuple[str, ...] = ()
    file: str | None = None
    action: str | None = None
    member_id: str | None = None

    def as_json(self) -> dict[str, object]:
        """The JSON Lines shape of `docs/simulate.md`."""
        line: dict[str, object] = {"at": self.at.isoformat(timespec="milliseconds")}
        if self.room_id is not None:
            line["room"] = self.room_id
        else:
            line["to"] = self.to
        if self.action is not None:
            line["action"] = self.action
            if self.member_id is not None:
                line["member"] = self.member_id
            if self.action == "set_topic":
                line["topic"] = self.text
            return line
        line["text"] = self.text
        line["mentions"] = list(self.mentions)
        if self.file is not None:
            line["file"] = self.file
        return line


@dataclass
class SimRoom:
    id: str
    topic: str
    members: dict[str, MemberRef] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)


class SimulatedAdapter(Adapter):
    """One simulated account. Drive it with `say`, `join`, ...; read `sent`."""

    capabilities = SIMULATED

    def __init__(self, account: str, clock: Clock, *, bot: MemberRef = DEFAULT_BOT,
                 on_send: Callable[[SentMessage], None] | None = None,
                 capabilities: Capabilities | None = None) -> None:
        super().__init__(account)
        if capabilities is not None:  # emulating another kind (`emulate = "wecom"`): what that kind cannot read
            self.capabilities = capabilities  # never reaches the bot, what it cannot send raises `SendError`
        self.clock = clock
        self.bot = bot
        self.sim_rooms: dict[str, SimRoom] = {}
        self.sent: list[SentMessage] = []
        self._on_send = on_send
        self._sink: EventSink | None = None
        self._ids = itertools.count(1)
        self._run = secrets.token_hex(4)  # ids stay unique across simulated restarts on one database
        self._failures: list[Exception] = []
        self._online = True
        self._failing_reconnects = 0
        self.knows_history = False
        """Answer `was_sent` from what was sent, as an adapter that can read the chat history would."""

    # --- set-up -------------------------------------------------------------------

    def add_room(self, room_id: str, topic: str = "", *, members: Iterable[MemberRef] = (),
                 admins: Iterable[str] = ()) -> SimRoom:
        room = SimRoom(room_id, topic or room_id, {m.id: m for m in members}, set(admins) | {self.bot.id})
        room.members.setdefault(self.bot.id, self.bot)
        self.sim_rooms[room_id] = room
        return room

    def fail_next_sends(self, *errors: Exception) -> None:
        """Make the next sends raise these errors, in order (to test retries and cool-down)."""
        self._failures.extend(errors)

    def drop_connection(self, *, failing_reconnects: int = 0) -> None:
        """Lose the connection: sends raise `Disconnected` until a `start` succeeds (after this many fail)."""
        self._online = False
        self._failing_reconnects = failing_reconnects

    # --- Adapter ----------------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        if self._failing_reconnects:
            self._failing_reconnects -= 1
            raise AdapterError("the simulated WeChat is still unreachable")
        self._online = True
        self._sink = sink

    async def stop(self) -> None:
        self._sink = None

    async def rooms(self) -> list[RoomSnapshot]:
        return self.snapshots()

    def snapshots(self) -> list[RoomSnapshot]:
        return [RoomSnapshot(r.id, r.topic, tuple(r.members.values()), tuple(sorted(r.admins)), None,
                             dict(r.aliases)) for r in self.sim_rooms.values()]

    async def self_member(self) -> MemberRef | None:
        return self.bot

    async def was_sent(self, message: Outgoing) -> bool | None:
        if not self.knows_history:
            return None
        return any(m.text == message.text and m.room_id == message.room_id and m.to == message.to
                   and m.action == message.action for m in self.sent)

    async def send(self, message: Outgoing) -> None:
        if not self._online:
            raise Disconnected("the simulated WeChat connection is down")
        if self._failures:
            raise self._failures.pop(0)
        if message.room_id is not None and message.room_id not in self.sim_rooms:
            raise SendError(f"the bot is not in room {message.room_id}")
        refused = self.capabilities.refusal(message)
        if refused:
            raise SendError(refused)
        if message.action == "remove_member" and message.room_id and message.member_id:
            room_id, member_id = message.room_id, message.member_id
            if self.sim_rooms[room_id].members.pop(member_id, None) is not None:

                async def reported() -> None:  # WeChat reports a removal as the member leaving, just after
                    await self.leave(room_id, [member_id])

                self.clock.call_at(self.clock.now(), reported, name="simulated.removed")
        elif message.action == "set_topic" and message.room_id:
            self.sim_rooms[message.room_id].topic = message.text
        elif message.action is not None:
            raise SendError(f"the simulated WeChat cannot {message.action}")
        mentions = message.mentions if self.capabilities.mention else ()  # the @names stay; nobody is notified
        sent = SentMessage(self.clock.now(), message.text, message.room_id, message.to, mentions,
                           message.file, message.action, message.member_id)
        self.sent.append(sent)
        if self._on_send is not None:
            self._on_send(sent)

    # --- things members do --------------------------------------------------------------

    def member(self, room_id: str, member_id: str) -> MemberRef:
        room = self._room(room_id)
        ref = room.members.get(member_id)
        if ref is None:  # speaking makes an unlisted member a member (spec)
            ref = room.members[member_id] = MemberRef(member_id, member_id)
        return ref

    async def say(self, room_id: str, member_id: str, text: str, *, mentions: Iterable[str] = (),
                  file: str | None = None, kind: str | None = None, id: str | None = None) -> RoomMessage:
        """A member speaks; `id` is the transport's message id (give one twice to simulate a redelivery)."""
        sender = self.member(room_id, member_id)
        mentions = tuple(dict.fromkeys([*mentions, *self.mentions_in(room_id, text)]))
        event = RoomMessage(account=self.account, id=id or self._next_id(), time=self.clock.now(), room_id=room_id,
                            sender=sender, text=text, mentions=mentions,
                            mentions_bot=self.bot.id in mentions or f"@{self.bot.name}" in text, file=file,
                            kind=kind or _kind_of(file))
        if self.capabilities.read_room_messages:  # else the member spoke, but this kind of account never hears it
            await self._push(event)
        return event

    async def private(self, member_id: str, text: str, *, name: str | None = None,
                      file: str | None = None, id: str | None = None) -> DirectMessage:
        ref = next((r.members[member_id] for r in self.sim_rooms.values() if member_id in r.members),
                   MemberRef(member_id, name or member_id))
        event = DirectMessage(account=self.account, id=id or self._next_id(), time=self.clock.now(), sender=ref,
                              text=text, file=file)
        if self.capabilities.direct_messages:
            await self._push(event)
        return event

    async def join(self, room_id: str, members: Iterable[MemberRef], *, inviter: str | None = None) -> MembersJoined:
        room = self._room(room_id)
        refs = tuple(members)
        for ref in refs:
            room.members[ref.id] = ref
        event = MembersJoined(account=self.account, id=self._next_id(), time=self.clock.now(), room_id=room_id,
                              members=refs, inviter_id=inviter)
        await self._push(event)
        return event

    async def leave(self, room_id: str, member_ids: Iterable[str]) -> MembersLeft:
        room = self._room(room_id)
        ids = tuple(member_ids)
        for member_id in ids:
            room.members.pop(member_id, None)
        event = MembersLeft(account=self.account, id=self._next_id(), time=self.clock.now(), room_id=room_id,
                            member_ids=ids)
        await self._push(event)
        return event

    async def rename(self, room_id: str, member_id: str, alias: str) -> MemberRenamed:
        room = self._room(room_id)
        old = room.aliases.get(member_id)
        room.aliases[member_id] = alias
        event = MemberRenamed(account=self.account, id=self._next_id(), time=self.clock.now(), room_id=room_id,
                              member_id=member_id, alias=alias, old_alias=old)
        await self._push(event)
        return event

    async def change_topic(self, room_id: str, topic: str, *, by: str | None = None) -> RoomTopicChanged:
        room = self._room(room_id)
        old, room.topic = room.topic, topic
        event = RoomTopicChanged(account=self.account, id=self._next_id(), time=self.clock.now(), room_id=room_id,
                                 topic=topic, old_topic=old, changer_id=by)
        await self._push(event)
        return event

    def mentions_in(self, room_id: str, text: str) -> list[str]:
        """Members an `@Name` in the text is for, as WeChat resolves them: a display name or group nickname
        of someone in the room, the longest that fits (`@Bobby` is Bobby, not Bob)."""
        room = self._room(room_id)
        if "@" not in text:
            return []
        names = sorted(((name, ref.id) for ref in room.members.values()
                        for name in (ref.name, room.aliases.get(ref.id)) if name), key=lambda n: -len(n[0]))
        found = []
        for at in (i for i, char in enumerate(text) if char == "@"):
            member = next((mid for name, mid in names if text.startswith(name, at + 1)), None)
            if member is not None:
                found.append(member)
        return list(dict.fromkeys(found))

    # --- internals ---------------------------------------------------------------------

    def _room(self, room_id: str) -> SimRoom:
        if room_id not in self.sim_rooms:
            raise KeyError(f"unknown simulated room {room_id!r}")
        return self.sim_rooms[room_id]

    def _next_id(self) -> str:
        return f"sim-{self._run}-{next(self._ids)}"

    async def _push(self, event: Event) -> None:
        if self._sink is None:
            raise RuntimeError("the simulated adapter is not started")
        await self._sink(event)


def _kind_of(file: str | None) -> str:
    if file is None:
        return "text"
    return "image" if file.lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")) else "file"
