"""Dispatch: triggers, priority and block, permissions, per-room enablement, isolation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot import ROOM_ADMIN, Context, MembersJoined, Plugin, Rule, to_me
from bot.testing import BotHarness, HandlerFailed


def recorder() -> tuple[Plugin, list[str]]:
    seen: list[str] = []
    plugin = Plugin("rec")

    @plugin.on_fullmatch("签到").handle
    async def signin(ctx: Context) -> None:
        seen.append(f"full:{ctx.text}")
        await ctx.reply("ok")

    @plugin.on_command("兑换").handle
    async def redeem(ctx: Context) -> None:
        seen.append(f"cmd:{ctx.args}")

    @plugin.on_keyword("优惠").handle
    async def keyword(ctx: Context) -> None:
        seen.append("kw")

    @plugin.on_regex(r"第(\d+)题").handle
    async def regex(ctx: Context) -> None:
        assert ctx.match is not None
        seen.append(f"re:{ctx.match.group(1)}")

    @plugin.on_event(MembersJoined).handle
    async def joined(ctx: Context) -> None:
        assert isinstance(ctx.event, MembersJoined)
        seen.append("join:" + ",".join(m.id for m in ctx.event.members))

    return plugin, seen


async def test_triggers_match_what_they_should(project):
    plugin, seen = recorder()
    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "签到")
        await bot.say("g1", "u1", "签到了吗")  # not a full match
        await bot.say("g1", "u1", "兑换 口红")
        await bot.say("g1", "u1", "兑换口红")
        await bot.say("g1", "u1", "今天有优惠吗")
        await bot.say("g1", "u1", "第12题选A")
        await bot.join("g1", {"u9": "小红"}, inviter="u1")
        await bot.say("g1", "u1", "随便聊聊")
    assert seen == ["full:签到", "cmd:口红", "cmd:口红", "kw", "re:12", "join:u9"]


async def test_bot_mention_is_stripped_before_matching(project):
    plugin, seen = recorder()
    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.mention_bot("g1", "u1", "签到")
        await bot.say("g1", "u1", "@小完子\u2005签到", mentions=["bot"])
    assert seen == ["full:签到", "full:签到"]


async def test_priority_and_block_stop_lower_priorities(project):
    order: list[str] = []
    plugin = Plugin("prio")

    @plugin.on_keyword("抽奖", priority=20, block=False).handle
    async def watcher(ctx: Context) -> None:
        order.append("watch20")

    @plugin.on_fullmatch("抽奖", priority=10).handle
    async def first(ctx: Context) -> None:
        order.append("full10")

    @plugin.on_message(priority=10).handle
    async def same_level(ctx: Context) -> None:
        order.append("msg10")

    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "抽奖")
        assert order == ["full10", "msg10"]  # same level still runs, lower level blocked
        order.clear()
        await bot.say("g1", "u1", "我要抽奖")
        assert order == ["msg10", "watch20"]  # nothing blocking matched


async def test_member_cannot_run_admin_command(project):
    plugin = Plugin("adm")
    ran: list[str] = []

    @plugin.on_command("调整积分", permission=ROOM_ADMIN).handle
    async def adjust(ctx: Context) -> None:
        ran.append(ctx.member_id or "")
        await ctx.reply("已调整")

    async with BotHarness(project, plugins=[plugin], settings={"bot": {"operators": ["op"]}}) as bot:
        bot.room("g1", members={"u1": "Alice", "owner": "群主", "op": "运营"}, admins=["owner"])
        await bot.say("g1", "u1", "调整积分 u2 10")
        denied = bot.pop()
        await bot.say("g1", "owner", "调整积分 u2 10")
        await bot.say("g1", "op", "调整积分 u2 10")
        allowed = bot.pop()
    assert ran == ["owner", "op"]
    assert [m.text for m in denied] == ["@Alice 这个指令只有群管理员可以使用哦～"]
    assert [m.text for m in allowed] == ["@群主 已调整", "@运营 已调整"]


async def test_admins_from_config_count_as_room_admins(project):
    plugin = Plugin("adm")
    ran: list[str] = []

    @plugin.on_fullmatch("开奖", permission=ROOM_ADMIN).handle
    async def draw(ctx: Context) -> None:
        ran.append(ctx.member_id or "")

    settings = {"rooms": {"g1": {"admins": ["helper"]}}}
    async with BotHarness(project, plugins=[plugin], settings=settings) as bot:
        bot.room("g1", members={"helper": "助理", "u1": "A"})
        bot.room("g2", members={"helper": "助理"})
        await bot.say("g1", "helper", "开奖")
        await bot.say("g2", "helper", "开奖")
    assert ran == ["helper"]


async def test_rules_combine_with_and(project):
    plugin = Plugin("rules")
    ran: list[str] = []
    only_g1 = Rule(lambda ctx: ctx.room_id == "g1")

    @plugin.on_keyword("你好", rule=only_g1 & to_me()).handle
    async def hello(ctx: Context) -> None:
        ran.append(ctx.room_id or "")

    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "A"})
        bot.room("g2", members={"u1": "A"})
        await bot.say("g1", "u1", "你好")          # not to me
        await bot.mention_bot("g2", "u1", "你好")  # wrong room
        await bot.mention_bot("g1", "u1", "你好")
    assert ran == ["g1"]


async def test_plugin_disabled_in_one_room_only(project):
    plugin, seen = recorder()
    settings = {"rooms": {"g2": {"plugins_disabled": ["rec"]}}}
    async with BotHarness(project, plugins=[plugin], settings=settings) as bot:
        bot.room("g1", members={"u1": "A"})
        bot.room("g2", members={"u1": "A"})
        await bot.say("g1", "u1", "签到")
        await bot.say("g2", "u1", "签到")
        assert [m.room_id for m in bot.pop()] == ["g1"]
    assert seen == ["full:签到"]


async def test_raising_and_hanging_plugins_do_not_stop_a_healthy_one(project, caplog):
    broken, hanging, healthy = Plugin("broken"), Plugin("hanging"), Plugin("healthy")
    release = asyncio.Event()

    @broken.on_fullmatch("签到", priority=1, block=False).handle
    async def explode(ctx: Context) -> None:
        await ctx.reply("half-done")  # queued, then rolled back with the failure
        raise RuntimeError("boom")

    @hanging.on_fullmatch("签到", priority=2, block=False).handle
    async def hang(ctx: Context) -> None:
        await release.wait()  # never set: the timeout must cancel it

    @healthy.on_fullmatch("签到", priority=3).handle
    async def answer(ctx: Context) -> None:
        await ctx.reply("签到成功")

    caplog.set_level(logging.ERROR)
    settings = {"bot": {"handler_timeout": 0.05}}
    async with BotHarness(project, plugins=[broken, hanging, healthy], settings=settings) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "签到")
        failures = bot.pop_failures()  # expected here; otherwise pop() would raise HandlerFailed
        assert [m.text for m in bot.pop()] == ["@Alice 签到成功"]
    assert [f.split(" on event")[0] for f in failures] == ["plugin handler broken.explode failed",
                                                           "plugin handler hanging.hang timed out after 0.1s"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "broken.explode failed" in messages
    assert "hanging.hang timed out" in messages


async def test_configurable_words_replace_defaults(project):
    from pydantic import BaseModel

    class Cfg(BaseModel):
        words: list[str] = ["签到"]

    plugin = Plugin("words", config=Cfg)
    hits: list[str] = []

    @plugin.on_fullmatch("签到", words_from="words").handle
    async def hit(ctx: Context) -> None:
        hits.append(ctx.text)

    settings = {"plugins": {"words": {"words": ["打卡", "报到"]}}}
    async with BotHarness(project, plugins=[plugin], settings=settings) as bot:
        bot.room("g1", members={"u1": "A"})
        for text in ("签到", "打卡", "报到"):
            await bot.say("g1", "u1", text)
    assert hits == ["打卡", "报到"]


def test_plugin_names_are_checked():
    with pytest.raises(ValueError):
        Plugin("Bad Name")


async def test_the_harness_surfaces_a_handler_error_instead_of_an_empty_reply(project):
    plugin = Plugin("oops")

    @plugin.on_fullmatch("签到").handle
    async def crash(ctx: Context) -> None:
        raise KeyError("nickname")

    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "签到")
        with pytest.raises(HandlerFailed, match=r"oops.crash failed .*KeyError: 'nickname'") as caught:
            bot.pop_text()
        assert isinstance(caught.value.__cause__, KeyError)
        assert bot.pop_text() == ""  # reported once
    async with BotHarness(project, plugins=[plugin], raise_errors=False) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "签到")
        assert bot.pop_text() == "" and len(bot.failures) == 1


def test_a_rule_factory_passed_without_calling_it_is_refused_at_once():
    from bot import is_room_message

    plugin = Plugin("typo")
    with pytest.raises(TypeError, match=r"rule=is_room_message is a rule factory: call it, rule=is_room_message\(\)"):
        plugin.on_message(rule=is_room_message)  # type: ignore[arg-type]
    plugin.on_message(rule=is_room_message())  # called: fine


async def test_a_rule_that_reads_the_database_and_declines_holds_no_connection(project):
    """A rule may look in the database (the guard's whitelist); declining must give the connection back,
    or a busy room exhausts the pool (seen in the soak benchmark: QueuePool limit reached)."""
    from sqlmodel import select

    from bot._models import Member
    from bot.testing import BotHarness

    plugin = Plugin("picky", description="test")

    def never(ctx) -> bool:
        ctx.db.exec(select(Member)).all()
        return False

    plugin.on_message(rule=never).handle(lambda ctx: None)
    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        for i in range(40):
            await bot.say("g1", "u1", f"hello {i}", drain=False)
        await bot.drain()
        assert bot.runtime.engine.pool.checkedout() == 0
