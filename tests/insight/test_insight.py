"""insight: tag rules and lifecycle stages on the virtual clock, manual tags, config errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot import ConfigError
from bot.insight import InsightStage, InsightTag, Purchase
from bot.testing import BotHarness

MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob", "u3": "Carol"}


def stored_tags(bot: BotHarness, room: str = "g1") -> dict[str, set[str]]:
    with bot.db() as session:
        rows = session.exec(select(InsightTag).where(InsightTag.room_id == room)).all()
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row.member_id, set()).add(row.tag)
    return out


def stages(bot: BotHarness, room: str = "g1") -> dict[str, str]:
    with bot.db() as session:
        return {s.member_id: s.stage for s in session.exec(select(InsightStage).where(InsightStage.room_id == room))}


@pytest.fixture
def harness(repo):
    return BotHarness(repo, plugins=["insight"], start="2026-11-23T09:10:00+08:00")


async def test_active_needs_three_of_the_last_seven_days_and_appears_at_the_next_recompute(harness):
    async with harness as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
        for day in range(3):
            await bot.say("g1", "u1", f"第{day}天好")
            await bot.say("g1", "u2", "我只在第一天说话") if day == 0 else None
            if day < 2:
                await bot.advance("1d")
        assert "active" not in stored_tags(bot).get("u1", set())  # rules run on the schedule, not per message
        await bot.advance("50m")  # 11:00 local, the next hourly slot
        tags = stored_tags(bot)
        assert "active" in tags["u1"]
        assert "active" not in tags.get("u2", set())
        # the window slides: five quiet days later u1 has spoken on only one of the last seven days
        await bot.advance("5d")
        assert "active" not in stored_tags(bot).get("u1", set())


async def test_silent_after_fourteen_quiet_days_counted_from_join(harness):
    async with harness as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
        await bot.join("g1", {"u4": "Dan"}, inviter="u1")
        await bot.advance("13d")
        assert "silent" not in stored_tags(bot).get("u4", set())
        await bot.advance("1d")
        assert "silent" not in stored_tags(bot).get("u4", set())  # 13 days 23 hours at the 09:00 recompute
        await bot.advance("1h")
        assert "silent" in stored_tags(bot)["u4"]
        await bot.say("g1", "u4", "我回来了")
        await bot.advance("1h")
        assert "silent" not in stored_tags(bot).get("u4", set())


async def test_koc_counts_invitees_who_stayed_and_requires_active(harness):
    async with harness as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
        await bot.join("g1", {"n1": "N1", "n2": "N2", "n3": "N3"}, inviter="u1")
        await bot.leave("g1", "n3")
        for _ in range(3):
            await bot.say("g1", "u1", "欢迎新朋友")
            await bot.advance("1d")
        assert "active" in stored_tags(bot)["u1"] and "KOC" not in stored_tags(bot)["u1"]
        await bot.join("g1", {"n4": "N4"}, inviter="u1")
        await bot.advance("1h")
        assert {"active", "KOC"} <= stored_tags(bot)["u1"]


async def test_stages_follow_activity_and_purchases(harness):
    async with harness as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
        await bot.advance("1h")
        assert stages(bot)["u1"] == "aware"
        for _ in range(3):
            await bot.say("g1", "u1", "今天也来了")
            await bot.advance("1d")
        assert stages(bot)["u1"] == "interested"
        service = bot.runtime.service("insight")
        with bot.db() as session:
            service.record_purchases(session, [
                Purchase("o-1", "u1", 9900, bot.now), Purchase("o-2", "u2", 1990, bot.now, room_id="g1")], bot.now)
            session.commit()
        # recorded purchases move the buyers at once (u1 is active, so one purchase makes them loyal)
        assert stages(bot)["u1"] == "loyal" and stages(bot)["u2"] == "purchased" and stages(bot)["u3"] == "aware"


async def test_custom_rules_from_config_and_eligibility_uses_fresh_tags(repo):
    settings = {"plugins": {"insight": {"tags": {"talker": "messages(1) >= 2"}, "stages": {"interested": "true"}}}}
    async with BotHarness(repo, plugins=["insight"], settings=settings) as bot:
        bot.room("g1", "群", members=MEMBERS)
        await bot.say("g1", "u2", "一")
        await bot.say("g1", "u2", "二")
        service = bot.runtime.service("insight")
        with bot.db() as session:
            assert service.has_tags(session, "g1", "u2", ["talker"], bot.now)  # evaluated now, before any recompute
            assert not service.has_tags(session, "g1", "u1", ["talker"], bot.now)
        await bot.advance("1h")
        assert stored_tags(bot) == {"u2": {"talker"}}
        assert set(stages(bot).values()) == {"interested"}


async def test_admin_tags_by_hand_and_members_cannot(harness):
    async with harness as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", "打标签 @Bob 重点客户", mentions=["u2"])
        assert "已给 Bob 打上标签「重点客户」" in bot.pop_text()
        await bot.say("g1", "u1", "打标签 @Bob 捣乱", mentions=["u2"])
        assert "捣乱" not in str(stored_tags(bot))
        bot.pop()
        await bot.advance("2h")  # a recompute keeps manual tags
        assert stored_tags(bot)["u2"] == {"重点客户"}
        await bot.say("g1", "owner1", "查标签 @Bob", mentions=["u2"])
        shown = bot.pop_text()
        assert "重点客户" in shown and "认知" in shown
        await bot.say("g1", "owner1", "删标签 @Bob 重点客户", mentions=["u2"])
        assert "已删除" in bot.pop_text()
        assert "u2" not in stored_tags(bot)


async def test_an_admin_who_addresses_the_bot_tags_the_member_not_the_bot(harness):
    async with harness as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", f"@{bot.config.bot.name} 打标签 @Bob 重点客户", mentions=["bot", "u2"])
        assert "已给 Bob 打上标签「重点客户」" in bot.pop_text()
        assert stored_tags(bot) == {"u2": {"重点客户"}}


@pytest.mark.parametrize(("rules", "message"), [
    ({"tags": {"x": "active_days(7) >="}}, "tags.x"),
    ({"tags": {"x": "chats > 3"}}, "unknown name(s) chats"),
    ({"stages": {"vip": "true"}}, "unknown stage 'vip'"),
    ({"recompute_every": "soon"}, "时长 'soon' 看不懂"),
])
async def test_bad_rules_are_config_errors_naming_the_key(repo, rules, message):
    with pytest.raises(ConfigError) as err:
        async with BotHarness(repo, plugins=["insight"], settings={"plugins": {"insight": rules}}):
            pass
    assert message in str(err.value) and "insight" in str(err.value)


async def test_rules_recomputed_at_each_interval_only(repo):
    async with BotHarness(repo, plugins=["insight"], start="2026-11-23T09:00:00+08:00",
                          settings={"plugins": {"insight": {"recompute_every": "6h"}}}) as bot:
        bot.room("g1", "群", members=MEMBERS)
        engine = next(c for c in bot.sim._components if type(c).__name__ == "InsightEngine")
        assert engine.next_run(bot.now) == bot.now + timedelta(hours=3)  # 12:00: slots from local midnight
        await bot.advance("2h")
        assert stages(bot) == {}
        await bot.advance("1h")
        assert set(stages(bot)) == {"owner1", "u1", "u2", "u3"}


def test_a_bad_rule_names_its_line_in_qunbot_toml(tmp_path):
    from bot._checks import run_checks

    (tmp_path / "qunbot.toml").write_text(
        '[plugins]\nenabled = ["insight"]\n\n[plugins.insight.tags]\nactive = "active_days(7) >= 3"\n'
        'talky = "chats > 2"\n', encoding="utf-8")
    problems = run_checks(tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'qunbot.toml'}:6: plugins.insight.tags.talky")
    assert "unknown name(s) chats" in problems[0]
