"""Admin rights follow WeChat: leaving ends them at once, and a demotion in WeChat reaches the bot by itself."""

from __future__ import annotations

from pathlib import Path

from bot.testing import BotHarness

REPO = Path(__file__).resolve().parent.parent
MEMBERS = {"adm": "管理员甲", "u1": "Alice"}


def _balance(bot: BotHarness, member: str) -> int:
    with bot.db() as db:
        return bot.runtime.plugins["points"].service.balance(db, "g1", member)


async def test_an_admin_who_left_and_came_back_as_a_member_has_no_admin_rights():
    async with BotHarness(REPO, plugins=["points"]) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["adm"])
        await bot.say("g1", "adm", "调整积分 @Alice +5 奖励", mentions=["u1"])
        assert _balance(bot, "u1") == 5
        await bot.leave("g1", "adm")
        await bot.join("g1", {"adm": "管理员甲"}, inviter="u1")
        bot.pop()
        await bot.say("g1", "adm", "调整积分 @Alice +500 奖励", mentions=["u1"])
        assert "管理员" in bot.pop_text()
        assert _balance(bot, "u1") == 5
        assert not bot.runtime.members.is_admin("g1", "adm")


async def test_roles_are_read_again_from_wechat_periodically():
    async with BotHarness(REPO, plugins=["points"]) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["adm"])
        bot.sim.adapter.sim_rooms["g1"].admins.discard("adm")   # demoted in WeChat, no event for it
        bot.sim.adapter.sim_rooms["g1"].admins.add("u1")           # and Alice promoted
        await bot.advance("11m")
        await bot.say("g1", "adm", "调整积分 @Alice +500 奖励", mentions=["u1"])
        assert "管理员" in bot.pop_text() and _balance(bot, "u1") == 0
        await bot.say("g1", "u1", "调整积分 @管理员甲 +7 奖励", mentions=["adm"])
        assert _balance(bot, "adm") == 7
