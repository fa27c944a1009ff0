"""The Wechaty adapter against a real Wechaty puppet service (not a fake).

`tests/wechaty_peer/peer.mjs` serves wechaty-puppet-mock through wechaty-puppet-service's
PuppetServer on loopback; the bot connects with python-wechaty's client and runs its
real runtime and plugins. Every assertion is on what the service recorded from the bot.
No sleeps: each step waits for the record it expects, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import Session
from wechaty_peer.discovery import Discovery
from wechaty_peer.driver import Peer, require_peer

from bot._clock import RealClock
from bot._config import load_config
from bot._events import DirectMessage, Event, Outgoing, RoomMessage
from bot._models import Membership
from bot._runtime import Runtime
from bot.adapters import AdapterError, Disconnected, make_adapter
from bot.adapters import _wechaty_compat as compat

require_peer()

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

ROOM = "g1@chatroom"
REPO = Path(__file__).resolve().parent.parent

GREETER = '''
from bot import Context, Plugin, ROOM_ADMIN
from bot._events import MemberRenamed, MembersJoined, RoomTopicChanged

plugin = Plugin(name="greeter", description="test: greets joins, notes images and topics, room actions")

@plugin.on_event(MembersJoined).handle
async def welcome(ctx: Context) -> None:
    members = ctx.event.members
    await ctx.say("欢迎新朋友！", mentions=[m.id for m in members])

@plugin.on_event(RoomTopicChanged).handle
async def topic(ctx: Context) -> None:
    await ctx.say(f"群名已改为「{ctx.event.topic}」")

@plugin.on_event(MemberRenamed).handle
async def renamed(ctx: Context) -> None:
    await ctx.say(f"{ctx.event.old_alias or '（无）'} 的群昵称改为 {ctx.event.alias}")

@plugin.on_message(rule=lambda ctx: getattr(ctx.event, "file", None) is not None).handle
async def got_file(ctx: Context) -> None:
    await ctx.reply(f"收到文件 {ctx.event.file}")

@plugin.on_command("踢", permission=ROOM_ADMIN).handle
async def kick(ctx: Context) -> None:
    await ctx.remove_member(ctx.args)

@plugin.on_command("改群名", permission=ROOM_ADMIN).handle
async def rename(ctx: Context) -> None:
    await ctx.set_topic(ctx.args)

@plugin.on_fullmatch("发图").handle
async def send_image(ctx: Context) -> None:
    await ctx.say("这是图片", file="assets/dot.png")
'''

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000200b5d3d5d10000000049454e44ae426082")


def write_project(path: Path, *, token_env: str = "QB_TEST_TOKEN", endpoint_env: str = "QB_TEST_ENDPOINT") -> Path:
    (path / "plugins").mkdir(parents=True)
    shutil.copytree(REPO / "scripts_templates", path / "scripts_templates")
    (path / "plugins" / "greeter.py").write_text(GREETER, encoding="utf-8")
    (path / "assets").mkdir()
    (path / "assets" / "dot.png").write_bytes(PNG)
    (path / "qunbot.toml").write_text(f'''
[bot]
name = "小完子"
operators = []

[database]
url = "sqlite:///data/bot.db"

[[accounts]]
id = "wx1"
adapter = "wechaty"
token_env = "{token_env}"
endpoint_env = "{endpoint_env}"

[pacing]
min_interval = 0
jitter = 0
room_interval = 0

[plugins]
dirs = ["{(REPO / "plugins").as_posix()}", "plugins"]
enabled = ["demo", "greeter"]
''', encoding="utf-8")
    return path


async def script_group(peer: Peer, room: str = ROOM) -> None:
    """The WeChat side before the bot connects: contacts, one room, the bot account logged in."""
    for contact_id, name in [("bot", "小完子"), ("owner1", "群主"), ("u1", "Alice"), ("u2", "Bob"), ("u3", "Carol")]:
        await peer.cmd("contact", id=contact_id, name=name)
    await peer.cmd("room", id=room, topic="测试群", members=["bot", "owner1", "u1", "u2"], owner="owner1",
                   admins=["owner1"])
    await peer.cmd("login", id="bot")


@pytest.fixture(params=["1.x", "0.x"])
async def peer_line(request) -> AsyncIterator[Peer]:
    """A peer on each package line."""
    peer = await Peer.start(line=request.param)
    try:
        await script_group(peer)
        yield peer
    finally:
        await peer.close()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    peer = await Peer.start()
    try:
        await script_group(peer)
        yield peer
    finally:
        await peer.close()


def sent_to_room(text: str):
    return lambda r: r["event"] == "sent" and r["conversation"] == ROOM and text in r.get("text", "")


async def test_a_group_over_a_real_puppet_service(peer_line, tmp_path, monkeypatch):
    peer = peer_line
    project = write_project(tmp_path / "proj")
    monkeypatch.setenv("QB_TEST_TOKEN", peer.token)
    monkeypatch.setenv("QB_TEST_ENDPOINT", peer.endpoint)
    config = load_config(project)
    clock = RealClock(config.bot.tz)
    adapter = make_adapter(config.accounts[0], clock, project=project, config=config)
    runtime = Runtime(project, config, clock=clock, adapters={"wx1": adapter})
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    runtime.listeners.append(record)
    await runtime.start()
    try:
        # connected, logged in, and the room as the service knows it
        assert (await adapter.self_member()).name == "小完子"
        assert runtime.members.room_info(ROOM).topic == "测试群"
        assert runtime.members.is_admin(ROOM, "owner1") and not runtime.members.is_admin(ROOM, "u1")

        # a keyword: the demo plugin answers "pong", without an @
        await peer.cmd("say", **{"from": "u1"}, room=ROOM, text="ping")
        pong = await peer.wait_for(sent_to_room("pong"))
        assert pong["text"] == "pong" and pong["mentions"] == []

        # an @-mention of the bot: the demo fallback answers with an @ of the speaker
        await peer.cmd("say", **{"from": "u1"}, room=ROOM, text="@小完子\u2005在吗", mentions=["bot"])
        answer = await peer.wait_for(sent_to_room("我在呢"))
        assert answer["text"] == "@Alice 我在呢～ 发送「菜单」看看我能做什么"
        assert answer["mentions"] == ["u1"]

        # a member joins, invited by Alice: greeted with an @, and the inviter is on record
        await peer.cmd("join", room=ROOM, members=["u3"], inviter="u1")
        welcome = await peer.wait_for(sent_to_room("欢迎新朋友"))
        assert welcome["text"] == "@Carol 欢迎新朋友！" and welcome["mentions"] == ["u3"]
        with Session(runtime.engine) as session:
            membership = session.get(Membership, (ROOM, "u3"))
            assert membership is not None and membership.inviter_id == "u1" and membership.joined_at is not None

        # a member sends an image: the bot sees the file's name
        await peer.cmd("image", **{"from": "u2"}, room=ROOM, name="cat.png")
        got = await peer.wait_for(sent_to_room("收到文件"))
        if peer.versions["wechaty-puppet-mock"].startswith("1."):
            assert got["text"] == "@Bob 收到文件 cat.png"
        else:  # the 0.x mock keeps no received files: it answers every file request with a fake one
            assert got["text"].startswith("@Bob 收到文件 mock-file") and got["text"].endswith(".txt")

        # the bot sends an image from the project folder
        await peer.cmd("say", **{"from": "u2"}, room=ROOM, text="发图")
        image = await peer.wait_for(lambda r: r["event"] == "sent" and r["kind"] == "file")
        assert (image["conversation"], image["name"], image["size"]) == (ROOM, "dot.png", len(PNG))
        await peer.wait_for(sent_to_room("这是图片"))

        # the topic changes: the event carries the new topic and who changed it
        await peer.cmd("topic", room=ROOM, topic="qunbot 测试二群", by="owner1")
        await peer.wait_for(sent_to_room("群名已改为「qunbot 测试二群」"))
        assert runtime.members.room_info(ROOM).topic == "qunbot 测试二群"

        # a direct message
        await peer.cmd("say", **{"from": "u1"}, to="bot", text="ping")
        direct = await peer.wait_for(lambda r: r["event"] == "sent" and r["conversation"] == "u1")
        assert direct["text"] == "pong"

        # room actions from an admin: removing a member reaches the service ...
        await peer.cmd("say", **{"from": "owner1"}, room=ROOM, text="踢 u2")
        removal = await peer.wait_for(lambda r: r["event"] == "action")
        assert removal == {"event": "action", "action": "remove_member", "room": ROOM, "member": "u2"}
        # ... and so does setting the topic, on both lines (python-wechaty's own request is a read on 1.x)
        mark = len(peer.records)
        await peer.cmd("say", **{"from": "owner1"}, room=ROOM, text="改群名 新群名")
        topic_call = await peer.wait_for(lambda r: r.get("room") == ROOM and r["event"] in ("action", "read"),
                                         start=mark)
        assert topic_call == {"event": "action", "action": "set_topic", "room": ROOM, "topic": "新群名"}
        assert adapter.capabilities.set_topic

        # a group nickname: WeChat sends no event; the adapter notices it on the member's next message
        await peer.cmd("rename", room=ROOM, member="u1", alias="上海-Alice")
        mark = len(peer.records)
        await peer.cmd("say", **{"from": "u1"}, room=ROOM, text="@小完子\u2005在吗", mentions=["bot"])
        answer = await peer.wait_for(sent_to_room("我在呢"), start=mark)
        renames = [r["text"] for r in peer.sent("text")[-3:] if "群昵称" in r["text"]]
        assert renames == ["（无） 的群昵称改为 上海-Alice"] and answer["text"].startswith("@上海-Alice ")

        # a member leaves; then one more message so every earlier event has been handled
        await peer.cmd("leave", room=ROOM, members=["u3"], by="owner1")
        await peer.cmd("say", **{"from": "u1"}, room=ROOM, text="ping")
        await peer.wait_for(sent_to_room("pong"), start=mark)
    finally:
        await runtime.stop()
        await clock.aclose()

    # what the bot saw: the mention flag, and never its own messages echoed back by the service
    messages = [e for e in seen if isinstance(e, RoomMessage | DirectMessage)]
    assert messages and all(e.sender.id != "bot" for e in messages)
    mentioned = [e for e in messages if isinstance(e, RoomMessage) and e.mentions_bot]
    assert [(e.sender.id, e.mentions) for e in mentioned] == [("u1", ("bot",))] * 2
    with Session(runtime.engine) as session:
        assert session.get(Membership, (ROOM, "u3")).left_at is not None


async def test_reconnects_after_the_service_restarts(tmp_path, monkeypatch):
    """The connection drops (the service restarts on the same port): the adapter says so and comes back."""
    logged: list[str] = []
    reconnected = asyncio.Event()

    lost = asyncio.Event()
    back = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record.getMessage())
            if "reconnected to" in record.getMessage():
                reconnected.set()
            if sum("logged in as" in m for m in logged) == 2:
                back.set()  # the second login came through the new event stream: it is subscribed
            if "lost the puppet service" in record.getMessage():
                lost.set()

    watch = Watch()
    logger = logging.getLogger("qunbot.wechaty")
    logger.addHandler(watch)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not an attribute: the logger caches isEnabledFor() answers
    heard = {"你好": asyncio.Event(), "又见面了": asyncio.Event()}

    async def sink(event: Event) -> None:
        if getattr(event, "text", "") in heard:
            heard[event.text].set()  # type: ignore[attr-defined]

    first = await Peer.start()
    try:
        await script_group(first)
        adapter = _adapter(tmp_path, first, monkeypatch)
        adapter.reconnect_delay = (0.25, 1.0)
        await adapter.start(sink)
        port = first.endpoint.rsplit(":", 1)[1]
    finally:
        await first.close()
    await asyncio.wait_for(lost.wait(), 60)
    with pytest.raises(Disconnected):  # the outbox holds its queue until the account is back
        await adapter.send(Outgoing(account="wx1", room_id=ROOM, text="有人吗"))
    second = await _peer_on_port(port)
    try:
        await script_group(second)
        await asyncio.wait_for(back.wait(), 90)
        await second.cmd("say", **{"from": "u1"}, room=ROOM, text="你好")
        await asyncio.wait_for(heard["你好"].wait(), 60)
        # the runtime's own way back after a Disconnected send: stop(), then start() again
        await adapter.stop()
        await adapter.start(sink)
        await second.cmd("say", **{"from": "u1"}, room=ROOM, text="又见面了")
        await asyncio.wait_for(heard["又见面了"].wait(), 60)
        await adapter.send(Outgoing(account="wx1", room_id=ROOM, text="回来了", mentions=("u1",)))
        assert (await second.wait_for(lambda r: r["event"] == "sent"))["text"] == "回来了"
    finally:
        await adapter.stop()
        await second.close()
        logger.removeHandler(watch)
        logger.setLevel(level)
    assert any(m.startswith("account wx1: lost the puppet service at 127.0.0.1:") and "reconnecting in 0.25 s" in m
               for m in logged)


async def _peer_on_port(port: str) -> Peer:
    previous = os.environ.get("PEER_PORT")
    os.environ["PEER_PORT"] = port
    try:
        return await Peer.start()
    finally:
        if previous is None:
            os.environ.pop("PEER_PORT", None)
        else:
            os.environ["PEER_PORT"] = previous


def _adapter(tmp_path: Path, peer: Peer, monkeypatch, *, token: str | None = None, endpoint: str | None = None):
    project = write_project(tmp_path / "proj")
    monkeypatch.setenv("QB_TEST_TOKEN", token or peer.token)
    monkeypatch.setenv("QB_TEST_ENDPOINT", endpoint or peer.endpoint)
    config = load_config(project)
    return make_adapter(config.accounts[0], RealClock(config.bot.tz), project=project, config=config)


async def test_a_wrong_token_is_refused_with_a_clear_error(peer, tmp_path, monkeypatch):
    adapter = _adapter(tmp_path, peer, monkeypatch, token="not-the-token")

    async def sink(event: Event) -> None: ...

    with pytest.raises(AdapterError, match="refused the token"):
        await adapter.start(sink)


async def test_an_unreachable_endpoint_is_a_clear_error(peer, tmp_path, monkeypatch):
    adapter = _adapter(tmp_path, peer, monkeypatch, endpoint="127.0.0.1:1")

    async def sink(event: Event) -> None: ...

    with pytest.raises(AdapterError, match=r"cannot reach the puppet service at 127\.0\.0\.1:1"):
        await adapter.start(sink)


def test_missing_environment_variables_are_named(tmp_path, monkeypatch):
    project = write_project(tmp_path / "proj", token_env="QB_NO_TOKEN", endpoint_env="QB_NO_ENDPOINT")
    monkeypatch.delenv("QB_NO_TOKEN", raising=False)
    monkeypatch.delenv("QB_NO_ENDPOINT", raising=False)
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(project), "run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: account wx1: set QB_NO_TOKEN (the token from your puppet provider or gateway; and QB_NO_ENDPOINT, "
        "the service's host:port, unless the token is found through discovery)")
    assert not (project / ".wechaty").exists() and not Path(".wechaty").exists()


async def _qunbot(project: Path, *args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "--project", str(project), *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_doctor_reports_account_and_rooms_and_explains_failures(peer, tmp_path):
    project = write_project(tmp_path / "proj")
    good = {"QB_TEST_TOKEN": peer.token, "QB_TEST_ENDPOINT": peer.endpoint}

    code, out, _ = await _qunbot(project, "doctor", env=good)
    assert code == 0, out
    assert "ok    the service accepted the token" in out
    assert "ok    logged in as 小完子 (bot)" in out
    assert "ok    in 1 room(s)" in out

    code, out, _ = await _qunbot(project, "doctor", env={**good, "QB_TEST_TOKEN": "wrong"})
    assert code == 1
    assert 'FAIL  127.0.0.1' in out and 'the service refused the token (Invalid Wechaty TOKEN "wrong")' in out
    assert "copy the token into $QB_TEST_TOKEN again" in out

    code, out, _ = await _qunbot(project, "doctor", env={**good, "QB_TEST_ENDPOINT": "127.0.0.1:1"})
    assert code == 1
    assert "FAIL  cannot reach the puppet service at 127.0.0.1:1" in out
    assert "is the gateway running? $QB_TEST_ENDPOINT must be host:port" in out

    code, out, _ = await _qunbot(project, "doctor", env={**good, "QB_TEST_ENDPOINT": "http://"})
    assert code == 1 and "is not host:port" in out


async def test_doctor_says_when_no_account_is_logged_in(tmp_path):
    peer = await Peer.start()
    try:
        await peer.cmd("contact", id="bot", name="小完子")  # the service runs, nobody scanned the QR code
        project = write_project(tmp_path / "proj")
        env = {"QB_TEST_TOKEN": peer.token, "QB_TEST_ENDPOINT": peer.endpoint}
        code, out, _ = await _qunbot(project, "doctor", "--login-timeout", "3", env=env)
    finally:
        await peer.close()
    assert code == 1
    assert "ok    the service accepted the token" in out
    assert "did not log in within 3 s" in out and "scan its QR code" in out


async def test_qunbot_run_against_the_service_answers_and_stops_cleanly(peer, tmp_path):
    """What an operator does by hand (docs/wechaty.md): `qunbot run` with the two variables set."""
    project = write_project(tmp_path / "proj")
    env = {**os.environ, "QB_TEST_TOKEN": peer.token, "QB_TEST_ENDPOINT": peer.endpoint}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "--project", str(project), "--log-json", "run", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    messages: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not any(m.startswith("running") for m in messages):
                line = await proc.stderr.readline()
                assert line, f"qunbot run exited early: {messages}"
                if line.startswith(b"{"):  # a library may print a plain line (a warning) beside the JSON logs
                    messages.append(json.loads(line)["message"])
        await peer.cmd("say", **{"from": "u2"}, room=ROOM, text="ping")
        await peer.wait_for(sent_to_room("pong"), timeout=60)
        # a 1.x service serves one client: doctor, run beside the bot, says so (and the bot goes on)
        code, out, _ = await _qunbot(project, "doctor", env=env)
        assert code == 1 and "serves one event stream at a time" in out and "stop that client first" in out
        mark = len(peer.records)
        await peer.cmd("say", **{"from": "u2"}, room=ROOM, text="ping")
        await peer.wait_for(sent_to_room("pong"), timeout=60, start=mark)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            rest = await proc.stderr.read()
            code = await proc.wait()
    messages += [json.loads(x)["message"] for x in rest.decode().splitlines() if x.startswith("{")]
    assert code == 0
    assert "account wx1: logged in as 小完子 (bot)" in messages
    assert "stopping" in messages
    assert not (project / ".wechaty").exists() and (project / "data" / ".wechaty").is_dir()


def test_qunbot_run_exits_2_with_one_line_when_the_endpoint_is_unreachable(tmp_path):
    project = write_project(tmp_path / "proj")
    env = {**os.environ, "QB_TEST_TOKEN": "t", "QB_TEST_ENDPOINT": "127.0.0.1:1"}
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(project), "run"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: account wx1: cannot reach the puppet service at 127.0.0.1:1 (")


async def test_two_accounts_in_one_process_each_with_its_own_service(tmp_path, monkeypatch):
    peers = [await Peer.start(token="token-a"), await Peer.start(token="token-b")]
    try:
        for peer, room in zip(peers, (ROOM, "g2@chatroom"), strict=True):
            await script_group(peer, room)
        project = write_project(tmp_path / "proj")
        toml = (project / "qunbot.toml").read_text(encoding="utf-8")
        toml = toml.replace('[pacing]', '[[accounts]]\nid = "wx2"\nadapter = "wechaty"\n'
                            'token_env = "QB_TEST_TOKEN_2"\nendpoint_env = "QB_TEST_ENDPOINT_2"\n\n[pacing]')
        (project / "qunbot.toml").write_text(toml, encoding="utf-8")
        for suffix, peer in (("", peers[0]), ("_2", peers[1])):
            monkeypatch.setenv(f"QB_TEST_TOKEN{suffix}", peer.token)
            monkeypatch.setenv(f"QB_TEST_ENDPOINT{suffix}", peer.endpoint)
        config = load_config(project)
        clock = RealClock(config.bot.tz)
        adapters = {a.id: make_adapter(a, clock, project=project, config=config) for a in config.accounts}
        runtime = Runtime(project, config, clock=clock, adapters=adapters)
        await runtime.start()
        try:
            await peers[1].cmd("say", **{"from": "u2"}, room="g2@chatroom", text="ping")
            await peers[1].wait_for(lambda r: r["event"] == "sent" and r["conversation"] == "g2@chatroom")
            await peers[0].cmd("say", **{"from": "u1"}, room=ROOM, text="@小完子\u2005在吗", mentions=["bot"])
            await peers[0].wait_for(sent_to_room("我在呢"))
        finally:
            await runtime.stop()
            await clock.aclose()
        assert [r["text"] for r in peers[0].sent()] == ["@Alice 我在呢～ 发送「菜单」看看我能做什么"]
        assert [r["text"] for r in peers[1].sent()] == ["pong"]
    finally:
        for peer in peers:
            await peer.close()


async def test_a_token_only_account_connects_through_discovery_with_qunbot_run(peer, tmp_path):
    """No endpoint, only a token: doctor and `qunbot run` ask a discovery service where the service runs.

    The discovery service is down when `qunbot run` starts: it retries with back-off and connects once
    the service is up (started when the first failed try is logged: no sleeps).
    """
    project = write_project(tmp_path / "proj")
    toml = (project / "qunbot.toml").read_text(encoding="utf-8")
    toml = toml.replace('endpoint_env = "QB_TEST_ENDPOINT"',
                        'endpoint_env = "QB_TEST_ENDPOINT"\nauthority_env = "QB_TEST_AUTHORITY"')
    (project / "qunbot.toml").write_text(toml.replace("[pacing]", "[pacing]\nreconnect_min = 0.2\nreconnect_max = 1"),
                                         encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QB_TEST_")}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**environment, "QB_TEST_TOKEN": peer.token, "QB_TEST_AUTHORITY": f"http://127.0.0.1:{port}"}

    async with Discovery({peer.token: peer.endpoint}, port=port) as service:
        code, out, _ = await _qunbot(project, "doctor", env=env)
        assert code == 0, out
        assert f"ok    discovery: the token's puppet service is at {peer.endpoint}" in out
        assert "ok    logged in as 小完子 (bot)" in out and "ok    in 1 room(s)" in out
    assert service.requests == [peer.token] * 2  # doctor's own look-up, then the adapter's on connect

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "--project", str(project), "--log-json", "run", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    messages: list[str] = []

    async def until(prefix: str) -> None:
        async with asyncio.timeout(120):
            while not any(m.startswith(prefix) for m in messages):
                line = await proc.stderr.readline()
                assert line, f"qunbot run exited early: {messages}"
                if line.startswith(b"{"):
                    messages.append(json.loads(line)["message"])

    try:
        await until(f"account wx1: token discovery at http://127.0.0.1:{port} failed")
        async with Discovery({peer.token: peer.endpoint}, port=port) as service:
            await until("running")
            await peer.cmd("say", **{"from": "u2"}, room=ROOM, text="ping")
            await peer.wait_for(sent_to_room("pong"), timeout=60)
        assert service.requests == [peer.token]
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await proc.stderr.read()
            code = await proc.wait()
    assert code == 0
    assert f"account wx1: the discovery service http://127.0.0.1:{port} gives the token's puppet service at " \
           f"{peer.endpoint}" in messages
    assert "account wx1: logged in as 小完子 (bot)" in messages


async def test_a_tls_only_service_is_named_with_what_to_put_in_front(tmp_path):
    """1.x services speak TLS unless told not to; python-wechaty's client cannot: doctor and run say what to do."""
    peer = await Peer.start(tls=True)
    try:
        await script_group(peer)
        project = write_project(tmp_path / "proj")
        env = {"QB_TEST_TOKEN": peer.token, "QB_TEST_ENDPOINT": peer.endpoint}
        code, out, _ = await _qunbot(project, "doctor", env=env)
        assert code == 1, out
        assert "ok    the endpoint answers" in out
        assert f"FAIL  {peer.endpoint}: the service speaks only TLS, and python-wechaty's client" in out
        assert '→ run the TLS-opening proxy from docs/wechaty.md ("TLS") and set $QB_TEST_ENDPOINT to its' in out
        code, _, err = await _qunbot(project, "run", env=env)
        assert code == 2
        assert err.strip().splitlines()[-1] == (
            f"error: account wx1: {peer.endpoint}: the service speaks only TLS, and python-wechaty's client "
            "(wechaty-puppet-service 0.8.10) speaks only plaintext gRPC: ask the provider for a plaintext endpoint, "
            'or run a TLS-opening gRPC proxy beside qunbot and set the endpoint to it (docs/wechaty.md, "TLS")')
    finally:
        await peer.close()


TLS_PROXY = """\
server {
    listen 127.0.0.1:8788 http2;                # qunbot connects here, in plaintext
    location / {
        grpc_pass grpcs://SERVICE_HOST:SERVICE_PORT;
        grpc_ssl_server_name on;
        grpc_ssl_name SNI;                      # the token up to its last "_"
        grpc_ssl_verify on;
        grpc_ssl_trusted_certificate CA_FILE;
        grpc_set_header Authorization "Wechaty $http_host";   # the token qunbot sends as :authority
        grpc_read_timeout 1d;                   # the event stream stays open
        grpc_send_timeout 1d;
    }
}
"""
"""The proxy docs/wechaty.md shows (keep the two the same)."""


def wechaty_root_ca() -> str:
    """The Wechaty community CA certificate, as the 1.x client trusts it (wechaty-puppet-service's auth/ca.js)."""
    source = (REPO / "tests/wechaty_peer/node_modules/wechaty-puppet-service/dist/esm/src/auth/ca.js").read_text()
    start = source.index("-----BEGIN CERTIFICATE-----", source.index("TLS_CA_CERT"))
    return source[start:source.index("-----END CERTIFICATE-----", start)] + "-----END CERTIFICATE-----\n"


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (the TLS proxy of docs/wechaty.md)")
async def test_the_documented_tls_proxy_reaches_a_tls_only_service(tmp_path, monkeypatch):
    token = "insecure_QunbotTLS42"  # SNI "insecure": the name in the certificate 1.x services use by default
    peer = await Peer.start(tls=True, token=token)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "ca.pem").write_text(wechaty_root_ca())
    host, service_port = peer.endpoint.rsplit(":", 1)
    server = (TLS_PROXY.replace("127.0.0.1:8788", f"127.0.0.1:{port}").replace("SERVICE_HOST", host)
              .replace("SERVICE_PORT", service_port).replace("SNI", token.rsplit("_", 1)[0])
              .replace("CA_FILE", str(tmp_path / "ca.pem")))
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                                         f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path};\n{server}}}\n")
    nginx = await asyncio.create_subprocess_exec("nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                                                 "-g", "daemon off;")
    adapter = None
    try:
        await script_group(peer)
        async with asyncio.timeout(30):  # until nginx listens
            while True:
                try:
                    await compat.reachable(f"127.0.0.1:{port}")
                    break
                except AdapterError:
                    await asyncio.sleep(0.05)
        adapter = _adapter(tmp_path, peer, monkeypatch, endpoint=f"127.0.0.1:{port}")
        heard = asyncio.Event()

        async def sink(event: Event) -> None:
            if getattr(event, "text", "") == "你好":
                heard.set()

        await adapter.start(sink)
        assert (await adapter.self_member()).name == "小完子"
        await peer.cmd("say", **{"from": "u1"}, room=ROOM, text="你好")
        await asyncio.wait_for(heard.wait(), 60)
        await adapter.send(Outgoing(account="wx1", room_id=ROOM, text="经过 TLS 代理"))
        assert (await peer.wait_for(lambda r: r["event"] == "sent"))["text"] == "经过 TLS 代理"
    finally:
        if adapter is not None:
            await adapter.stop()
        nginx.terminate()
        await nginx.wait()
        await peer.close()
