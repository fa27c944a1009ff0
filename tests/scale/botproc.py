"""Real `qunbot run`-style processes for the scale-out and fault tests, and a WeChat that outlives them.

`python botproc.py PROJECT` runs the production `Node` (leases, runtime, outbox) over the project's
database with `FileWeChat` adapters: every send is appended to a JSON Lines file outside the process,
so what reached "WeChat" survives `kill -9`, and `was_sent` answers from it as a history lookup would.
At connect, WeChat delivers the operator's 「群发」 command again (same event id), as a platform
replays recent messages after a reconnect; the fan-out plugin queues one post per room.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bot._clock import Clock
from bot._events import MemberRef, Outgoing, RoomMessage
from bot.adapters._base import EventSink
from bot.adapters.simulated import SimulatedAdapter

REPO = Path(__file__).resolve().parents[2]
FANOUT_PLUGIN = '''
from pydantic import BaseModel

from bot import OPERATOR, Context, Plugin


class Config(BaseModel):
    rooms: int = 200


plugin = Plugin(name="fanout", description="群发", usage="群发 文字", config=Config)


@plugin.on_command("群发", permission=OPERATOR).handle
async def fanout(ctx: Context) -> None:
    for n in range(ctx.config.rooms):
        await ctx.say(ctx.args, room=f"r{n:03d}", mentions=[])
'''


class FileWeChat(SimulatedAdapter):
    """A simulated account whose sends are appended to a file shared with the test process."""

    def __init__(self, account: str, clock: Clock, sent_file: Path, rooms: int, latency: float) -> None:
        super().__init__(account, clock, bot=MemberRef(f"bot-{account}", "小完子"))
        self.sent_file = sent_file
        self.latency = latency
        for n in range(rooms):
            self.add_room(f"r{n:03d}", f"会员{n:03d}群", members=[MemberRef("op", "群主")])

    async def start(self, sink: EventSink) -> None:
        await super().start(sink)
        asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(self._replay()))

    async def _replay(self) -> None:
        event = RoomMessage(account=self.account, id=f"{self.account}-broadcast-1", time=self.clock.now(),
                            room_id="r000", sender=MemberRef("op", "群主"), text="群发 周年庆开始啦")
        if self._sink is not None:
            await self._sink(event)

    async def send(self, message: Outgoing) -> None:
        await asyncio.sleep(self.latency)  # the request on its way
        with self.sent_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"account": self.account, "room": message.room_id, "text": message.text,
                                  "pid": os.getpid(), "at": time.time()}, ensure_ascii=False) + "\n")
        await asyncio.sleep(self.latency)  # the acknowledgement on its way back

    async def was_sent(self, message: Outgoing) -> bool | None:
        return any(s["account"] == self.account and s["room"] == message.room_id and s["text"] == message.text
                   for s in read_sent(self.sent_file))


def read_sent(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def rooms_count(path: Path, account: str = "a1") -> Counter[str]:
    return Counter(s["room"] for s in read_sent(path) if s["account"] == account)


def make_project(root: Path, db_url: str, *, accounts: tuple[str, ...] = ("a1",), rooms: int = 200,
                 lease_ttl: float = 10.0, heartbeat: float = 1.0, min_interval: float = 0.005) -> Path:
    (root / "plugins").mkdir(parents=True, exist_ok=True)
    (root / "scripts_templates").mkdir(exist_ok=True)
    (root / "plugins" / "fanout.py").write_text(FANOUT_PLUGIN, encoding="utf-8")
    account_tables = "".join(f'\n[[accounts]]\nid = "{a}"\n' for a in accounts)
    (root / "qunbot.toml").write_text(textwrap.dedent(f"""
        [bot]
        operators = ["op"]

        [database]
        url = "{db_url}"

        [pacing]
        min_interval = {min_interval}
        jitter = 0
        room_interval = 0
        hourly_cap = 100000

        [cluster]
        lease_ttl = {lease_ttl}
        heartbeat = {heartbeat}

        [plugins]
        enabled = ["fanout"]

        [plugins.fanout]
        rooms = {rooms}
        """) + account_tables, encoding="utf-8")
    return root


class BotProcess:
    """One bot process: start, kill -9, stop; its log is kept for assertions and diagnosis."""

    def __init__(self, project: Path, name: str, *, sent_file: Path, latency: float = 0.005) -> None:
        self.project, self.name = project, name
        self.log_path = project / f"{name}.log"
        self.env = {**os.environ, "QUNBOT_TEST_SENT": str(sent_file), "QUNBOT_TEST_LATENCY": str(latency),
                    "QUNBOT_TEST_NODE": name, "PYTHONPATH": str(REPO)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BotProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.project)], stdout=log, stderr=log,
                                     env=self.env, cwd=self.project)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM, as systemd does; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def wait_until(condition: Callable[[], object], *, timeout: float, what: str,
               procs: tuple[BotProcess, ...] = ()) -> None:
    """Poll a condition on other processes (no fixed sleeps); fail with their logs if it never holds."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() > began + timeout:
            logs = "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in procs)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(0.02)
    print(f"waited {time.monotonic() - began:.2f}s for {what}")  # shown with the output of a failing test


async def _main(project: Path) -> None:
    from bot._clock import RealClock
    from bot._config import load_config
    from bot._logging import setup_logging
    from bot._runtime import Runtime
    from bot._serve import Node, default_owner

    setup_logging("INFO")
    config = load_config(project)
    clock = RealClock(config.bot.tz)
    sent_file = Path(os.environ["QUNBOT_TEST_SENT"])
    latency = float(os.environ.get("QUNBOT_TEST_LATENCY", "0.005"))
    rooms = int(config.plugins.settings_for("fanout").get("rooms", 200))
    adapters = {a.id: FileWeChat(a.id, clock, sent_file, rooms, latency) for a in config.accounts}
    node = Node(Runtime(project, config, clock=clock, adapters=adapters),
                owner=default_owner(os.environ.get("QUNBOT_TEST_NODE", "")))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, node.drain)
    await node.start()
    try:
        await node.serve(stop)
    finally:
        await node.stop()
        await clock.aclose()


if __name__ == "__main__":
    asyncio.run(_main(Path(sys.argv[1])))


def outbox_statuses(db_url: str) -> dict[str, int]:
    """How many outbox rows are in each status (`{"sent": 200}` once a fan-out is done)."""
    from sqlmodel import Session, select

    from bot._db import make_engine
    from bot._models import OutboxMessage

    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            return dict(Counter(session.exec(select(OutboxMessage.status)).all()))
    finally:
        engine.dispose()
