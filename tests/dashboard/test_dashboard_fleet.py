"""The overview at many groups over HTTP: natural sort, filters, pages, totals, the quiet-group rule, guard records."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from fleet_data import NOW, WEEKS, build_fleet, fleet_app
from sqlalchemy import text
from sqlmodel import Session, SQLModel
from starlette.testclient import TestClient
from week_data import REPO

from bot._config import load_config
from bot._db import make_engine
from bot._models import Member, Room
from bot.dashboard._groups import natural_key
from bot.insight import InsightMessage

ENV = {"QUNBOT_DASHBOARD_PASSWORD": "pw"}


def _app(url: str, now: datetime = NOW) -> TestClient:
    c = TestClient(fleet_app(url, "pw", now))
    assert c.post("/login", data={"password": "pw"}, follow_redirects=False).status_code == 303
    return c


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('fleet')}/fleet.db"
    c = _app(url)
    build_fleet(url)
    return url, c, make_engine(url)


def _rows(html: str) -> list[str]:
    body = re.search(r'<table id="rooms">.*?<tbody>(.*?)</tbody>', html, re.S)[1]
    return [m for m in re.findall(r'<a href="/rooms/[^"]*">(.*?)</a>', body)]


def test_natural_key_orders_numbers_by_value():
    topics = ["完子会员10", "完子会员2", "完子会员1", "完子会员100", "完子会员2群B", "完子会员2群A", "Abc"]
    assert sorted(topics, key=natural_key) == ["Abc", "完子会员1", "完子会员2", "完子会员2群A",
                                               "完子会员2群B", "完子会员10", "完子会员100"]
    assert sorted(["g１０", "g9"], key=natural_key) == ["g9", "g１０"]  # full-width digits count as numbers


def test_the_table_sorts_naturally_and_pages(fleet):
    _, c, _ = fleet
    pages = [_rows(c.get(f"/?page={n}").text) for n in (1, 2, 3)]
    assert [len(rows) for rows in pages] == [50, 50, 26]  # 126 rooms
    numbered = [t for rows in pages for t in rows if t.startswith("完子会员")]
    assert numbered == [f"完子会员{i}" for i in range(120)]  # not 0, 1, 10, 100, 101 …
    first, third = pages[0], c.get("/?page=3").text
    assert _rows(third)[-20:] == [f"完子会员{i}" for i in range(100, 120)]
    assert "第 3/3 页" in third and 'rel="next"' not in third and 'href="/?page=2#rooms" rel="prev"' in third
    assert _rows(c.get("/?page=99").text) == _rows(third)  # past the end: the last page
    assert _rows(c.get("/?page=abc").text) == first
    backwards = _rows(c.get("/?sort=-topic").text)
    assert backwards[:3] == ["完子会员119", "完子会员118", "完子会员117"]


def test_filters_by_topic_glob_tag_and_account(fleet):
    _, c, _ = fleet
    assert _rows(c.get("/?q=完子会员1*").text)[:3] == ["完子会员1", "完子会员10", "完子会员11"]
    assert "31 个群" in c.get("/?q=完子会员1*").text  # 1, 10–19, 100–119
    assert _rows(c.get("/?q=会员11").text) == ["完子会员11", "完子会员110", "完子会员111", "完子会员112",
                                               "完子会员113", "完子会员114", "完子会员115", "完子会员116",
                                               "完子会员117", "完子会员118", "完子会员119"]  # no glob: contains
    assert _rows(c.get("/?tag=vip").text) == [f"完子会员{i}" for i in range(0, 120, 10)]
    a2 = _rows(c.get("/?account=a2&q=完子会员?").text)
    assert a2 == [f"完子会员{i}" for i in range(1, 10, 2)]
    page = c.get("/?tag=vip&account=a1&sort=-members").text
    assert _rows(page) == [f"完子会员{i}" for i in range(0, 120, 10)]  # a1: even numbers; every tenth is even
    assert 'value="vip" selected' in page and 'value="a1" selected' in page  # the form shows the filter
    assert "没有符合条件的群" in c.get("/?q=nothing-like-this").text


def test_numeric_sorts_and_the_filtered_sums(fleet):
    _, c, _ = fleet
    by_messages = _rows(c.get("/?sort=-messages").text)
    assert by_messages[:4] == ["冷q-above", "冷q-half", "冷q-new", "完子会员3"]  # 11, 10, 9, 7 in the last 7 days
    html = c.get("/?q=完子会员[7]").text
    assert _rows(html) == ["完子会员7"]
    assert re.search(r"<tfoot><tr><th>合计（1 个群）</th><th>6</th><th>1</th>\s*<th>1</th>", html)  # +1 −1


def test_totals_come_first_and_add_up(fleet):
    _, c, _ = fleet
    html = c.get("/").text
    rooms = 120 + len(WEEKS) + 1
    members = rooms * 5 + 1  # r7: one joined, one left
    assert re.search(rf"<span>群</span><b>{rooms}</b>", html) and re.search(rf"<span>成员</span><b>{members}</b>", html)
    assert html.index('id="totals"') < html.index('data-chart="members"') < html.index('id="rooms"')


def test_groups_going_quiet_follow_the_documented_rule(fleet):
    _, c, _ = fleet
    html = c.get("/").text
    quiet = re.search(r'<table id="quiet">.*?</table>', html, re.S)[0]
    names = re.findall(r'<a href="/rooms/[^"]*">(.*?)</a>', quiet)
    assert names == ["冷q-dead", "冷q-half"]  # fell 100 %, then exactly half; 19 before is under the floor
    assert "-100%" in quiet and "-50%" in quiet
    assert _rows(c.get("/?quiet=1").text) == ["冷q-dead", "冷q-half"]


def test_topics_are_escaped_everywhere(fleet):
    _, c, _ = fleet
    html = c.get("/?q=*script*").text
    assert "<img src=x" not in html and "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;群" in html


# --- guard records ---------------------------------------------------------------------------------


def _guard(engine, rows):
    table = SQLModel.metadata.tables["guard_record"]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)


def test_guard_records_filter_by_room_and_rule_and_page(fleet):
    _, c, engine = fleet
    with Session(engine) as session:
        session.add(Member(id="r1-m0", name="小广告"))
        session.commit()
    rows = [{"room_id": "r1" if n % 3 else "r2", "member_id": "r1-m0", "event_id": f"e{n}",
             "rule": "link" if n % 2 else "qrcode", "label": "链接" if n % 2 else "二维码",
             "evidence_hash": f"{n:064x}", "action": "remove" if n == 59 else "warn", "strike": n % 3 + 1,
             "actor_id": None, "revoked": n == 58, "created_at": NOW - timedelta(minutes=60 - n)}
            for n in range(60)]
    _guard(engine, rows)
    try:
        page = c.get("/guard").text
        assert 'id="nav-guard"' in c.get("/").text
        assert "60 条" in page and "第 1/2 页" in page
        records = re.search(r'<table id="guard-records">.*?</table>', page, re.S)[0]
        assert records.count("<tr") == 51 and "小广告" in records and "移出" in records
        assert records.index("移出") < records.index("（已撤销）")  # newest first
        links = c.get("/guard?room=r2&rule=qrcode").text
        expected = sum(1 for r in rows if r["room_id"] == "r2" and r["rule"] == "qrcode")
        assert f"{expected} 条" in links
        filtered = re.search(r'<table id="guard-records">.*?</table>', links, re.S)[0]
        assert filtered.count("二维码") == expected and "链接" not in filtered
        second = c.get("/guard?page=2").text
        assert re.search(r'<table id="guard-records">.*?</table>', second, re.S)[0].count("<tr") == 11
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM guard_record"))


def test_no_guard_table_no_guard_page(tmp_path):
    url = f"sqlite:///{tmp_path}/bare.db"
    make_engine(url)
    c = _app(url)
    with make_engine(url).begin() as conn:
        conn.execute(text("DROP TABLE guard_record"))
    assert 'id="nav-guard"' not in c.get("/").text
    assert "guard 插件没有启用" in c.get("/guard").text


def test_sent_per_day_counts_pruned_and_kept_rows_like_retention(tmp_path):
    from bot._models import OutboxMessage
    from bot._retention import DailyCount, sent_per_day
    from bot.dashboard._groups import sent_per_day as summed

    engine = make_engine(f"sqlite:///{tmp_path}/sent.db")
    SQLModel.metadata.create_all(engine)
    tz = NOW.tzinfo
    with Session(engine) as session:
        session.add_all([DailyCount(day=(NOW - timedelta(days=5)).date(), kind="outbox", account=a, source="sop",
                                    status="sent", count=40) for a in ("a1", "a2")])
        session.add(DailyCount(day=(NOW - timedelta(days=5)).date(), kind="outbox", account="a1", source="sop",
                               status="failed", count=3))
        for n in range(30):  # local days around midnight: 23:30 yesterday belongs to yesterday
            at = NOW.replace(hour=0, minute=30) - timedelta(hours=n)
            session.add(OutboxMessage(account="a1", key=f"k{n}", room_id="r1", text="hi", created_at=at,
                                      not_before=at, status="failed" if n % 5 == 4 else "sent", sent_at=at))
        session.commit()
        since = (NOW - timedelta(days=13)).date()
        expected = sent_per_day(session, since, tz)
        assert summed(session, since, NOW, tz) == expected and expected[(NOW - timedelta(days=5)).date()] == 80
        assert expected[NOW.date()] == 1  # 00:30 today; the failed rows are not counted


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/variants.db"
    return request.getfixturevalue("postgres_url")


def test_variant_replies_are_the_messages_within_the_hour_after_each_post(any_db):
    """One join over deliveries, sent posts and messages: the edges of the hour, a post not sent, another room."""
    from bot._models import OutboxMessage
    from bot.dashboard._data import variant_stats
    from bot.sop._check import load_project
    from bot.sop._load import variant_of
    from bot.sop._models import SopDelivery

    engine = make_engine(any_db)
    SQLModel.metadata.create_all(engine)
    files, _ = load_project(REPO, load_config(REPO), now=NOW)
    loaded = files["daily"]
    step = next(s for s in loaded.sop.steps if s.id == "noon_topic")
    sent = NOW.replace(hour=12, minute=30, second=0, microsecond=250_000)
    tick = timedelta(microseconds=1)
    with Session(engine) as session:
        for n, (room, status) in enumerate([("g1", "sent"), ("g1", "failed"), ("g2", "sent")]):
            key = f"sop:daily:noon_topic:{room}:{n}"
            session.add(SopDelivery(account="a1", key=key, file="daily", step="noon_topic", room_id=room,
                                    due_at=sent, status="done", sent_at=sent))
            session.add(OutboxMessage(account="a1", key=key, room_id=room, text="午间话题", created_at=sent,
                                      not_before=sent, status=status, sent_at=sent + timedelta(days=n)))
        for at, member in [(sent, "u0"), (sent + tick, "u1"), (sent + timedelta(hours=1), "u1"),
                           (sent + timedelta(hours=1) + tick, "u2"), (sent - tick, "u3")]:
            session.add(InsightMessage(room_id="g1", member_id=member, at=at))
        session.add(InsightMessage(room_id="g2", member_id="v1", at=sent + timedelta(days=2, minutes=5)))
        session.commit()
        rows = {r.variant: r for r in variant_stats(session, files)}
    assert variant_of(loaded, step, "g1") != variant_of(loaded, step, "g2")  # as in the simulated week
    g1, g2 = rows[variant_of(loaded, step, "g1")], rows[variant_of(loaded, step, "g2")]
    assert (g1.rooms, g1.posts, g1.replies, g1.repliers) == (["g1"], 1, 2, 1)  # u1 twice: 1 µs after, the hour's end
    assert (g2.rooms, g2.posts, g2.replies, g2.repliers) == (["g2"], 1, 1, 1)


def test_the_overview_asks_the_same_few_queries_for_3_groups_and_for_126(fleet, tmp_path):
    """No query per group: the page's statements do not grow with the number of groups."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    small = f"sqlite:///{tmp_path}/small.db"
    c_small = _app(small)
    with Session(make_engine(small)) as session:
        session.add_all([Room(id=f"s{i}", account="a1", topic=f"小群{i}") for i in range(3)])
        session.commit()
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def asked(client: TestClient, path: str) -> int:
        statements.clear()
        event.listen(Engine, "before_cursor_execute", count)
        try:
            assert client.get(path).status_code == 200
        finally:
            event.remove(Engine, "before_cursor_execute", count)
        return len(statements)

    _, c, _ = fleet
    for path in ("/", "/?page=2&sort=-messages", "/guard"):
        asked(c, path), asked(c_small, path)  # warm: table lists are looked up once
        assert asked(c, path) == asked(c_small, path) <= 12, path
