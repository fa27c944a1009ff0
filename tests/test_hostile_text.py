"""Text PostgreSQL refuses (NUL, lone surrogates) is cleaned where events enter the runtime, and a durable
timer whose handler fails is retried with back-off, then marked failed and logged: never dropped silently."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlmodel import select

from bot import Context, Plugin
from bot._events import MemberRef, RoomSnapshot
from bot._models import Member, ScheduledTask, TaskFailure
from bot._sanitize import clean_text, room_roles
from bot._tasks import FAILED_RETRIES
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parent.parent


def test_clean_text_drops_nul_and_replaces_lone_surrogates():
    assert clean_text("Al\x00ice") == "Alice"
    assert clean_text("a\ud800b").encode("utf-8") == b"a?b"
    assert clean_text("签到 🎉") == "签到 🎉"


def test_a_role_refresh_reads_cleaned_admins_and_owner_of_each_room():
    snapshot = RoomSnapshot(id="g\x001", topic="群", members=(MemberRef("a\x00dm", "管理员"),),
                            admin_ids=("a\x00dm",), owner_id="o\ud800wner")
    roles = room_roles([snapshot, RoomSnapshot(id="g2", topic="二群", members=(), admin_ids=())])
    assert roles == {"g1": {"adm", "o?wner"}, "g2": set()}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


async def test_nul_in_nicknames_and_messages_breaks_nothing(db_url):
    async with BotHarness(REPO, plugins=["points"], db_url=db_url) as bot:
        bot.sim.adapter.add_room("g1", "群", members=[])
        await bot.restart(crash=False)                        # the room snapshot comes in through the adapter
        await bot.join("g1", {"u1": "Al\x00ice", "u2": "B\ud800ob"})
        await bot.say("g1", "u1", "签到")
        await bot.say("g1", "u2", "签到")
        await bot.rename("g1", "u2", "小\x00B")
        bot.pop()
        await bot.say("g1", "u1", "排行榜")
        ranking = bot.pop_text()
        assert "Alice" in ranking and "小B" in ranking
        await bot.say("g1", "u1", "兑换 帆\x00布")
        assert "帆布" in bot.pop_text()
        with bot.db() as db:
            assert db.get(Member, "u1").name == "Alice"


async def test_nul_in_a_winners_nickname_does_not_keep_a_draw_open_on_postgres(postgres_url):
    async with BotHarness(REPO, plugins=["lottery"], db_url=postgres_url) as bot:
        bot.room("g1", "抽奖群", members={"owner1": "群主", "u1": "Alice"}, admins=["owner1"])
        await bot.say("g1", "owner1", "开始抽奖 奖品=口红 名额=1 口令=抽 时长=10m")
        await bot.say("g1", "u1", "抽")
        await bot.rename("g1", "u1", "小\x00A")              # the only entrant, so the winner
        bot.pop()
        await bot.advance("11m")
        announcement = bot.pop()
        assert len(announcement) == 1 and "小A" in announcement[0].text
        with bot.db() as db:
            assert db.exec(select(ScheduledTask)).one().status == "done"


def _flaky_plugin(fail_times: int) -> tuple[Plugin, list[int]]:
    plugin = Plugin(name="flaky")
    runs: list[int] = []

    @plugin.on_fullmatch("定时").handle
    async def arm(ctx: Context) -> None:
        ctx.schedule("due", delay=__import__("datetime").timedelta(minutes=1), key="once")

    @plugin.timer("due")
    async def due(ctx: Context) -> None:
        runs.append(1)
        if len(runs) <= fail_times:
            raise RuntimeError(f"boom {len(runs)}")
        await ctx.say("开奖了")

    return plugin, runs


async def test_a_failing_timer_is_retried_with_back_off_until_it_succeeds():
    plugin, runs = _flaky_plugin(fail_times=2)
    async with BotHarness(plugins=[plugin], raise_errors=False) as bot:  # the failures are the point here
        bot.room("g1", members=["u1"])
        await bot.say("g1", "u1", "定时")
        await bot.advance("1m")
        assert len(runs) == 1 and bot.pop_text() == ""
        await bot.advance(FAILED_RETRIES[0])
        assert len(runs) == 2
        await bot.advance(FAILED_RETRIES[1])
        assert len(runs) == 3 and bot.pop_text() == "开奖了"
        with bot.db() as db:
            assert db.exec(select(ScheduledTask)).one().status == "done"
            assert db.exec(select(TaskFailure)).one().attempts == 2


async def test_a_timer_that_keeps_failing_is_marked_failed_and_logged_at_error(caplog):
    plugin, runs = _flaky_plugin(fail_times=100)
    async with BotHarness(plugins=[plugin]) as bot:
        bot.room("g1", members=["u1"])
        await bot.say("g1", "u1", "定时")
        with caplog.at_level(logging.WARNING, logger="qunbot.tasks"):
            await bot.advance("1m")
            for wait in FAILED_RETRIES:
                await bot.advance(wait)
            await bot.advance("1d")
        assert len(runs) == len(FAILED_RETRIES) + 1
        with bot.db() as db:
            assert db.exec(select(ScheduledTask)).one().status == "failed"
            failure = db.exec(select(TaskFailure)).one()
        assert failure.attempts == len(FAILED_RETRIES) + 1 and "boom" in failure.last_error
        given_up = [r for r in caplog.records if r.levelno == logging.ERROR and "given up" in r.getMessage()]
        assert len(given_up) == 1 and "flaky/due" in given_up[0].getMessage()
        page = _dashboard_overview(bot.sim.db_url, bot.now)
    assert "1 个定时任务多次重试后仍失败" in page and "boom 5" in page and "flaky" in page


def _dashboard_overview(url: str, now) -> str:
    from starlette.testclient import TestClient

    from bot._config import load_config
    from bot.dashboard import build_app

    client = TestClient(build_app(REPO, load_config(REPO), db_url=url, now=lambda: now,
                                  environ={"QUNBOT_DASHBOARD_PASSWORD": "pw-for-test"}))
    client.post("/login", data={"password": "pw-for-test"}, follow_redirects=False)
    return client.get("/").text
