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
from zoneinfo import ZoneInfo

import httpx
import pytest
from crypto_peer import peer, unavailable
from sqlalchemy import create_engine, text
from sqlmodel import Session, select
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


@pytest.fixture
def setup(tmp_path):
    mock = WecomMock(corp_id=CORP)
    mock.add_group("wrGroupA", "完子研究所1群", "owner_a")
    mock.add_group("wrGroupB", "完子研究所2群", "owner_b")
    port = free_port()
    now = datetime.now(TZ).replace(microsecond=0)
    project = tmp_path / "proj"
    (project / "sop").mkdir(parents=True)
    (project / "scripts_templates").mkdir()
    with MockServer(mock) as server:
        (project / "qunbot.toml").write_text(f'''
templates_dir = "{REPO / 'scripts_templates'}"

[database]
url = "sqlite:///data/bot.db"

[plugins]
dirs = ["{REPO / 'plugins'}"]
enabled = ["welcome"]

[pacing]
min_interval = 0
jitter = 0
room_interval = 0

[[accounts]]
id = "corp"
adapter = "wecom"

[accounts.wecom]
api_base = "{server.url}"
callback_port = {port}
callback_path = "{PATH}"
poll_interval = 0.3
''', encoding="utf-8")
        for name, room, grace in (("confirmed", "wrGroupA", "10m"), ("unconfirmed", "wrGroupB", "15s")):
            (project / "sop" / f"{name}.yaml").write_text(f'''
name: {name}
targets:
  rooms: [{room}]
start: "{now.isoformat()}"
grace: {grace}
steps:
  - id: 早安
    offset: "0"
    text: 早安，今天也要加油
''', encoding="utf-8")
        env = {"WECOM_CORP_ID": CORP, "WECOM_SECRET": mock.secret, "WECOM_CALLBACK_TOKEN": TOKEN,
               "WECOM_ENCODING_AES_KEY": KEY}
        bot = Bot(project, env)
        try:
            wait_for("qunbot run to start", lambda: bot.logged("running; press Ctrl-C") or bot.proc.poll() is not None)
            assert bot.proc.poll() is None, bot.lines
            engine = create_engine(f"sqlite:///{project / 'data' / 'bot.db'}")
            yield mock, bot, engine, f"http://127.0.0.1:{port}{PATH}", project
        finally:
            if bot.proc.poll() is None:
                assert bot.stop() == 0
            (project / "bot.log").write_text("\n".join(str(line.get("message")) for line in bot.lines),
                                             encoding="utf-8")  # for a failing test's reader


def outbox_row(engine, room_id):
    with Session(engine) as session:
        return session.exec(select(OutboxMessage).where(OutboxMessage.room_id == room_id)).first()


def task_row(engine, room_id):
    with Session(engine) as session:
        return session.exec(select(WecomTask).where(WecomTask.room_id == room_id)).first()


def task_for(mock: WecomMock, room_id: str):
    return next((t for t in list(mock.tasks.values()) if room_id in t.chat_ids), None)


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


def test_an_sop_post_is_a_task_delivered_when_confirmed_and_cancelled_at_its_grace(setup):
    mock, _, engine, _, project = setup
    task = wait_for("the SOP post to become a task for group A", lambda: task_for(mock, "wrGroupA"))
    assert task.sender == "owner_a" and task.chat_ids == ["wrGroupA"] and task.text == "早安，今天也要加油"
    body = mock.called("externalcontact/add_msg_template")[0]
    assert body["chat_type"] == "group"
    wait_for("the row to wait for the owner",
             lambda: (row := outbox_row(engine, "wrGroupA")) and row.status == "awaiting_confirmation")
    assert not task.cancelled

    mock.confirm(task.msgid)  # the owner taps 发送 in the WeCom app
    wait_for("the confirmed post to be recorded as sent", lambda: outbox_row(engine, "wrGroupA").status == "sent")
    counted = task_row(engine, "wrGroupA")
    assert (counted.status, counted.confirmed, counted.sent, counted.failed, counted.cancelled) == \
        ("sent", 1, 1, 0, 0)

    unconfirmed = wait_for("group B's task", lambda: task_for(mock, "wrGroupB"))
    wait_for("group B's task to be cancelled at its grace", lambda: unconfirmed.cancelled)
    row = wait_for("the cancellation to be recorded",
                   lambda: (r := outbox_row(engine, "wrGroupB")) and r.status == "cancelled" and r)
    assert "没有确认" in row.last_error
    counted = task_row(engine, "wrGroupB")
    assert (counted.status, counted.confirmed, counted.sent, counted.cancelled) == ("cancelled", 0, 0, 1)
    assert datetime.now(TZ) >= counted.deadline.astimezone(TZ)  # not before the grace ran out

    shown = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(project), "sop", "status"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    confirmed_line = next(line for line in shown.splitlines() if line.startswith("sop:confirmed:早安:"))
    assert "1 个群发任务，已确认 1，送达 1 个群，失败 0，未确认取消 0，等群主确认 0" in confirmed_line
    unconfirmed_line = next(line for line in shown.splitlines() if line.startswith("sop:unconfirmed:早安:"))
    assert "已确认 0，送达 0 个群，失败 0，未确认取消 1" in unconfirmed_line

    environ = {"QUNBOT_DASHBOARD_PASSWORD": "pw"}
    app = build_app(project, load_config(project), now=lambda: datetime.now(TZ), environ=environ)
    with TestClient(app) as web:
        assert web.post("/login", data={"password": "pw"}, follow_redirects=False).status_code == 303
        page = web.get("/sop").text
    rows = re.findall(r"<tr><td>(.*?)</td><td>corp</td>(.*?)</tr>", re.sub(r"\s+", "", page))
    counts = {post.split(":")[1]: re.findall(r"<td>(\d+)</td>", cells) for post, cells in rows}
    assert counts == {"confirmed": ["1", "1", "1", "0", "0", "0"], "unconfirmed": ["1", "0", "0", "0", "1", "0"]}


def test_a_member_joining_by_callback_is_recorded_with_the_inviter(setup):
    mock, _, engine, url, _ = setup
    mock.add_member("wrGroupA", "wmNewbie", "小新", invitor="owner_a")
    response = post_callback(url, join_xml("wrGroupA", "wmNewbie"))
    assert response.status_code == 200 and response.text == "success"

    def joined():
        with Session(engine) as session:
            row = session.get(Membership, ("wrGroupA", "wmNewbie"))
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
    mock.add_member("wrGroupA", "wmSneaky", "冒充", invitor="owner_a")
    fetched = len(mock.called("externalcontact/groupchat/get"))
    response = post_callback(url, join_xml("wrGroupA", "wmSneaky"), tamper=True)
    assert response.status_code == 403
    wait_for("the refusal to be logged", lambda: bot.logged("refused a WeCom callback"))
    # a good callback after it is processed: so the bad one, before it, would have been too
    mock.add_member("wrGroupA", "wmHonest", "老实人", invitor="owner_a")
    assert post_callback(url, join_xml("wrGroupA", "wmHonest")).status_code == 200
    def honest():
        with Session(engine) as session:
            row = session.get(Membership, ("wrGroupA", "wmHonest"))
            return row is not None and row.joined_at is not None

    wait_for("the good callback", honest)
    with Session(engine) as session:
        assert session.get(Membership, ("wrGroupA", "wmSneaky")) is None
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
    mock.add_member("wrGroupA", "wmLate", "迟到", invitor="owner_a")
    xml = join_xml("wrGroupA", "wmLate")
    signed = peer(op="callback", token=TOKEN, key=KEY, corp=CORP, xml=xml,
                  timestamp=str(int(time.time()) - int(timedelta(hours=1).total_seconds())), nonce="5")
    params = {k: signed[k] for k in ("msg_signature", "timestamp", "nonce")}
    assert httpx.post(url, params=params, content=signed["body"].encode(), timeout=10).status_code == 403
    wait_for("the refusal to be logged", lambda: bot.logged("a replay"))
    with Session(engine) as session:
        assert session.get(Membership, ("wrGroupA", "wmLate")) is None
