"""`qunbot chat`: type as members of a simulated group and watch the bot answer.

Runs on a virtual clock that starts at the current time, so paced replies show
at once with the time they would really go out, and `/wait 1d` jumps ahead to
watch timers and SOP posts fire.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from bot._config import load_config
from bot._events import MemberRef
from bot._scenario import parse_offset
from bot._simulation import Simulation
from bot.adapters.simulated import SentMessage

HELP = """\
直接输入文字 = 以当前成员身份在当前群里发言（@小完子 … 会 @ 机器人，@Bob 会 @ 群友 Bob）
/as ID [名字]     切换发言成员（不存在则创建；owner1 是群主，可以用管理员命令）
/dm 文字          以当前成员身份私聊机器人
/join ID 名字     新成员入群（由当前成员邀请）
/leave ID         成员退群
/rename 群昵称    修改当前成员的群昵称
/topic 群名       修改群名（SOP 按群名选群：sop/*.yaml 的 targets.topics）
/wait 30m|2h|1d   让时间前进（定时任务、SOP 会按时触发）
/crowd 20 签到    20 位新成员同时发这句话（看同类回复怎样合并成一条）
/who              查看群成员
/help             帮助        /quit 退出"""

DEMO_MEMBERS = (MemberRef("owner1", "群主"), MemberRef("u1", "Alice"), MemberRef("u2", "Bob"))
DEMO_TOPIC = "完子会员·qunbot 演示群"
"""Starts like the rooms the sample SOP files target (`完子会员*`), so `/wait 1d` shows their posts."""


class ChatConsole:
    """The console loop: one simulated room, you speak as one of its members."""

    def __init__(self, project: Path, *, db_url: str | None, out: TextIO) -> None:
        config = load_config(project)
        self.out = out
        start = datetime.now(config.bot.tz).replace(microsecond=0)
        self.sim = Simulation(project, start=start, config=config, db_url=db_url,
                              bot=MemberRef("bot", config.bot.name), on_send=self._show)
        self.room = "g1"
        self.sim.adapter.add_room(self.room, DEMO_TOPIC, members=DEMO_MEMBERS, admins=["owner1"])
        self.speaker = "u1"

    def _show(self, message: SentMessage) -> None:
        where = f"群 {message.room_id}" if message.room_id else f"私聊 {message.to}"
        self.out.write(f"[{message.at:%m-%d %H:%M:%S}] {self.sim.config.bot.name} → {where}: {message.text}\n")
        if message.file:
            self.out.write(f"    (附件 {message.file})\n")
        self.out.flush()

    async def run(self, lines: TextIO) -> None:
        await self.sim.start()
        plugins = ", ".join(self.sim.runtime.plugins) if self.sim.runtime else ""
        self.out.write(f"qunbot chat — 模拟群「{DEMO_TOPIC}」，插件: {plugins}\n"
                       f"你是 Alice (u1)。输入 /help 查看命令，/quit 退出。\n")
        try:
            while True:
                self.out.write(f"{self._speaker_name()}> ")
                self.out.flush()
                line = await asyncio.to_thread(lines.readline)
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                if line in ("/quit", "/exit"):
                    break
                try:
                    await self._handle(line)
                except (ValueError, KeyError) as err:
                    self.out.write(f"!! {err}\n")
                await self.sim.drain()
        finally:
            await self.sim.stop()
            self.out.write("\n再见 👋\n")

    def _speaker_name(self) -> str:
        ref = self.sim.adapter.sim_rooms[self.room].members.get(self.speaker)
        return ref.name if ref else self.speaker

    async def _handle(self, line: str) -> None:
        adapter = self.sim.adapter
        if not line.startswith("/"):  # `@Name` in the text mentions that member (the simulated WeChat reads it)
            await adapter.say(self.room, self.speaker, line)
            return
        command, _, rest = line.partition(" ")
        parts = shlex.split(rest) if rest else []
        members = adapter.sim_rooms[self.room].members
        if command == "/help":
            self.out.write(HELP + "\n")
        elif command == "/as" and parts:
            self.speaker = parts[0]
            if self.speaker not in members:
                members[self.speaker] = MemberRef(self.speaker, parts[1] if len(parts) > 1 else self.speaker)
        elif command == "/dm" and rest:
            await adapter.private(self.speaker, rest)
        elif command == "/join" and len(parts) >= 2:
            await adapter.join(self.room, [MemberRef(parts[0], parts[1])], inviter=self.speaker)
        elif command == "/leave" and parts:
            await adapter.leave(self.room, parts[:1])
        elif command == "/rename" and rest:
            await adapter.rename(self.room, self.speaker, rest)
        elif command == "/topic" and rest:
            await adapter.change_topic(self.room, rest, by=self.speaker)
            self.out.write(f"(群名改为「{rest}」)\n")
        elif command == "/wait" and parts:
            await self.sim.advance(parse_offset(parts[0] if parts[0][0] in "+-" else f"+{parts[0]}"))
            self.out.write(f"(现在是 {self.sim.clock.now():%m-%d %H:%M})\n")
        elif command == "/crowd" and len(parts) >= 2 and parts[0].isdigit():
            said = rest.split(None, 1)[1]
            for n in range(1, min(int(parts[0]), 500) + 1):
                who = f"crowd{n}"
                members.setdefault(who, MemberRef(who, f"成员{n}"))
                await adapter.say(self.room, who, said)
        elif command == "/who":
            for ref in members.values():
                self.out.write(f"  {ref.id}: {ref.name}\n")
        else:
            raise ValueError(f"不认识的命令 {command!r}，输入 /help 查看")


async def run_chat(project: Path, *, db_url: str | None = None) -> None:
    await ChatConsole(project, db_url=db_url, out=sys.stdout).run(sys.stdin)
