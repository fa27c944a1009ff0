"""Durable plugin timers and SOP-style actions on the virtual clock."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from sqlmodel import select

from bot import Context, Plugin
from bot._models import ScheduledTask
from bot.testing import BotHarness


def reminder() -> tuple[Plugin, list[tuple[str, bool]]]:
    fired: list[tuple[str, bool]] = []
    plugin = Plugin("remind")

    @plugin.on_command("提醒我").handle
    async def ask(ctx: Context) -> None:
        ctx.schedule("ping", delay=timedelta(hours=2), key=f"ping:{ctx.member_id}", data={"what": ctx.args})
        await ctx.reply("好的，两小时后提醒你")

    @plugin.timer("ping")
    async def ping(ctx: Context) -> None:
        assert ctx.task is not None
        fired.append((str(ctx.task.data["what"]), ctx.task.late))
        await ctx.reply(f"该{ctx.task.data['what']}啦")

    return plugin, fired


async def test_timer_fires_once_at_its_time_in_the_right_room(project):
    plugin, fired = reminder()
    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        start = bot.now
        await bot.say("g1", "u1", "提醒我 喝水")
        await bot.say("g1", "u1", "提醒我 喝茶")  # same key: still one timer
        bot.pop()
        await bot.advance("1h59m")
        assert fired == []
        await bot.advance("2m")
        sent = bot.pop()
    assert fired == [("喝水", False)]
    assert [(m.room_id, m.text) for m in sent] == [("g1", "@Alice 该喝水啦")]
    assert sent[0].at - start == timedelta(hours=2)


async def test_timer_due_while_down_fires_after_restart_marked_late(project):
    plugin, fired = reminder()
    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "提醒我 喝水")
        await bot.sim.crash_and_restart()
        await bot.settle()
        assert fired == [("喝水", False)]  # not due yet at restart: fires on time
    plugin2, fired2 = reminder()
    async with BotHarness(project, plugins=[plugin2]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "提醒我 喝水")
        runtime = bot.runtime
        for outbox in runtime._outboxes.values():
            outbox.stop()
        runtime.tasks.disarm_all()
        bot.sim.clock._heap.clear()
        await bot.advance("3h")  # the bot is "down": nothing armed
        assert fired2 == []
        await bot.sim.start()
        await bot.settle()
        with bot.db() as session:
            statuses = [t.status for t in session.exec(select(ScheduledTask))]
    assert fired2 == [("喝水", True)]
    assert statuses == ["done"]


async def test_a_failing_timer_is_marked_failed_and_rolls_back(project):
    plugin = Plugin("bad")

    @plugin.on_fullmatch("go").handle
    async def go(ctx: Context) -> None:
        ctx.schedule("boom", delay=timedelta(minutes=1), key="k")

    @plugin.timer("boom")
    async def boom(ctx: Context) -> None:
        await ctx.say("never")
        raise RuntimeError("broken timer")

    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.say("g1", "u1", "go")
        await bot.settle()
        with bot.db() as session:
            task = session.exec(select(ScheduledTask)).one()
        assert bot.sent == []
    assert task.status == "failed"


async def test_actions_take_validated_params(project):
    class Params(BaseModel):
        prize: str
        winners: int = 1

    plugin = Plugin("act")
    got: list[tuple[str | None, str, int]] = []

    @plugin.action("start", params=Params)
    async def start(ctx: Context, params: Params) -> None:
        got.append((ctx.room_id, params.prize, params.winners))
        await ctx.say(f"开始抽 {params.prize}")

    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "A"})
        ok = await bot.runtime.invoke_action(bot.sim.account, "act", "start", room_id="g1",
                                             params={"prize": "口红", "winners": 2}, key="sop:1")
        await bot.drain()
        assert ok
        assert got == [("g1", "口红", 2)]
        assert [m.text for m in bot.pop()] == ["开始抽 口红"]
        try:
            await bot.runtime.invoke_action(bot.sim.account, "act", "start", room_id="g1",
                                            params={"winners": 2}, key="sop:2")
        except Exception as err:
            assert "prize" in str(err)
        else:
            raise AssertionError("missing params must be rejected")
