"""The adapter test kit: one set of contract tests every adapter passes (Errbot's `backends/test.py` idea).

An adapter is tested against its *peer*: the platform side (the simulated WeChat, a Wechaty puppet service,
a WeCom mock) that lets a member speak, join and leave, and records what the bot did. Adding an adapter to
the kit is one line in a test module:

    class TestMyAdapter(AdapterContract):
        peer = staticmethod(my_peer)   # an async context manager factory: (tmp_path) -> Peer

Each test reads the adapter's declared `capabilities`: what it says it can do must work, and what it says it
cannot do must raise `SendError` instead of pretending (nothing recorded on the platform). Needs pytest
(and pytest-asyncio in auto mode), so only tests import this module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

from bot._events import Event, MemberRef, MembersJoined, MembersLeft, Outgoing, RoomMessage
from bot.adapters._base import Adapter, Capabilities, SendError

ROOM_MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob"}
"""Who is in the peer's room before the adapter starts (the bot account too)."""
NEWCOMER = MemberRef("u3", "Carol")
"""A contact the peer knows who is not in the room yet."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """What the platform recorded from the bot, whatever its protocol (one message or one room action)."""

    room: str | None = None
    to: str | None = None
    text: str = ""
    mentions: tuple[str, ...] = ()
    file: str | None = None
    action: str | None = None
    member: str | None = None
    topic: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


class Peer(Protocol):
    """The platform side of one adapter under test: one room with `ROOM_MEMBERS` and the bot, and `NEWCOMER`."""

    adapter: Adapter
    room: str
    bot: MemberRef
    file: str
    """A file the bot can send (a project path or URL the adapter accepts); its base name is what arrives."""

    async def member_says(self, member: str, text: str, *, mentions: Sequence[str] = ()) -> None: ...
    async def member_joins(self, member: MemberRef, *, inviter: str | None) -> None: ...
    async def member_leaves(self, member: str) -> None: ...
    async def delivered(self, predicate: Callable[[Delivered], bool], *, timeout: float = 30) -> Delivered: ...
    def deliveries(self) -> list[Delivered]: ...


PeerFactory = Callable[[Path], AbstractAsyncContextManager[Peer]]


class Events:
    """The sink the adapter is started with: every event, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: Event) -> None:
        async with self._changed:
            self.seen.append(event)
            self._changed.notify_all()

    async def wait_for(self, kind: type[Event], predicate: Callable[[Any], bool] = lambda e: True, *,
                       timeout: float = 30) -> Any:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                found = next((e for e in self.seen if isinstance(e, kind) and predicate(e)), None)
                if found is not None:
                    return found
                await self._changed.wait()


class AdapterContract:
    """Subclass with `peer = staticmethod(factory)`; pytest collects the subclass (name it `Test…`)."""

    peer: PeerFactory

    @pytest.fixture
    async def bench(self, tmp_path: Path) -> AsyncIterator[tuple[Peer, Events]]:
        async with type(self).peer(tmp_path) as peer:
            events = Events()
            await peer.adapter.start(events)
            try:
                yield peer, events
            finally:
                await peer.adapter.stop()

    @staticmethod
    def out(peer: Peer, **fields: Any) -> Outgoing:
        return Outgoing(account=peer.adapter.account, **({"room_id": peer.room} if "to" not in fields else {}),
                        **fields)

    # --- what an adapter declares -------------------------------------------------------------

    async def test_declares_coherent_capabilities(self, bench: tuple[Peer, Events]) -> None:
        caps = bench[0].adapter.capabilities
        assert isinstance(caps, Capabilities)
        assert caps.reply_at_will or caps.posts_need_confirmation, "an account that can post in no way"
        assert caps.label, "say what the account is, in the admin's words (Capabilities.label)"
        if caps.room_quota is not None:
            assert caps.room_quota.allowed(datetime(2026, 2, 1)) > 0

    async def test_knows_itself_and_its_rooms(self, bench: tuple[Peer, Events]) -> None:
        peer, _ = bench
        me = await peer.adapter.self_member()
        assert me is not None and me.id == peer.bot.id
        room = next((r for r in await peer.adapter.rooms() if r.id == peer.room), None)
        assert room is not None, f"rooms() does not list {peer.room}"
        assert set(ROOM_MEMBERS) <= {m.id for m in room.members}

    # --- events in -------------------------------------------------------------------------------

    async def test_joins_and_leaves_arrive_with_the_inviter(self, bench: tuple[Peer, Events]) -> None:
        peer, events = bench
        await peer.member_joins(NEWCOMER, inviter="u1")
        joined = await events.wait_for(MembersJoined, lambda e: e.room_id == peer.room)
        assert [m.id for m in joined.members] == [NEWCOMER.id] and joined.inviter_id == "u1"
        await peer.member_leaves(NEWCOMER.id)
        left = await events.wait_for(MembersLeft, lambda e: e.room_id == peer.room)
        assert left.member_ids == (NEWCOMER.id,)

    async def test_room_messages_arrive_only_where_declared(self, bench: tuple[Peer, Events]) -> None:
        peer, events = bench
        await peer.member_says("u1", "签到")
        await peer.member_joins(NEWCOMER, inviter="owner1")  # a barrier: every adapter delivers joins
        await events.wait_for(MembersJoined)
        messages = [e for e in events.seen if isinstance(e, RoomMessage)]
        if peer.adapter.capabilities.read_room_messages:
            message = messages[0] if messages else await events.wait_for(RoomMessage)
            assert (message.room_id, message.sender.id, message.text) == (peer.room, "u1", "签到")
            assert message.sender.id != peer.bot.id
        else:
            assert messages == [], "declares it cannot read room messages, yet delivered one"

    async def test_a_mention_of_the_bot_is_flagged(self, bench: tuple[Peer, Events]) -> None:
        peer, events = bench
        if not peer.adapter.capabilities.read_room_messages:
            pytest.skip("the adapter declares it cannot read room messages")
        await peer.member_says("u1", f"@{peer.bot.name}\u2005在吗", mentions=[peer.bot.id])
        message = await events.wait_for(RoomMessage)
        assert message.mentions_bot and peer.bot.id in message.mentions

    # --- sends out -------------------------------------------------------------------------------

    async def test_a_room_message_reaches_the_platform(self, bench: tuple[Peer, Events]) -> None:
        peer, _ = bench
        await peer.adapter.send(self.out(peer, text="@Alice 早安", mentions=("u1",)))
        got = await peer.delivered(lambda d: d.room == peer.room and d.action is None and "早安" in d.text)
        assert got.text == "@Alice 早安"
        if peer.adapter.capabilities.mention:
            assert got.mentions == ("u1",)

    async def test_files_are_sent_or_refused_as_declared(self, bench: tuple[Peer, Events]) -> None:
        peer, _ = bench
        await self._sends_or_refuses(peer, self.out(peer, text="", file=peer.file), "send_files",
                                     lambda d: d.file is not None and Path(d.file).name == Path(peer.file).name)

    async def test_removing_a_member_is_done_or_refused_as_declared(self, bench: tuple[Peer, Events]) -> None:
        peer, _ = bench
        await self._sends_or_refuses(peer, self.out(peer, text="", action="remove_member", member_id="u2"),
                                     "remove_members", lambda d: d.action == "remove_member" and d.member == "u2")

    async def test_renaming_the_room_is_done_or_refused_as_declared(self, bench: tuple[Peer, Events]) -> None:
        peer, _ = bench
        await self._sends_or_refuses(peer, self.out(peer, text="新群名", action="set_topic"), "set_topic",
                                     lambda d: d.action == "set_topic" and d.topic == "新群名")

    async def test_direct_messages_are_sent_or_refused_as_declared(self, bench: tuple[Peer, Events]) -> None:
        peer, _ = bench
        await self._sends_or_refuses(peer, self.out(peer, text="私聊你好", to="u1"), "direct_messages",
                                     lambda d: d.to == "u1" and d.text == "私聊你好")

    async def test_stop_is_safe_twice(self, bench: tuple[Peer, Events]) -> None:
        await bench[0].adapter.stop()
        await bench[0].adapter.stop()

    async def _sends_or_refuses(self, peer: Peer, message: Outgoing, capability: str,
                                arrived: Callable[[Delivered], bool]) -> None:
        if peer.adapter.capabilities.has(capability):
            await peer.adapter.send(message)
            await peer.delivered(arrived)
            return
        before = len(peer.deliveries())
        with pytest.raises(SendError):
            await peer.adapter.send(message)
        assert not any(arrived(d) for d in peer.deliveries()[before:]), f"declares no {capability}, yet did it"


# --- the simulated WeChat's peer: the reference implementation --------------------------------

@contextlib.asynccontextmanager
async def simulated_peer(tmp_path: Path, capabilities: Capabilities | None = None) -> AsyncIterator[Peer]:
    """The simulated adapter, optionally emulating another kind of account (`PROFILES[...]`)."""
    from bot._clock import VirtualClock
    from bot.adapters.simulated import SimulatedAdapter

    clock = VirtualClock(datetime.fromisoformat("2026-11-23T09:00:00+08:00"))
    adapter = SimulatedAdapter("sim", clock, capabilities=capabilities)
    adapter.add_room("g1", "测试群", members=[MemberRef(k, v) for k, v in ROOM_MEMBERS.items()], admins=["owner1"])
    yield _SimulatedPeer(adapter)


class _SimulatedPeer:
    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.room = "g1"
        self.bot = adapter.bot
        self.file = "assets/dot.png"

    async def member_says(self, member: str, text: str, *, mentions: Sequence[str] = ()) -> None:
        await self.adapter.say(self.room, member, text, mentions=mentions)

    async def member_joins(self, member: MemberRef, *, inviter: str | None) -> None:
        await self.adapter.join(self.room, [member], inviter=inviter)

    async def member_leaves(self, member: str) -> None:
        await self.adapter.leave(self.room, [member])

    def deliveries(self) -> list[Delivered]:
        return [Delivered(room=m.room_id, to=m.to, text="" if m.action == "set_topic" else m.text,
                          mentions=m.mentions, file=m.file, action=m.action, member=m.member_id,
                          topic=m.text if m.action == "set_topic" else None) for m in self.adapter.sent]

    async def delivered(self, predicate: Callable[[Delivered], bool], *, timeout: float = 30) -> Delivered:
        found = next((d for d in self.deliveries() if predicate(d)), None)  # the simulator records synchronously
        assert found is not None, f"the platform recorded nothing matching; it has {self.deliveries()}"
        return found
