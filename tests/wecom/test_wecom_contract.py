"""The WeCom adapter passes the adapter test kit (bot/adapters/contract.py) against the WeCom mock.

The peer is the platform side: members join and leave as WeCom tells it (the mock's group changes, then an
encrypted `change_external_chat` callback to the adapter's endpoint); what the bot did is what the mock
recorded — group-message tasks, one per owner, with the groups, the text and the uploaded image. Messages
members write never reach the official API, so `member_says` has nothing to deliver and the tests about
reading them skip with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlmodel import SQLModel
from wecom_mock import MockServer, WecomMock, free_port

from bot._clock import RealClock
from bot._config import WecomSettings
from bot._db import make_engine
from bot._events import MemberRef, Outgoing
from bot.adapters.contract import ROOM_MEMBERS, AdapterContract, Delivered, Events, Peer
from bot.adapters.wecom import MsgCrypt, WecomAdapter, WecomClient, signature

TZ = ZoneInfo("Asia/Shanghai")
TOKEN, KEY = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
ROOM, OWNER = "wrContract", "owner1"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@contextlib.asynccontextmanager
async def wecom_peer(tmp_path: Path) -> AsyncIterator[Peer]:
    """One customer group of `owner1` with `ROOM_MEMBERS`; the adapter polls and batches fast (real clock)."""
    mock = WecomMock()
    mock.add_group(ROOM, "测试群", OWNER, [
        {"userid": uid, "type": 2, "join_time": int(time.time()), "join_scene": 1, "invitor": {"userid": OWNER},
         "name": name} for uid, name in ROOM_MEMBERS.items() if uid != OWNER])
    mock.groups[ROOM]["member_list"][0]["name"] = ROOM_MEMBERS[OWNER]
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "dot.png").write_bytes(PNG)
    with MockServer(mock) as server:
        clock = RealClock(TZ)
        client = WecomClient(mock.corp_id, mock.secret, base_url=server.url)
        crypt = MsgCrypt(TOKEN, KEY, mock.corp_id)
        port = free_port()
        adapter = WecomAdapter("corp", clock, client=client, crypt=crypt, project=tmp_path,
                               settings=WecomSettings(callback_port=port, poll_interval=0.1, batch_window=0.5))
        engine = make_engine(f"sqlite:///{tmp_path / 'contract.db'}")
        SQLModel.metadata.create_all(engine)
        adapter.bind(engine, lambda key, status, detail: None)
        try:
            yield _WecomPeer(adapter, mock, crypt, f"http://127.0.0.1:{port}/wecom/callback")
        finally:
            await client.aclose()
            await clock.aclose()
            engine.dispose()


class _WecomPeer:
    def __init__(self, adapter: WecomAdapter, mock: WecomMock, crypt: MsgCrypt, url: str) -> None:
        self.adapter, self.mock, self.crypt, self.url = adapter, mock, crypt, url
        self.room = ROOM
        self.bot = MemberRef(OWNER, ROOM_MEMBERS[OWNER])
        """Posts reach the group as its owner's (the owner confirms them); the corp account has no member."""
        self.file = "assets/dot.png"

    async def member_says(self, member: str, text: str, *, mentions: Sequence[str] = ()) -> None:
        """Customer-group messages never reach the official API (only the paid 会话内容存档): nothing to do."""

    async def member_joins(self, member: MemberRef, *, inviter: str | None) -> None:
        self.mock.add_member(ROOM, member.id, member.name, invitor=inviter or OWNER)
        await self._change("add_member", member.id)

    async def member_leaves(self, member: str) -> None:
        self.mock.remove_member(ROOM, member)
        await self._change("del_member", member)

    async def _change(self, detail: str, member: str) -> None:
        now = str(int(time.time()))
        xml = (f"<xml><ToUserName><![CDATA[{self.mock.corp_id}]]></ToUserName><CreateTime>{now}</CreateTime>"
               "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_chat]]></Event>"
               f"<ChatId><![CDATA[{ROOM}]]></ChatId><ChangeType><![CDATA[update]]></ChangeType>"
               f"<UpdateDetail><![CDATA[{detail}]]></UpdateDetail><MemChangeCnt>1</MemChangeCnt>"
               f"<MemChangeList><Item><![CDATA[{member}]]></Item></MemChangeList><CurMemVer>{now}</CurMemVer></xml>")
        encrypted = self.crypt.encrypt(xml)
        params = {"msg_signature": signature(TOKEN, now, "17", encrypted), "timestamp": now, "nonce": "17"}
        async with httpx.AsyncClient() as http:
            answer = await http.post(self.url, params=params, content=f"<xml><Encrypt><![CDATA[{encrypted}]]>"
                                     "</Encrypt></xml>".encode(), timeout=10)
        assert (answer.status_code, answer.text) == (200, "success")

    def deliveries(self) -> list[Delivered]:
        found = []
        for task in list(self.mock.tasks.values()):
            images = [a["image"]["media_id"] for a in task.attachments if a.get("msgtype") == "image"]
            file = self.mock.media_names.get(images[0]) if images else None
            found += [Delivered(room=chat, text=task.text, file=file, raw={"msgid": task.msgid})
                      for chat in task.chat_ids]
        return found

    async def delivered(self, predicate: Callable[[Delivered], bool], *, timeout: float = 30) -> Delivered:
        """The task the adapter makes once its batch window is over (a real clock: wait for it)."""
        async with asyncio.timeout(timeout):
            while (found := next((d for d in self.deliveries() if predicate(d)), None)) is None:
                await asyncio.sleep(0.02)
        return found


class TestWeCom(AdapterContract):
    peer = staticmethod(wecom_peer)

    async def test_knows_itself_and_its_rooms(self, bench: tuple[Any, Events]) -> None:
        """A corp's 客户联系 secret is no member of its groups (each post goes out as the group's owner), so
        `self_member` is None; the rooms are listed with their members."""
        peer, _ = bench
        assert await peer.adapter.self_member() is None
        [room] = [r for r in await peer.adapter.rooms() if r.id == peer.room]
        assert set(ROOM_MEMBERS) <= {m.id for m in room.members} and room.owner_id == OWNER

    async def test_a_post_to_several_groups_of_one_owner_is_one_task(self, bench: tuple[Any, Events]) -> None:
        peer, _ = bench
        peer.mock.add_group("wrContract2", "测试二群", OWNER)
        deadline = datetime.now(TZ) + timedelta(hours=1)
        for room in (ROOM, "wrContract2"):
            await peer.adapter.send(Outgoing(account="corp", room_id=room, text="早安", key=f"sop:f:s:{room}:1",
                                             expires_at=deadline))
        got = await peer.delivered(lambda d: d.room == "wrContract2")
        assert {d.room for d in peer.deliveries() if d.raw["msgid"] == got.raw["msgid"]} == {ROOM, "wrContract2"}
