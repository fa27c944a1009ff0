"""The database is unreachable for a while (not a momentary cut): messages that arrive meanwhile are held
and answered once it is back, in order per room, exactly once; an SOP post due meanwhile goes out once
when it is back, or is skipped and logged if that is beyond its grace.

Real PostgreSQL: the throwaway database stops accepting connections and every connection to it is cut,
as a server restart does, then accepts them again. Time is the harness's virtual clock.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections import Counter
from pathlib import Path

import psycopg
from sqlalchemy import event, text
from sqlmodel import select

from bot import Context, Plugin
from bot._clock import RealClock
from bot._config import parse_config
from bot._events import MemberRef
from bot._models import Membership, OutboxMessage
from bot._runtime import Runtime
from bot.adapters.simulated import SimulatedAdapter
from bot.sop._models import SopDelivery
from bot.testing import NO_PACING, BotHarness


class Outage:
    """Makes one database unreachable (refuses connections, cuts those open) and reachable again."""

    def __init__(self, db_url: str) -> None:
        self.name = db_url.rsplit("/", 1)[1]
        self.admin_url = db_url.rsplit("/", 1)[0] + "/test"
        self.down = False

    def begin(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                          "AND pid <> pg_backend_pid()", (self.name,))
        self.down = True

    def end(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
        self.down = False


def plugins(outage: Outage, runs: Counter[tuple[str, str]]) -> list[Plugin]:
    """`echo` answers every room message; `audit` runs after it, and the message 断 takes the database away
    just before `audit` touches it: that event is half run (echo committed) when the outage starts.
    Runs are counted per (plugin, message text)."""
    echo, audit = Plugin("echo"), Plugin("audit")

    @echo.on_message(priority=10).handle
    async def answer(ctx: Context) -> None:
        runs[("echo", ctx.text)] += 1
        ctx.db.execute(text("SELECT 1"))
        await ctx.reply(f"收到 {ctx.text}")

    @audit.on_message(priority=20).handle
    async def note(ctx: Context) -> None:
        if ctx.text == "断" and not outage.down and runs[("audit", ctx.text)] == 0:
            outage.begin()
        runs[("audit", ctx.text)] += 1
        ctx.db.execute(text("SELECT 1"))
        await ctx.say(f"记录 {ctx.text}", key=f"audit:{ctx.event.id}")

    return [echo, audit]


async def test_messages_arriving_while_the_database_is_unreachable_are_answered_once_in_order_after(
        project, pg_url, caplog):
    caplog.set_level(logging.WARNING)
    outage, runs = Outage(pg_url), Counter()
    try:
        async with BotHarness(project, plugins=plugins(outage, runs), db_url=pg_url) as bot:
            bot.room("g1", members={"u1": "Alice", "u2": "Bob"})
            bot.room("g2", members={"u3": "Carol"})
            await bot.say("g1", "u1", "早")
            assert [m.text for m in bot.pop()] == ["@Alice 收到 早", "记录 早"]

            await bot.say("g1", "u1", "断", drain=False)          # echo commits, then the database goes away
            assert outage.down and bot.runtime.held_count() == 1
            said = [("g2", "u3", "一"), ("g1", "u2", "二"), ("g1", "u1", "三"), ("g2", "u3", "四"),
                    ("g1", "u2", "五")]
            for room, member, words in said:
                await bot.say(room, member, words, drain=False)
            await bot.advance("20s")                                # retries at +1 s, +3 s, +7 s, +15 s: all fail
            assert bot.runtime.held_count() == 6
            assert bot.pop() == []

            outage.end()
            await bot.advance("31s")                                # the next retry (+31 s) finds it back
            assert bot.runtime.held_count() == 0
            await bot.drain()
            sent = bot.pop()
            with bot.db() as session:
                statuses = Counter(r.status for r in session.exec(select(OutboxMessage)))
    finally:
        if outage.down:
            outage.end()

    by_room: dict[str, list[str]] = {}
    for message in sent:
        by_room.setdefault(message.room_id or "", []).append(message.text)
    assert by_room == {
        "g1": ["@Alice 收到 断", "记录 断", "@Bob 收到 二", "记录 二", "@Alice 收到 三", "记录 三",
               "@Bob 收到 五", "记录 五"],
        "g2": ["@Carol 收到 一", "记录 一", "@Carol 收到 四", "记录 四"],
    }
    assert statuses == {"sent": 14}
    # The half-run event: echo had committed before the outage and is not run again; audit was cut by the
    # outage and ran again after it (its message went out once, above).
    assert runs.pop(("echo", "断")) == 1 and runs.pop(("audit", "断")) >= 2
    assert set(runs.values()) == {1} and len(runs) == 12
    messages = [r.getMessage() for r in caplog.records]
    assert sum("database unreachable" in m and "holding incoming events" in m for m in messages) == 1
    assert sum("database answers again" in m and "ran the 6 held event(s)" in m for m in messages) == 1


def sop_project(root: Path) -> Path:
    (root / "sop").mkdir()
    (root / "qunbot.toml").write_text('[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    (root / "sop" / "daily.yaml").write_text(textwrap.dedent("""\
        targets: {rooms: [g1, g2]}
        grace: 10m
        steps:
          - {id: morning, at: "09:00", text: 早安}
          - {id: flash, at: "09:00", grace: 1m, text: 秒杀开始}
    """), encoding="utf-8")
    return root


async def test_an_sop_post_due_while_the_database_is_unreachable_goes_out_once_after_or_is_skipped_late(
        project, pg_url, caplog):
    caplog.set_level(logging.INFO)
    outage = Outage(pg_url)
    root = sop_project(project)
    try:
        async with BotHarness(root, plugins=[], db_url=pg_url, start="2026-11-23T08:59:30+08:00") as bot:
            bot.room("g1", "一群", members={"u1": "Alice"})
            bot.room("g2", "二群", members={"u2": "Bob"})
            await bot.advance("20s")                                # 08:59:50
            outage.begin()
            await bot.advance("70s")                                # 09:01:00: both steps came due at 09:00
            assert bot.pop() == []
            outage.end()
            await bot.advance("2m")                                 # the retry at 09:01:01 finds it back
            await bot.drain()
            await bot.advance("1h")                                 # nothing more, nothing twice
            sent = [(m.room_id, m.text, m.at.strftime("%H:%M:%S")) for m in bot.pop()]
            with bot.db() as session:
                ledger = {(r.step, r.room_id): r.status for r in session.exec(select(SopDelivery))}
    finally:
        if outage.down:
            outage.end()

    assert sorted(sent) == [("g1", "早安", "09:01:01"), ("g2", "早安", "09:01:01")]
    assert ledger == {("morning", "g1"): "queued", ("morning", "g2"): "queued",
                      ("flash", "g1"): "skipped", ("flash", "g2"): "skipped"}
    log_text = caplog.text
    assert "SOP daily.morning due at 09:00: the database is unreachable" in log_text
    assert "SOP daily.morning due at 09:00: handled after the database came back" in log_text
    assert "SOP daily.flash for room g1" in log_text and "beyond its grace of 1m" in log_text


async def test_a_newcomer_whose_first_message_finds_the_database_away_is_recorded_once_it_is_back(project, pg_url):
    outage, runs = Outage(pg_url), Counter()
    try:
        async with BotHarness(project, plugins=plugins(outage, runs), db_url=pg_url) as bot:
            bot.room("g1", members={"u1": "Alice"})

            def go_away_at_commit(_connection) -> None:  # the worst moment: the rows are written, not committed
                if not outage.down:
                    outage.begin()

            event.listen(bot.runtime.engine, "commit", go_away_at_commit)
            await bot.say("g1", "u9", "新人报到", drain=False)     # recording the unknown speaker fails
            event.remove(bot.runtime.engine, "commit", go_away_at_commit)
            await bot.advance("10s")
            assert bot.runtime.held_count() == 1 and runs == {}
            outage.end()
            await bot.advance("10s")
            await bot.drain()
            texts = [m.text for m in bot.pop()]
            with bot.db() as session:
                membership = session.get(Membership, ("g1", "u9"))
    finally:
        if outage.down:
            outage.end()
    assert texts == ["@u9 收到 新人报到", "记录 新人报到"]
    assert membership is not None and membership.last_spoke_at is not None


async def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_on_the_real_clock_an_outage_of_seconds_holds_messages_and_answers_them_once_after(
        project, pg_url, caplog):
    """The same, in real time: the database refuses connections for several seconds while messages arrive."""
    caplog.set_level(logging.DEBUG, "qunbot.runtime")
    config = parse_config({"bot": {"timezone": "Asia/Shanghai"}, "pacing": NO_PACING})
    clock = RealClock(config.bot.tz)
    adapter = SimulatedAdapter("default", clock)
    adapter.add_room("g1", "一群", members=[MemberRef("u1", "Alice")])
    adapter.add_room("g2", "二群", members=[MemberRef("u2", "Bob")])
    outage, runs = Outage(pg_url), Counter()
    runtime = Runtime(project, config, clock=clock, adapters={"default": adapter}, db_url=pg_url,
                      plugins=plugins(outage, runs))
    await runtime.start()
    try:
        outage.begin()
        began = clock.now()
        for n in range(6):
            await adapter.say(f"g{n % 2 + 1}", f"u{n % 2 + 1}", f"第{n}条")
        assert runtime.held_count() == 6
        failed_retries = lambda: sum("still unreachable" in r.getMessage() for r in caplog.records)  # noqa: E731
        await wait_for(lambda: failed_retries() >= 2, timeout=10, what="two failed retries (at +1 s and +3 s)")
        assert adapter.sent == []
        outage.end()
        down_for = (clock.now() - began).total_seconds()
        await wait_for(lambda: len(adapter.sent) == 12, timeout=20, what="12 messages sent")
    finally:
        if outage.down:
            outage.end()
        await runtime.stop()
        await clock.aclose()
    assert down_for >= 3
    by_room: dict[str, list[str]] = {}
    for message in adapter.sent:
        by_room.setdefault(message.room_id or "", []).append(message.text)
    assert by_room == {"g1": [f"{who}第{n}条" for n in (0, 2, 4) for who in ("@Alice 收到 ", "记录 ")],
                       "g2": [f"{who}第{n}条" for n in (1, 3, 5) for who in ("@Bob 收到 ", "记录 ")]}
    # Only the first message met the outage: in its first handler (those runs were rolled back) or already in
    # the look-up of which handlers a redelivery of it would skip (then the handler had not run); none re-ran.
    assert runs.pop(("echo", "第0条")) >= 1
    assert set(runs.values()) == {1} and len(runs) == 11


async def test_held_events_are_bounded_and_those_beyond_the_bound_are_dropped_and_logged(
        project, pg_url, caplog, monkeypatch):
    monkeypatch.setattr("bot._runtime.HOLD_LIMIT", 3)
    caplog.set_level(logging.WARNING)
    outage, runs = Outage(pg_url), Counter()
    try:
        async with BotHarness(project, plugins=plugins(outage, runs), db_url=pg_url) as bot:
            bot.room("g1", members={"u1": "Alice"})
            outage.begin()
            for n in range(5):
                await bot.say("g1", "u1", f"第{n}条", drain=False)
            assert bot.runtime.held_count() == 3
            outage.end()
            await bot.advance("2s")
            await bot.drain()
            texts = [m.text for m in bot.pop()]
    finally:
        if outage.down:
            outage.end()
    assert texts == [f"{who}第{n}条" for n in range(3) for who in ("@Alice 收到 ", "记录 ")]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropping new ones" in m for m in messages) == 1
    assert any("ran the 3 held event(s) in arrival order; 2 dropped beyond the limit" in m for m in messages)
