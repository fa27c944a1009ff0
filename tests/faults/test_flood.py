"""A flood of 10,000 messages in a minute in one room: every message is handled, memory stays bounded,
and one member spamming a command gets a bounded number of replies (the rest are ignored quietly)."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from datetime import timedelta

from bot import Context, Plugin
from bot.testing import BotHarness

FLOOD = 10_000
LIMIT = 5
STEP = timedelta(seconds=60 / FLOOD)  # 10,000 messages in one minute of bot time


def counting() -> tuple[Plugin, list[str]]:
    seen: list[str] = []
    plugin = Plugin("counting")

    @plugin.on_message().handle
    async def count(ctx: Context) -> None:  # passive plugins still see every message
        seen.append(ctx.member_id or "")

    @plugin.on_fullmatch("菜单").handle
    async def menu(ctx: Context) -> None:
        await ctx.reply("菜单：签到 / 积分")

    return plugin, seen


async def test_ten_thousand_messages_in_a_minute_with_one_member_spamming_a_command(project, caplog):
    caplog.set_level(logging.INFO, logger="qunbot.limits")
    plugin, seen = counting()
    settings = {"bot": {"command_limit": LIMIT, "command_window": 60}}
    members = {f"m{i}": f"成员{i}" for i in range(100)}
    async with BotHarness(project, plugins=[plugin], settings=settings) as bot:
        bot.room("g1", members={**members, "spam": "刷屏的人"})
        tracemalloc.start()
        for n in range(FLOOD):
            if n % 10 == 0:
                await bot.say("g1", "spam", "菜单", drain=False)  # 1,000 times in the minute
            elif n % 997 == 0:
                await bot.say("g1", f"m{n % 100}", "菜单", drain=False)  # ordinary members ask once
            else:
                await bot.say("g1", f"m{n % 100}", f"聊天 {n}", drain=False)
            if n == FLOOD // 5:
                early, _ = tracemalloc.get_traced_memory()
            await bot.advance(STEP)
            await asyncio.sleep(0)  # messages arrive from the network: the event loop turns between them
        late, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        await bot.drain()
        replies = bot.pop()
        limiter = bot.runtime.command_limit.tracked()
    assert len(seen) == FLOOD  # every message reached the passive plugin
    to_spammer = [m for m in replies if m.mentions == ("spam",)]
    assert len(to_spammer) == LIMIT  # 1,000 commands in the minute, LIMIT answers
    others = [m for m in replies if m.mentions != ("spam",)]
    assert len(others) == len([n for n in range(FLOOD) if n % 10 and n % 997 == 0])  # nobody else was limited
    # memory: the last 8,000 messages add no more than a small fixed amount over the first 2,000
    assert late - early < 400_000, (early, late)  # under 50 bytes per message: nothing kept per message
    assert limiter <= 101
    notes = [r.getMessage() for r in caplog.records if "ignoring their commands" in r.getMessage()]
    assert len(notes) == 1 and "spam" in notes[0]  # logged once per window, not once per message


async def test_the_limit_window_slides_and_operators_are_not_limited(project):
    plugin, _ = counting()
    settings = {"bot": {"command_limit": 2, "command_window": 60, "operators": ["boss"]}}
    async with BotHarness(project, plugins=[plugin], settings=settings) as bot:
        bot.room("g1", members={"u1": "Alice", "boss": "老板"})
        for _ in range(4):
            await bot.say("g1", "u1", "菜单")
            await bot.say("g1", "boss", "菜单")
        assert [m.mentions for m in bot.pop()] == [("u1",), ("boss",), ("u1",), ("boss",), ("boss",), ("boss",)]
        await bot.advance("61s")
        await bot.say("g1", "u1", "菜单")
        assert [m.mentions for m in bot.pop()] == [("u1",)]


async def test_zero_switches_the_limit_off(project):
    plugin, _ = counting()
    async with BotHarness(project, plugins=[plugin], settings={"bot": {"command_limit": 0}}) as bot:
        bot.room("g1", members={"u1": "Alice"})
        for _ in range(30):
            await bot.say("g1", "u1", "菜单", drain=False)
        await bot.drain()
        assert len(bot.pop()) == 30
