"""Rows a crash left `sending` are settled by asking the platform (`Adapter.was_sent`), so a restart or a
take-over neither re-sends what went out nor drops what did not; adapters that cannot tell keep `uncertain`."""

from __future__ import annotations

import logging

from sqlmodel import select

from bot import Context, Plugin
from bot._models import OutboxMessage
from bot.testing import BotHarness


def broadcaster() -> Plugin:
    plugin = Plugin("bc")

    @plugin.on_fullmatch("发").handle
    async def send(ctx: Context) -> None:
        for n in range(3):
            await ctx.say(f"第{n}条", key=f"bc:{n}")

    return plugin


def mark_sending(bot: BotHarness, *keys: str) -> None:
    with bot.db() as session:
        for row in session.exec(select(OutboxMessage).where(OutboxMessage.key.in_(keys))):
            row.status, row.attempts = "sending", 1
            session.add(row)
        session.commit()


async def test_a_crash_mid_send_is_settled_by_asking_wechat(project, caplog):
    caplog.set_level(logging.WARNING)
    async with BotHarness(project, plugins=[broadcaster()]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        bot.sim.adapter.knows_history = True
        await bot.say("g1", "u1", "发", drain=False)
        await bot.drain()
        assert [m.text for m in bot.pop()] == ["第0条", "第1条", "第2条"]
        await bot.say("g1", "u1", "发", drain=False)  # same keys: nothing new
        # Died twice mid-send: 第1条 reached WeChat before the crash; 第3条 (a new one) did not.
        with bot.db() as session:
            session.add(OutboxMessage(account=bot.sim.account, key="bc:3", room_id="g1", text="第3条",
                                      created_at=bot.now, not_before=bot.now, status="sending", attempts=1))
            session.commit()
        mark_sending(bot, "bc:1")
        await bot.restart(crash=True)
        await bot.settle()
        texts = [m.text for m in bot.pop()]
        with bot.db() as session:
            rows = {r.key: r.status for r in session.exec(select(OutboxMessage))}
    assert texts == ["第3条"]  # sent once now; 第1条 not again
    assert rows == {"bc:0": "sent", "bc:1": "sent", "bc:2": "sent", "bc:3": "sent"}
    messages = [r.getMessage() for r in caplog.records]
    assert any("bc:1" in m and "went out" in m for m in messages)
    assert any("bc:3" in m and "did not go out" in m for m in messages)


async def test_an_adapter_that_cannot_tell_leaves_the_row_uncertain(project):
    async with BotHarness(project, plugins=[broadcaster()]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "发", drain=False)
        mark_sending(bot, "bc:0")
        await bot.restart(crash=True)
        await bot.settle()
        texts = [m.text for m in bot.pop()]
        with bot.db() as session:
            rows = {r.key: r.status for r in session.exec(select(OutboxMessage))}
    assert texts == ["第1条", "第2条"]
    assert rows["bc:0"] == "uncertain"
