"""The adapter's connection drops: the account pauses, reconnects with back-off, then sends what is
still worth sending; messages past their deadline are skipped. Logged either way."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlmodel import select

from bot import Context, Plugin
from bot._models import OutboxMessage
from bot.testing import BotHarness


def poster() -> Plugin:
    plugin = Plugin("poster")

    @plugin.on_command("发").handle
    async def post(ctx: Context) -> None:
        for n in range(3):
            await ctx.say(f"回复{n}")  # no deadline: goes out whenever the account is back
        await ctx.say("限时提醒", expires_at=ctx.now + timedelta(seconds=20))  # like an SOP post's grace

    return plugin


async def test_a_dropped_connection_reconnects_with_back_off_and_sends_the_queue_afterwards(project, caplog):
    caplog.set_level(logging.INFO)
    async with BotHarness(project, plugins=[poster()], settings={"pacing": {"reconnect_min": 2.0}}) as bot:
        bot.room("g1", members={"u1": "Alice"})
        bot.sim.adapter.drop_connection(failing_reconnects=3)
        started = bot.now
        await bot.say("g1", "u1", "发", drain=False)
        await bot.settle()
        sent = bot.pop()
        with bot.db() as session:
            rows = {r.text: r for r in session.exec(select(OutboxMessage))}
    assert [m.text for m in sent] == ["回复0", "回复1", "回复2"]
    # attempts after 2 s, 4 s, 8 s fail; the fourth, 16 s later, connects: 30 s after the drop
    assert sent[0].at - started == timedelta(seconds=2 + 4 + 8 + 16)
    assert rows["限时提醒"].status == "skipped" and "late" in rows["限时提醒"].last_error
    assert all(rows[f"回复{n}"].status == "sent" and rows[f"回复{n}"].attempts == 1 for n in range(3))
    messages = [r.getMessage() for r in caplog.records]
    assert any("connection lost" in m for m in messages)
    assert sum("reconnect attempt" in m and "failed" in m for m in messages) == 3
    assert any("reconnected after 30s (4 attempt(s))" in m for m in messages)
    assert any("skipped" in m and "late" in m for m in messages)


async def test_back_off_is_capped(project, caplog):
    caplog.set_level(logging.WARNING)
    pacing = {"reconnect_min": 10.0, "reconnect_max": 30.0}
    async with BotHarness(project, plugins=[poster()], settings={"pacing": pacing}) as bot:
        bot.room("g1", members={"u1": "Alice"})
        bot.sim.adapter.drop_connection(failing_reconnects=5)
        started = bot.now
        await bot.say("g1", "u1", "发", drain=False)
        await bot.settle()
        first = bot.pop()[0]
    assert first.at - started == timedelta(seconds=10 + 20 + 30 + 30 + 30 + 30)
