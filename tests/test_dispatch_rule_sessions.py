"""A rule that reads the database and says no leaves no connection checked out (no handler commits it)."""

from __future__ import annotations

import gc

from sqlalchemy import text

from bot import Context, Plugin
from bot.testing import BotHarness


def picky() -> Plugin:
    plugin = Plugin("picky")

    def reads_and_refuses(ctx: Context) -> bool:
        ctx.db.execute(text("SELECT 1"))
        return False

    @plugin.on_message(rule=reads_and_refuses).handle
    async def never(ctx: Context) -> None:
        raise AssertionError("the rule said no")

    return plugin


async def test_sessions_opened_by_rules_are_closed_without_waiting_for_the_garbage_collector(project):
    gc.disable()  # a session left open is only given back by a collection; the pool has 15 connections
    try:
        async with BotHarness(project, plugins=[picky()]) as bot:
            bot.room("g1", members={"u1": "Alice"})
            for n in range(20):
                await bot.say("g1", "u1", f"闲聊 {n}")
            assert bot.runtime.engine.pool.checkedout() == 0
    finally:
        gc.enable()
