"""The Wechaty adapter passes the adapter contract (bot/adapters/contract.py) against a real puppet service.

The peer is `tests/wechaty_peer/peer.mjs` (wechaty-puppet-mock behind wechaty-puppet-service on loopback),
on the 1.x line that puppet providers (WorkPro) run. Skipped with the reason when Node or its packages
are missing (`npm ci` in tests/wechaty_peer, as scripts/test does).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from wechaty_peer.driver import Peer, require_peer

from bot._clock import RealClock
from bot._events import MemberRef
from bot.adapters.contract import NEWCOMER, ROOM_MEMBERS, AdapterContract, Delivered

require_peer()

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
ROOM = "g1@chatroom"
BOT = MemberRef("bot", "小完子")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000200b5d3d5d10000000049454e44ae426082")


class _WechatyPeer:
    def __init__(self, peer: Peer, adapter: Any) -> None:
        self.peer, self.adapter = peer, adapter
        self.room, self.bot, self.file = ROOM, BOT, "assets/dot.png"

    async def member_says(self, member: str, text: str, *, mentions: Sequence[str] = ()) -> None:
        await self.peer.cmd("say", **{"from": member}, room=ROOM, text=text, mentions=list(mentions))

    async def member_joins(self, member: MemberRef, *, inviter: str | None) -> None:
        await self.peer.cmd("join", room=ROOM, members=[member.id], **({"inviter": inviter} if inviter else {}))

    async def member_leaves(self, member: str) -> None:
        await self.peer.cmd("leave", room=ROOM, members=[member], by="owner1")

    def deliveries(self) -> list[Delivered]:
        return [d for r in self.peer.records if (d := _delivered(r)) is not None]

    async def delivered(self, predicate: Callable[[Delivered], bool], *, timeout: float = 30) -> Delivered:
        record = await self.peer.wait_for(lambda r: (d := _delivered(r)) is not None and predicate(d),
                                          timeout=timeout)
        found = _delivered(record)
        assert found is not None
        return found


def _delivered(record: dict[str, Any]) -> Delivered | None:
    if record.get("event") == "sent":
        where = record["conversation"]
        room, to = (where, None) if where.endswith("@chatroom") else (None, where)
        if record["kind"] == "file":
            return Delivered(room=room, to=to, file=record["name"], raw=record)
        return Delivered(room=room, to=to, text=record.get("text", ""), mentions=tuple(record.get("mentions", [])),
                         raw=record)
    if record.get("event") == "action":
        return Delivered(room=record.get("room"), action=record["action"], member=record.get("member"),
                         topic=record.get("topic"), raw=record)
    return None


@contextlib.asynccontextmanager
async def wechaty_peer(tmp_path: Path) -> AsyncIterator[_WechatyPeer]:
    from bot.adapters.wechaty import WechatyAdapter

    peer = await Peer.start(line="1.x")
    clock = RealClock(ZoneInfo("Asia/Shanghai"))
    try:
        for contact_id, name in [(BOT.id, BOT.name), *ROOM_MEMBERS.items(), (NEWCOMER.id, NEWCOMER.name)]:
            await peer.cmd("contact", id=contact_id, name=name)
        await peer.cmd("room", id=ROOM, topic="测试群", members=[BOT.id, *ROOM_MEMBERS], owner="owner1",
                       admins=["owner1"])
        await peer.cmd("login", id=BOT.id)
        (tmp_path / "assets").mkdir()
        (tmp_path / "assets" / "dot.png").write_bytes(PNG)
        adapter = WechatyAdapter("wx1", clock, endpoint=peer.endpoint, token=peer.token, project=tmp_path,
                                 bot_name=BOT.name, data_dir=tmp_path / "data", login_timeout=30)
        yield _WechatyPeer(peer, adapter)
    finally:
        await peer.close()
        await clock.aclose()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)


class TestWechaty(AdapterContract):
    peer = staticmethod(wechaty_peer)
