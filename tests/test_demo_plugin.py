"""The documented harness example: drive the demo plugin in a simulated group."""

from __future__ import annotations

from bot.testing import BotHarness


async def test_menu_lists_enabled_plugins(repo):
    async with BotHarness(repo, plugins=["demo"]) as bot:
        bot.room("g1", "演示群", members={"u1": "Alice"})
        await bot.say("g1", "u1", "菜单")
        [message] = bot.pop()
    assert message.room_id == "g1" and message.mentions == ("u1",)
    assert message.text.startswith("@Alice 小完子能做这些：")
    assert "菜单与 @ 应答" in message.text


async def test_mention_fallback_only_when_mentioned(repo):
    async with BotHarness(repo, plugins=["demo"]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "大家好")
        assert bot.pop() == []
        await bot.mention_bot("g1", "u1", "大家好")
        assert bot.pop_text() == "@Alice 我在呢～ 发送「菜单」看看我能做什么"


async def test_private_ping(repo):
    async with BotHarness(repo, plugins=["demo"]) as bot:
        await bot.private("u5", "ping")
        [message] = bot.pop()
    assert (message.to, message.room_id, message.text) == ("u5", None, "pong")


async def test_menu_leaves_out_plugins_switched_off_in_the_room(repo):
    settings = {"rooms": {"g2": {"plugins_disabled": ["points"]}}}
    async with BotHarness(repo, plugins=["demo", "points"], settings=settings) as bot:
        bot.room("g1", members={"u1": "Alice"})
        bot.room("g2", members={"u1": "Alice"})
        await bot.say("g1", "u1", "菜单")
        await bot.say("g2", "u1", "菜单")
        in_g1, in_g2 = bot.pop()
    assert "签到积分" in in_g1.text and "签到积分" not in in_g2.text
