"""poll: votes by number or text, changed votes, results, and a follow-up that @s one option's voters."""

from __future__ import annotations

import sys

from sqlmodel import select

from bot.testing import BotHarness

MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob", "u3": "Carol", "u4": "Dave"}
OPEN = "发起投票 下期上新选哪款？|玫瑰口红|保湿面膜|眼霜"


def _votes(bot: BotHarness) -> dict[str, int]:
    module = sys.modules[bot.runtime.plugins["poll"].timers["close"].__module__]
    with bot.db() as db:
        return {v.member_id: v.option for v in db.exec(select(module.PollVote))}


async def test_votes_by_number_or_text_and_changed_votes(repo):
    async with BotHarness(repo, plugins=["poll"]) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", OPEN)
        opened = bot.pop_text()
        await bot.say("g1", "u1", "投1")
        await bot.say("g1", "u2", "２")               # full-width bare number
        await bot.say("g1", "u3", "选 保湿面膜。")      # option text, punctuation
        await bot.say("g1", "u4", "投5")               # no such option: not a vote
        await bot.say("g1", "u1", "投 2")              # changes Alice's vote
        await bot.say("g1", "u1", "2")
        replies = [m.text for m in bot.pop()]
        votes = _votes(bot)
        await bot.say("g1", "u4", "投票结果")
        results = bot.pop_text()
    assert "1. 玫瑰口红" in opened and "3. 眼霜" in opened
    assert "下期上新选哪款？" in opened and "?" not in opened  # the title as typed, full-width ？ kept
    assert votes == {"u1": 1, "u2": 1, "u3": 1}
    assert replies == ["@Alice 已投 1. 玫瑰口红", "@Bob 已投 2. 保湿面膜", "@Carol 已投 2. 保湿面膜",
                       "@Alice 已改投 2. 保湿面膜", "@Alice 你已经投了 2. 保湿面膜"]
    assert "（3 票）" in results and "1. 玫瑰口红：0 票" in results and "2. 保湿面膜：3 票" in results


async def test_first_vote_stands_when_changes_are_off(repo):
    async with BotHarness(repo, plugins=["poll"], settings={"plugins": {"poll": {"allow_change": False}}}) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", OPEN)
        await bot.say("g1", "u1", "投1")
        await bot.say("g1", "u1", "投3")
        assert bot.pop()[-1].text == "@Alice 每人一票，你的票仍是 1. 玫瑰口红"
        assert _votes(bot) == {"u1": 0}


async def test_follow_up_mentions_exactly_one_options_voters_in_chunks(repo):
    settings = {"plugins": {"poll": {"max_mentions": 2, "confirm_votes": False}}}
    members = {**MEMBERS, **{f"m{i}": f"成员{i}" for i in range(5)}}
    async with BotHarness(repo, plugins=["poll"], settings=settings) as bot:
        bot.room("g1", members=members, admins=["owner1"])
        await bot.say("g1", "owner1", OPEN)
        for i in range(5):
            await bot.say("g1", f"m{i}", "投2")
        await bot.say("g1", "u1", "投1")
        await bot.say("g1", "u2", "投2")
        await bot.say("g1", "u2", "投3")                  # Bob changed his mind: not a 面膜 voter any more
        await bot.say("g1", "owner1", "结束投票")
        closed = bot.pop_text()
        await bot.say("g1", "u3", "投2")                  # after close: ignored
        await bot.say("g1", "owner1", "通知投票 2 保湿面膜到货啦，快来下单")
        messages = bot.pop()
    assert "投票结束" in closed and "2. 保湿面膜：5 票" in closed
    mentioned = [m for message in messages for m in message.mentions]
    assert sorted(mentioned) == [f"m{i}" for i in range(5)]
    assert [len(m.mentions) for m in messages] == [2, 2, 1]
    assert all("保湿面膜到货啦" in m.text and "@Bob" not in m.text for m in messages)
    assert messages[0].text.startswith("@成员0 @成员1 ") and "1/3" in messages[0].text


async def test_follow_up_by_sop_action_and_non_admin_denied(repo):
    async with BotHarness(repo, plugins=["poll"]) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u1", OPEN)                   # not an admin: no poll
        await bot.say("g1", "u1", "投1")
        assert "已投" not in bot.pop_text()
        ok = await bot.runtime.invoke_action(bot.sim.account, "poll", "open", room_id="g1", key="sop:1",
                                             params={"title": "选款", "options": ["口红", "面膜"], "duration": "1h"})
        assert ok
        await bot.drain()
        await bot.say("g1", "u1", "面膜")
        await bot.advance("1h")                           # the durable timer closes it
        closed = bot.pop_text()
        await bot.runtime.invoke_action(bot.sim.account, "poll", "follow_up", room_id="g1", key="sop:2",
                                        params={"option": "面膜", "text": "面膜上架了"})
        await bot.drain()
        [message] = bot.pop()
    assert "投票结束：选款（1 票）" in closed
    assert message.mentions == ("u1",) and "面膜上架了" in message.text


async def test_full_width_separators_and_punctuation_in_a_poll_are_kept(repo):
    async with BotHarness(repo, plugins=["poll"]) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", "发起投票 周末去哪儿？｜爬山！｜看展（美术馆）｜时长＝1h")
        opened = bot.pop_text()
        await bot.say("g1", "u1", "看展(美术馆)")       # half-width brackets still vote for the option
        vote = bot.pop_text()
    assert "周末去哪儿？" in opened and "1. 爬山！" in opened and "2. 看展（美术馆）" in opened, opened
    assert vote == "@Alice 已投 2. 看展（美术馆）"


async def test_a_bad_poll_command_is_answered_in_chinese(repo):
    from bot._i18n import is_translated

    async with BotHarness(repo, plugins=["poll"]) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", "发起投票 选哪个|" + "|".join(f"款{i}" for i in range(21)))
        too_many = bot.pop_text()
        await bot.say("g1", "owner1", "发起投票 选哪个|红|蓝|时长=一会儿")
        bad_duration = bot.pop_text()
    assert "选项: 最多只能写 20 项" in too_many and is_translated(too_many), too_many
    assert "时长 '一会儿' 看不懂" in bad_duration, bad_duration
