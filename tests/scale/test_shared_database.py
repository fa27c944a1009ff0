"""Two bots on one PostgreSQL, even both running the same account (as in a split brain before a lease
lapses): plugin timers and SOP posts still happen once, because the database claims them."""

from __future__ import annotations

import textwrap
from datetime import timedelta

from sqlmodel import select

from bot import Context, Plugin
from bot._models import OutboxMessage
from bot.testing import BotHarness


def reminder(runs: list[str]) -> Plugin:
    plugin = Plugin("remind")

    @plugin.on_fullmatch("提醒我").handle
    async def ask(ctx: Context) -> None:
        ctx.schedule("ring", delay=timedelta(minutes=5), key=f"ring:{ctx.member_id}")

    @plugin.timer("ring")
    async def ring(ctx: Context) -> None:
        runs.append(ctx.member_id or "")
        await ctx.say("时间到")

    return plugin


async def test_a_timer_armed_in_two_processes_fires_once(project, pg_url):
    runs: list[str] = []
    async with BotHarness(project, plugins=[reminder(runs)], db_url=pg_url) as one:
        one.room("g1", members={"u1": "Alice"})
        await one.say("g1", "u1", "提醒我")
        async with BotHarness(project, plugins=[reminder(runs)], db_url=pg_url) as two:  # arms the pending timer
            two.room("g1", members={"u1": "Alice"})
            await one.advance("10m")
            await two.advance("10m")
            await one.drain()
            await two.drain()
            sent = [m.text for m in one.sent + two.sent]
            with one.db() as session:
                rows = session.exec(select(OutboxMessage.status)).all()
    assert runs == ["u1"]
    assert sent == ["时间到"]
    assert rows == ["sent"]


async def test_an_sop_step_fired_by_two_processes_posts_once_per_room(tmp_path, pg_url):
    (tmp_path / "scripts_templates").mkdir()
    (tmp_path / "sop").mkdir()
    (tmp_path / "sop" / "daily.yaml").write_text(textwrap.dedent("""
        name: 每日
        targets:
          topics: ["会员*"]
        steps:
          - id: morning
            at: "09:30"
            text: 早上好
    """), encoding="utf-8")
    rooms = [f"r{n}" for n in range(20)]
    async with BotHarness(tmp_path, plugins=[], db_url=pg_url) as one, \
            BotHarness(tmp_path, plugins=[], db_url=pg_url) as two:
        for bot in (one, two):
            for room in rooms:
                bot.room(room, f"会员{room}", members={"u1": "Alice"})
        await one.advance("1h")
        await two.advance("1h")
        await one.drain()
        await two.drain()
        posted = sorted(m.room_id for m in one.sent + two.sent)
    assert posted == sorted(rooms)
