"""Every admin command of every plugin, sent by a plain member: a denial, and nothing else changes.

The commands are read from the loaded plugins (any matcher whose permission is not everyone's), so an admin
command added later is in the matrix without editing this file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from bot.testing import BotHarness

REPO = Path(__file__).resolve().parent.parent
PLUGINS = ["demo", "welcome", "icebreak", "points", "quiz", "lottery", "poll", "insight"]
MEMBERS = {"adm": "管理员甲", "u1": "Alice", "u2": "Bob"}
SETTINGS = {"bot": {"command_limit": 0}}
"""No per-member command limit: the matrix sends many commands in a row."""
DENIED = "这个指令只有群管理员可以使用哦～"
ARGS = {
    "调整积分": " @Alice +50 奖励", "积分明细": " @Alice", "已发放": " 1",
    "发起投票": " 选哪款？|玫瑰口红|保湿面膜|时长=1d", "开始投票": " 选哪款？|玫瑰口红|保湿面膜|时长=1d",
    "开始抽奖": " 奖品=口红 名额=1 口令=抽 时长=10m", "发起抽奖": " 奖品=口红 名额=1 口令=抽 时长=10m",
    "开始答题": " skincare 2", "答题开始": " skincare 2",
    "打标签": " @Alice 达人", "删标签": " @Alice 老客", "查标签": " @Alice",
}
"""Arguments that would make each command act if an admin sent it; others get ` @Alice 1`."""


def admin_commands(bot: BotHarness) -> list[tuple[str, str]]:
    """(plugin, message text) for every word of every matcher a plain member may not use."""
    found = []
    for plugin in bot.runtime.plugins.values():
        for matcher in plugin.matchers:
            if not matcher.permission.checks:
                continue
            assert matcher.trigger.kind in ("fullmatch", "command", "keyword"), matcher   # extend the matrix
            for word in bot.runtime._words_for(matcher):
                found.append((plugin.name, word if matcher.trigger.kind == "fullmatch"
                              else word + ARGS.get(word, " @Alice 1")))
    return found


def snapshot(bot: BotHarness, skip: set[str]) -> dict[str, list[tuple]]:
    meta = MetaData()
    meta.reflect(bind=bot.runtime.engine)
    with bot.runtime.engine.connect() as conn:
        return {t.name: sorted(map(tuple, conn.execute(select(t)).all()), key=repr)
                for t in meta.sorted_tables if t.name not in skip}


async def _prepared(bot: BotHarness) -> set[str]:
    """Admin-made state for the commands to act on; returns the tables any plain message changes."""
    bot.room("g1", "会员群", members=MEMBERS, admins=["adm"])
    with bot.db() as db:
        bot.runtime.plugins["points"].service.grant(db, room_id="g1", member_id="u1", amount=500, reason="t",
                                                   source="t", at=bot.now)
        db.commit()
    await bot.say("g1", "u1", "兑换 帆布袋")                                # a redemption to fulfil
    await bot.say("g1", "adm", "发起投票 午饭吃什么？|面|饭|时长=1d")          # a poll to close
    await bot.say("g1", "adm", "打标签 @Alice 老客", mentions=["u1"])
    bot.pop()
    before = snapshot(bot, set())
    await bot.say("g1", "u2", "今天天气不错")
    after = snapshot(bot, set())
    bot.pop()
    return {name for name in before if before[name] != after[name]} | {"core_outbox", "core_inbound"}


async def test_no_admin_command_works_for_a_plain_member():
    async with BotHarness(REPO, plugins=PLUGINS, settings=SETTINGS) as bot:
        chatter = await _prepared(bot)
        commands = admin_commands(bot)
        words = {text.split()[0] for _, text in commands}
        assert {"调整积分", "已发放", "结束投票", "开始抽奖", "开始答题", "打标签"} <= words   # the matrix is complete
        for plugin, text in commands:
            state = snapshot(bot, chatter)
            await bot.say("g1", "u2", text, mentions=["u1"] if "@Alice" in text else [])
            replies = [m.text for m in bot.pop()]
            assert replies == [f"@Bob {DENIED}"], (plugin, text, replies)
            assert snapshot(bot, chatter) == state, (plugin, text)
        await bot.advance("2d")                                             # nothing a member armed fires later
        assert all(DENIED not in m.text and "开奖" not in m.text for m in bot.pop())


@pytest.mark.parametrize("text", ["已发放 1", "结束投票"])
async def test_the_same_commands_work_for_the_admin(text):
    async with BotHarness(REPO, plugins=PLUGINS, settings=SETTINGS) as bot:
        await _prepared(bot)
        await bot.say("g1", "adm", text)
        assert DENIED not in bot.pop_text()
