"""`qunbot run` with a WeCom account against the mock API, callbacks encrypted by Tencent's @wecom/crypto.

The bot runs as a subprocess, the way an operator runs it; every assertion is on what the mock
recorded or what the bot wrote to its database. Each step waits for the record it expects, with a
timeout (no sleeps standing in for synchronisation).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from crypto_peer import peer, unavailable
from sqlalchemy import create_engine, text
from sqlmodel import Session, col, select
from starlette.testclient import TestClient
from wecom_mock import MockServer, WecomMock, free_port

from bot._config import load_config
from bot._models import Membership, OutboxMessage
from bot.adapters.wecom import WecomTask
from bot.dashboard import build_app

if reason := unavailable():
    pytest.skip(reason, allow_module_level=True)

TOKEN, KEY, CORP = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwmockcorp"
TZ = ZoneInfo("Asia/Shanghai")
PATH = "/wecom/callback"
REPO = Path(__file__).resolve().parents[2]


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Bot:
    """A `qunbot run` subprocess; its JSON log lines are collected by a reader thread."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--project", str(project), "--log-json",
                                      "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **env})
        self.lines: list[dict[str, object]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"message": line.rstrip()})

    def logged(self, text: str) -> bool:
        return any(text in str(entry.get("message", "")) for entry in self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        return code


GROUPS = {**{f"wrA{i}": "owner_a" for i in range(5)}, "wrB0": "owner_b", "wrB1": "owner_b"}
"""Five customer groups of one owner, two of another: one SOP post to all of them is two tasks."""


def write_project(project: Path, api: str, port: int, *, window: float, grace: str) -> None:
    now = datetime.now(TZ).replace(microsecond=0)
    (project / "sop").mkdir(parents=True, exist_ok=True)
    (project / "scripts_templates").mkdir(exist_ok=True)
    (project / "qunbot.toml").write_text(f'''
templates_dir = "{REPO / 'scripts_templates'}"

[database]
url = "sqlite:///data/bot.db"

[plugins]
dirs = ["{REPO / 'plugins'}"]
enabled = ["welcome"]

[[accounts]]
id = "corp"
adapter = "wecom"

[accounts.wecom]
api_base = "{api}"
callback_port = {port}
callback_path = "{PATH}"
poll_interval = 0.3
batch_window = {window}
''', encoding="utf-8")  # the default chat pacing: a WeCom account's tasks are not paced like chat messages
    (project / "sop" / "daily.yaml").write_text(f'''
name: daily
targets:
  rooms: [{", ".join(GROUPS)}]
start: "{now.isoformat()}"
grace: {grace}
steps:
  - id: 早安
    offset: "0"
    text: 早安，今天也要加油
''', encoding="utf-8")


def start_bot(mock: WecomMock, project: Path) -> Bot:
    env = {"WECOM_CORP_ID": CORP, "WECOM_SECRET": mock.secret, "WECOM_CALLBACK_TOKEN": TOKEN,
           "WECOM_ENCODING_AES_KEY": KEY}
    bot = Bot(project, env)
    wait_for("qunbot run to start", lambda: bot.logged("running; press Ctrl-C") or bot.proc.poll() is not None)
    assert bot.proc.poll() is None, bot.lines
    return bot


def keep_log(project: Path, bot: Bot, name: str = "bot.log") -> None:
    """For a failing test's reader."""
    (project / name).write_text("\n".join(str(line.get("message")) for line in bot.lines), encoding="utf-8")


@pytest.fixture
def running(tmp_path):
    """Start `qunbot run` on a project over the mock: `running(window=..., grace=...)`."""
    started: list[tuple[Path, Bot]] = []
    with MockServer(WecomMock(corp_id=CORP)) as server:
        mock = server.mock
        for room, owner in GROUPS.items():
            mock.add_group(room, f"完子研究所{room}", owner)
        port = free_port()
        project = tmp_path / "proj"

        def run(*, window: float = 2.0, grace: str = "20s") -> tuple[WecomMock, Bot, Any, str, Path]:
            if not started:
                write_project(project, server.url, port, window=window, grace=grace)
            bot = start_bot(mock, project)
            started.append((project, bot))
            engine = create_engine(f"sqlite:///{project / 'data' / 'bot.db'}")
            return mock, bot, engine, f"http://127.0.0.1:{port}{PATH}", project

        try:
            yield run
        finally:
            for n, (path, bot) in enumerate(started):
                if bot.proc.poll() is None:
                    assert bot.stop() == 0
                keep_log(path, bot, f"bot{n}.log")


@pytest.fixture
def setup(running):
    return running()


def outbox_rows(engine) -> dict[str, OutboxMessage]:
    with Session(engine) as session:
        return {row.room_id: row for row in session.exec(select(OutboxMessage).where(
            col(OutboxMessage.room_id).is_not(None), col(OutboxMessage.action).is_(None))).all()}


def statuses(engine) -> dict[str, str]:
    return {room: row.status for room, row in outbox_rows(engine).items()}


def tasks_of(mock: WecomMock, owner: str) -> list[Any]:
    return [t for t in list(mock.tasks.values()) if t.sender == owner]


def post_callback(url: str, xml: str, *, tamper: bool = False) -> httpx.Response:
    signed = peer(op="callback", token=TOKEN, key=KEY, corp=CORP, xml=xml, timestamp=str(int(time.time())),
                  nonce="8964")
    if tamper:
        signed["msg_signature"] = ("0" if signed["msg_signature"][0] != "0" else "1") + signed["msg_signature"][1:]
    params = {k: signed[k] for k in ("msg_signature", "timestamp", "nonce")}
    return httpx.post(url, params=params, content=signed["body"].encode(), timeout=10)


def join_xml(chat_id: str, userid: str) -> str:
    return (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[change_external_chat]]></Event>"
            f"<ChatId><![CDATA[{chat_id}]]></ChatId><ChangeType><![CDATA[update]]></ChangeType>"
            "<UpdateDetail><![CDATA[add_member]]></UpdateDetail><JoinScene>1</JoinScene><QuitScene>0</QuitScene>"
            f"<MemChangeCnt>1</MemChangeCnt><MemChangeList><Item><![CDATA[{userid}]]></Item></MemChangeList>"
            "<LastMemVer>v1</LastMemVer><CurMemVer>v2</CurMemVer></xml>")


def test_an_sop_post_to_seven_groups_of_two_owners_is_two_tasks_settled_per_group(setup):
    mock, _, engine, _, project = setup
    wait_for("both owners' tasks", lambda: tasks_of(mock, "owner_a") and tasks_of(mock, "owner_b"))
    [task_a], [task_b] = tasks_of(mock, "owner_a"), tasks_of(mock, "owner_b")
    assert sorted(task_a.chat_ids) == [f"wrA{i}" for i in range(5)] and sorted(task_b.chat_ids) == ["wrB0", "wrB1"]
    assert task_a.text == "早安，今天也要加油"
    assert len(mock.called("externalcontact/add_msg_template")) == 2
    assert all(body["chat_type"] == "group" for body in mock.called("externalcontact/add_msg_template"))
    assert set(statuses(engine).values()) == {"awaiting_confirmation"}

    mock.confirm(task_a.msgid, except_for={"wrA3": 3})  # owner A taps 发送; one of A's groups cannot get it
    wait_for("owner A's groups to settle", lambda: all(statuses(engine)[f"wrA{i}"] != "awaiting_confirmation"
                                                       for i in range(5)))
    assert statuses(engine) == {**{f"wrA{i}": "sent" for i in range(5)}, "wrA3": "failed",
                                "wrB0": "awaiting_confirmation", "wrB1": "awaiting_confirmation"}

    wait_for("owner B's task to be cancelled at its grace", lambda: task_b.cancelled)
    wait_for("the cancellations to be recorded",
             lambda: statuses(engine)["wrB0"] == statuses(engine)["wrB1"] == "cancelled")
    rows = outbox_rows(engine)
    assert "没有确认" in rows["wrB0"].last_error and "已经收到过" in rows["wrA3"].last_error
    with Session(engine) as session:
        deadline = session.exec(select(WecomTask.deadline).where(WecomTask.sender == "owner_b")).one()
    assert datetime.now(TZ) >= deadline.astimezone(TZ)  # not before the grace ran out

    shown = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(project), "sop", "status"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    line = next(line for line in shown.splitlines() if line.startswith("sop:daily:早安:"))
    assert "2 个群发任务，7 个群：已确认 5，送达 4，失败 1，未确认取消 2，等群主确认 0" in line

    environ = {"QUNBOT_DASHBOARD_PASSWORD": "pw"}
    app = build_app(project, load_config(project), now=lambda: datetime.now(TZ), environ=environ)
    with TestClient(app) as web:
        assert web.post("/login", data={"password": "pw"}, follow_redirects=False).status_code == 303
        page = web.get("/sop").text
    rows = re.findall(r"<tr><td>(.*?)</td><td>corp</td>(.*?)</tr>", re.sub(r"\s+", "", page))
    counts = {post.split(":")[1]: re.findall(r"<td>(\d+)</td>", cells) for post, cells in rows}
    assert counts == {"daily": ["2", "5", "4", "1", "2", "0"]}  # tasks; groups confirmed, sent, failed, cancelled


def test_a_restart_before_the_tasks_are_made_makes_them_once(running):
    mock, first, engine, _, _ = running(window=8.0, grace="10m")
    wait_for("every group handed over", lambda: len(statuses(engine)) == len(GROUPS)
             and set(statuses(engine).values()) == {"awaiting_confirmation"})
    assert mock.tasks == {}  # still inside the batch window
    assert first.stop() == 0
    assert mock.tasks == {}
    _, second, _, _, _ = running()
    wait_for("both owners' tasks after the restart", lambda: tasks_of(mock, "owner_a") and tasks_of(mock, "owner_b"))
    for task in list(mock.tasks.values()):
        mock.confirm(task.msgid)
    wait_for("every group sent", lambda: set(statuses(engine).values()) == {"sent"})
    assert len(mock.called("externalcontact/add_msg_template")) == 2  # no group asked twice
    assert second.proc.poll() is None


def test_a_member_joining_by_callback_is_recorded_with_the_inviter(setup):
    mock, _, engine, url, _ = setup
    mock.add_member("wrA0", "wmNewbie", "小新", invitor="owner_a")
    response = post_callback(url, join_xml("wrA0", "wmNewbie"))
    assert response.status_code == 200 and response.text == "success"

    def joined():
        with Session(engine) as session:
            row = session.get(Membership, ("wrA0", "wmNewbie"))
            return row if row is not None and row.joined_at is not None else None

    membership = wait_for("the join to be recorded", joined)
    assert membership.inviter_id == "owner_a" and membership.left_at is None

    # the welcome plugin's greeting is the corp's 入群欢迎语 template: no group-message task per join
    [template] = mock.welcome.values()
    assert "%NICKNAME%" in template and "欢迎" in template
    with engine.connect() as connection:  # the plugin's own table (not imported: the loader owns the module)
        assert connection.execute(text("SELECT inviter_id, status FROM welcome_join WHERE member_id = 'wmNewbie'")
                                  ).all() == [("owner_a", "template")]
    assert all("wmNewbie" not in t.text for t in mock.tasks.values())


def test_a_bad_signature_is_refused_and_changes_nothing(setup):
    mock, bot, engine, url, _ = setup
    mock.add_member("wrA0", "wmSneaky", "冒充", invitor="owner_a")
    fetched = len(mock.called("externalcontact/groupchat/get"))
    response = post_callback(url, join_xml("wrA0", "wmSneaky"), tamper=True)
    assert response.status_code == 403
    wait_for("the refusal to be logged", lambda: bot.logged("refused a WeCom callback"))
    # a good callback after it is processed: so the bad one, before it, would have been too
    mock.add_member("wrA0", "wmHonest", "老实人", invitor="owner_a")
    assert post_callback(url, join_xml("wrA0", "wmHonest")).status_code == 200
    def honest():
        with Session(engine) as session:
            row = session.get(Membership, ("wrA0", "wmHonest"))
            return row is not None and row.joined_at is not None

    wait_for("the good callback", honest)
    with Session(engine) as session:
        assert session.get(Membership, ("wrA0", "wmSneaky")) is None
    assert len(mock.called("externalcontact/groupchat/get")) == fetched + 1


def test_url_verification_answers_the_plain_echostr_and_refuses_a_forged_one(setup):
    _, _, _, url, _ = setup
    echo = peer(op="echo", token=TOKEN, key=KEY, corp=CORP, echostr="4711080012345",
                timestamp=str(int(time.time())), nonce="1")
    params = {k: echo[k] for k in ("msg_signature", "timestamp", "nonce", "echostr")}
    answer = httpx.get(url, params=params, timeout=10)
    assert (answer.status_code, answer.text) == (200, "4711080012345")
    forged = httpx.get(url, params={**params, "nonce": "2"}, timeout=10)
    assert forged.status_code == 403 and "4711080012345" not in forged.text


def test_an_old_callback_is_refused(setup):
    mock, bot, engine, url, _ = setup
    mock.add_member("wrA0", "wmLate", "迟到", invitor="owner_a")
    xml = join_xml("wrA0", "wmLate")
    signed = peer(op="callback", token=TOKEN, key=KEY, corp=CORP, xml=xml,
                  timestamp=str(int(time.time()) - int(timedelta(hours=1).total_seconds())), nonce="5")
    params = {k: signed[k] for k in ("msg_signature", "timestamp", "nonce")}
    assert httpx.post(url, params=params, content=signed["body"].encode(), timeout=10).status_code == 403
    wait_for("the refusal to be logged", lambda: bot.logged("a replay"))
    with Session(engine) as session:
        assert session.get(Membership, ("wrA0", "wmLate")) is None
