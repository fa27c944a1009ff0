"""The dashboard app over HTTP (no browser): login, read-only pages with the week's numbers, purchases."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import MetaData, func, select
from sqlmodel import Session
from starlette.testclient import TestClient
from week_data import ROOMS

from bot._config import load_config
from bot._db import make_engine
from bot._models import Membership
from bot._retention import sent_per_day
from bot.dashboard import DashboardError, build_app
from bot.dashboard._auth import COOKIE, Auth
from bot.insight import InsightPurchase, InsightStage
from bot.testing import BotHarness

PAGES = ["/", "/rooms/g1", "/rooms/g2", "/sop", "/draws", "/variants"]
ENV = {"QUNBOT_DASHBOARD_PASSWORD": "s3cret-pw", "QUNBOT_PURCHASE_TOKEN": "shop-token"}


def client(repo, url, now, environ=ENV) -> TestClient:
    return TestClient(build_app(repo, load_config(repo), db_url=url, now=lambda: now, environ=dict(environ)))


def logged_in(repo, url, now) -> TestClient:
    c = client(repo, url, now)
    assert c.post("/login", data={"password": ENV["QUNBOT_DASHBOARD_PASSWORD"]}, follow_redirects=False
                  ).status_code == 303
    return c


def charts(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html, re.S)[1])


def test_never_starts_without_a_password(repo):
    with pytest.raises(DashboardError, match="QUNBOT_DASHBOARD_PASSWORD"):
        build_app(repo, load_config(repo), db_url="sqlite://", environ={})


def test_every_page_needs_a_login(repo, week_db):
    url, week = week_db
    c = client(repo, url, week.end)
    for page in PAGES:
        r = c.get(page, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), page
    assert c.post("/login", data={"password": "wrong"}, follow_redirects=False).status_code == 401
    c.cookies.set(COOKIE, "9999999999.forged")
    assert c.get("/", follow_redirects=False).status_code == 303
    assert c.get("/static/chart.umd.min.js").status_code == 200  # the library itself is public


def test_sessions_expire_and_cannot_be_forged():
    auth = Auth("pw", session_seconds=60)
    cookie = auth.new_session(now=1000)
    assert auth.valid(cookie, now=1059) and not auth.valid(cookie, now=1061)
    assert not auth.valid(cookie[:-1] + ("A" if cookie[-1] != "A" else "B"), now=1000)
    assert not Auth("pw", session_seconds=60).valid(cookie, now=1000)  # a restart forgets every session


def test_pages_show_the_week_and_change_nothing(repo, week_db):
    url, week = week_db
    engine = make_engine(url)
    meta = MetaData()
    meta.reflect(bind=engine)

    def counts() -> dict[str, int]:
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar() for t in meta.sorted_tables}

    before = counts()
    c = logged_in(repo, url, week.end)
    pages = {page: c.get(page) for page in PAGES}
    assert all(r.status_code == 200 for r in pages.values())
    assert counts() == before

    overview = charts(pages["/"].text)
    labels = overview["messages"]["data"]["labels"]
    days = [week.end.date() - timedelta(days=13 - i) for i in range(14)]
    assert labels == [f"{d.month}/{d.day}" for d in days]
    totals = {name: overview[name]["data"]["datasets"] for name in overview}
    assert totals["messages"][0]["data"] == [sum(week.messages[r][d] for r in ROOMS) for d in days]
    assert totals["signins"][0]["data"] == [sum(week.signins[r][d] for r in ROOMS) for d in days]
    assert totals["joins"][0]["data"] == [week.joins[d] for d in days]
    assert totals["joins"][1]["data"] == [week.leaves[d] for d in days]
    with Session(engine) as session:
        present = session.execute(select(func.count()).select_from(Membership).where(
            Membership.left_at.is_(None))).scalar()
        sent = sent_per_day(session, days[0], week.end.tzinfo)
    assert totals["members"][0]["data"][-1] == present
    assert totals["sent"][0]["data"] == [sent.get(d, 0) for d in days] and sum(sent.values()) > 0
    assert f"<b>{sum(sent.get(d, 0) for d in days[-7:])}</b>" in pages["/"].text  # the bot-sent total of the week

    room = charts(pages["/rooms/g1"].text)
    funnel = room["funnel"]["data"]["datasets"][0]["data"]
    assert funnel[3] >= 1 and sum(funnel) == len(ROOMS["g1"][1]) + 2  # + two who joined; loyal a1 bought
    assert "✔ 一致" in pages["/draws"].text and week.draws == pages["/draws"].text.count("✔ 一致")
    variants = charts(pages["/variants"].text)["variants-0"]["data"]["datasets"][0]["data"]
    assert variants == [week.noon_replies["g1"] / 5, week.noon_replies["g2"] / 5]  # five weekday posts each
    assert "daily.noon_topic" in pages["/sop"].text and "12:30" in pages["/sop"].text


# --- the purchase endpoint -------------------------------------------------------------------


@pytest.fixture
def shop(repo, tmp_path):
    url = f"sqlite:///{tmp_path}/shop.db"

    async def build():
        async with BotHarness(repo, plugins=["insight"], db_url=url) as bot:
            bot.room("g1", "群", members={"u1": "Alice", "u2": "Bob"})
            await bot.advance("1h")
            return bot.now
    now = asyncio.run(build())
    return client(repo, url, now), make_engine(url)


def purchases(engine) -> list[InsightPurchase]:
    with Session(engine) as session:
        return list(session.exec(select(InsightPurchase)).scalars())


ORDER = {"order_id": "T1", "member_id": "u1", "amount": "199.00", "paid_at": "2026-11-23T20:00:00+08:00"}


def test_purchases_need_the_token(shop):
    c, engine = shop
    assert c.post("/api/purchases", json=ORDER).status_code == 401
    assert c.post("/api/purchases", json=ORDER, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.post("/api/purchases", json=ORDER, headers={"Authorization": "s3cret-pw"}).status_code == 401
    assert purchases(engine) == []


def test_bad_json_and_bad_orders_are_rejected_whole_with_a_clear_error(shop):
    c, engine = shop
    auth = {"Authorization": "Bearer shop-token"}
    r = c.post("/api/purchases", content=b'{"order_id": "T1",', headers=auth)
    assert r.status_code == 400 and r.json()["error"].startswith("body is not JSON")
    batch = {"purchases": [ORDER, {**ORDER, "order_id": "T2", "amount": "abc"}]}
    r = c.post("/api/purchases", json=batch, headers=auth)
    assert r.status_code == 422 and r.json()["error"].startswith("purchases.1.amount")
    r = c.post("/api/purchases", json={"purchases": [{**ORDER, "paid_at": "2026-11-23 20:00"}]}, headers=auth)
    assert r.status_code == 422 and "UTC offset" in r.json()["error"]
    r = c.post("/api/purchases", json={**ORDER, "coupon": "X"}, headers=auth)
    assert r.status_code == 422 and "coupon" in r.json()["error"]
    assert purchases(engine) == []  # the good first order of the bad batch was not written either


def test_orders_are_recorded_once_and_move_the_buyer_stage(shop):
    c, engine = shop
    auth = {"Authorization": "Bearer shop-token"}
    batch = {"purchases": [ORDER, {**ORDER, "order_id": "T2", "amount": 59.9, "room_id": "g1", "item": "面膜"}]}
    assert c.post("/api/purchases", json=batch, headers=auth).json() == {"accepted": 2, "duplicates": 0}
    assert c.post("/api/purchases", json=batch, headers=auth).json() == {"accepted": 0, "duplicates": 2}
    assert sorted(p.amount_cents for p in purchases(engine)) == [5990, 19900]
    with Session(engine) as session:
        assert session.get(InsightStage, ("g1", "u1")).stage == "loyal"  # purchases >= 2
        assert session.get(InsightStage, ("g1", "u2")).stage == "aware"


def test_no_token_configured_means_no_endpoint(repo, shop):
    _, engine = shop
    bare = TestClient(build_app(repo, load_config(repo), db_url=str(engine.url),
                                environ={"QUNBOT_DASHBOARD_PASSWORD": "pw"}))
    assert bare.post("/api/purchases", json=ORDER, headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize("command", [["dashboard"], ["run", "--dashboard"]])
def test_commands_refuse_to_serve_without_a_password(tmp_path, command):
    from click.testing import CliRunner

    from bot.cli import main

    result = CliRunner(env={"QUNBOT_DASHBOARD_PASSWORD": None}).invoke(main, ["--project", str(tmp_path), *command])
    assert result.exit_code == 1 and "set QUNBOT_DASHBOARD_PASSWORD" in result.output


def test_wrong_passwords_are_throttled_then_allowed_again():
    auth = Auth("s3cret", session_seconds=60)
    for second in range(5):
        assert not auth.check_password("guess", now=1000.0 + second)
    assert auth.locked(now=1005.0)
    assert not auth.check_password("s3cret", now=1005.0)          # even the right one, while locked
    assert auth.check_password("s3cret", now=1000.0 + 300.5)      # the first failure left the window


def test_the_login_page_refuses_a_guessing_run(repo, week_db):
    url, week = week_db
    c = client(repo, url, week.end)
    codes = [c.post("/login", data={"password": f"guess{i}"}, follow_redirects=False).status_code for i in range(6)]
    assert codes == [401] * 5 + [429]
    right = c.post("/login", data={"password": ENV["QUNBOT_DASHBOARD_PASSWORD"]}, follow_redirects=False)
    assert right.status_code == 429 and "5 分钟后再试" in right.text
