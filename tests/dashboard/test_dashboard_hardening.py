"""The dashboard against an outsider: throttling per address, logout that revokes, bounded bodies,
JSON safe inside <script>, and a 4xx naming the field for every bad purchase input."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bot._config import load_config
from bot.dashboard import build_app
from bot.dashboard._app import json_for_script
from bot.dashboard._auth import COOKIE
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]

ENV = {"QUNBOT_DASHBOARD_PASSWORD": "s3cret-pw", "QUNBOT_PURCHASE_TOKEN": "shop-token"}
AUTH = {"Authorization": "Bearer shop-token"}
ORDER = {"order_id": "T1", "member_id": "u1", "amount": "199.00", "paid_at": "2026-11-23T20:00:00+08:00"}
HOSTILE_TOPIC = '完子群</script><!--<script>alert(1)//\u2028'


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('hardening')}/dash.db"
    repo = REPO

    async def build():
        async with BotHarness(repo, plugins=["insight"], db_url=url) as bot:
            bot.room("g1", HOSTILE_TOPIC, members={"u1": "Alice", "u2": "Bob"})
            await bot.say("g1", "u1", "大家好")
            await bot.advance("1h")
            return bot.now
    return url, asyncio.run(build())


def app(repo, db):
    url, now = db
    return build_app(repo, load_config(repo), db_url=url, now=lambda: now, environ=dict(ENV))


def login(c: TestClient, password: str = ENV["QUNBOT_DASHBOARD_PASSWORD"]) -> int:
    return c.post("/login", data={"password": password}, follow_redirects=False).status_code


def test_wrong_guesses_from_one_address_never_lock_out_another(repo, db):
    dashboard = app(repo, db)
    attacker = TestClient(dashboard, client=("203.0.113.9", 4444))
    operator = TestClient(dashboard, client=("198.51.100.7", 5555))
    assert [login(attacker, f"guess{i}") for i in range(6)] == [401] * 5 + [429]
    assert login(operator) == 303
    assert operator.get("/", follow_redirects=False).status_code == 200
    assert login(attacker) == 429  # the guessing address itself stays throttled


def test_logout_revokes_the_session_on_the_server(repo, db):
    c = TestClient(app(repo, db))
    assert login(c) == 303
    stolen = c.cookies.get(COOKIE)
    assert c.get("/", follow_redirects=False).status_code == 200
    c.get("/logout", follow_redirects=False)
    replay = TestClient(c.app, cookies={COOKIE: stolen})
    assert replay.get("/", follow_redirects=False).status_code == 303


async def _post_stream(asgi, path: str, chunks: int, chunk_size: int, headers: list) -> tuple[int, int]:
    """Drive the ASGI app by hand: the body arrives chunk by chunk, and we count what the app pulled."""
    pulled = 0
    status = 0

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"a" * chunk_size, "more_body": pulled < chunks}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("192.0.2.1", 1234), "server": ("testserver", 80)}
    await asgi(scope, receive, send)
    return status, pulled * chunk_size


def test_a_huge_login_body_is_refused_without_being_read(repo, db):
    dashboard = app(repo, db)
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    status, read = asyncio.run(_post_stream(dashboard, "/login", 400, 1 << 20, form))  # 400 MB, not announced
    assert status == 413 and read <= 2 << 20
    announced = [*form, (b"content-length", str(400 << 20).encode())]
    status, read = asyncio.run(_post_stream(dashboard, "/login", 400, 1 << 20, announced))
    assert status == 413 and read <= 1 << 20
    shop = [(b"content-type", b"application/json"), (b"authorization", b"Bearer shop-token")]
    status, read = asyncio.run(_post_stream(dashboard, "/api/purchases", 400, 1 << 20, shop))
    assert status == 413 and read <= 4 << 20


def test_embedded_chart_json_survives_a_hostile_topic(repo, db):
    c = TestClient(app(repo, db))
    assert login(c) == 303
    html = c.get("/").text
    assert "</script><!--" not in html.split("<body")[-1].split("chart-data")[-1].split("</script>")[0]
    script = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html, re.S)[1]
    assert "<" not in script and "\u2028" not in script
    json.loads(script)  # the whole object, not cut short by the topic
    assert html.count('id="chart-data"') == 1
    assert "完子群&lt;/script&gt;&lt;!--&lt;script&gt;alert(1)//" in html  # the group table shows it as text
    embedded = json_for_script({"label": HOSTILE_TOPIC})  # charts of totals carry no topic; the escaping stays
    assert "<" not in embedded and "\u2028" not in embedded and json.loads(embedded)["label"] == HOSTILE_TOPIC


@pytest.mark.parametrize(("body", "field"), [
    ({**ORDER, "amount": "1e999999"}, "amount"),
    ({**ORDER, "amount": 10 ** 30}, "amount"),
    ({**ORDER, "amount": "99999999999999999999.00"}, "amount"),
    ({**ORDER, "paid_at": "9999-12-31T23:59:59-14:00"}, "paid_at"),
    ({**ORDER, "paid_at": "0001-01-01T00:00:00+14:00"}, "paid_at"),
    ({**ORDER, "paid_at": 10 ** 20}, "paid_at"),
    ({**ORDER, "member_id": None}, "member_id"),
    ({**ORDER, "item": {"x": [1, 2]}}, "item"),
    ([ORDER], "body"),
    ("just a string", "body"),
])
def test_bad_purchase_inputs_get_a_4xx_naming_the_field(repo, db, body, field):
    c = TestClient(app(repo, db), raise_server_exceptions=False)
    r = c.post("/api/purchases", json=body, headers=AUTH)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["error"].split(":")[0].split(".")[-1] == field or field in r.json()["error"], r.json()


@pytest.mark.parametrize("recursion_limit", [None, 1_000_000])
def test_deeply_nested_json_gets_a_4xx(repo, db, recursion_limit):
    """Also with a recursion limit raised so high that json.loads would overflow the C stack (a crash, not
    a RecursionError): the depth is checked before parsing."""
    import sys

    c = TestClient(app(repo, db), raise_server_exceptions=False)
    nested = b'{"purchases": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(recursion_limit or before)
    try:
        r = c.post("/api/purchases", content=nested, headers=AUTH)
    finally:
        sys.setrecursionlimit(before)
    assert r.status_code == 400 and "body" in r.json()["error"], r.text
    quoted = json.dumps({"purchases": [{**ORDER, "item": "[" * 50 + '\\"{{{'}]}).encode()
    assert c.post("/api/purchases", content=quoted, headers=AUTH).status_code == 200  # brackets inside text are fine
    r = c.post("/api/purchases", content=b'{"purchases": [' + json.dumps({**ORDER, "item": "x"})[:-1].encode()
               + b', "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}", headers=AUTH)
    assert r.status_code == 400, r.text
