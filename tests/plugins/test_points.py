"""points: sign-in once a local day, streaks, the ledger, levels, ranking, redemption, referrals, admin commands."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from bot import YamlError
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob", "u3": "Carol"}


def _models(bot: BotHarness):
    return sys.modules[type(bot.runtime.plugins["points"].service).__module__.replace(".service", ".models")]


def _service(bot: BotHarness):
    return bot.runtime.plugins["points"].service


def _balance(bot: BotHarness, member: str, room: str = "g1") -> int:
    with bot.db() as db:
        return _service(bot).balance(db, room, member)


def _grant(bot: BotHarness, member: str, amount: int, room: str = "g1") -> None:
    with bot.db() as db:
        _service(bot).grant(db, room_id=room, member_id=member, amount=amount, reason="test", source="test",
                            at=bot.now)
        db.commit()


def harness(**kwargs) -> BotHarness:
    return BotHarness(REPO, plugins=["points"], **kwargs)


@pytest.fixture
async def bot():
    async with harness() as bot:
        bot.room("g1", "签到群", members=MEMBERS, admins=["owner1"])
        yield bot


# --- sign-in -----------------------------------------------------------------------------


async def test_sign_in_grants_points_once_and_a_second_try_is_answered_politely(bot):
    await bot.say("g1", "u1", "签到")
    first = bot.pop_text()
    await bot.say("g1", "u1", "签到")
    second = bot.pop_text()
    assert first == "@Alice 签到成功 ✅ +10 积分\n当前积分：10。明天继续签到可得 12 积分～"
    assert "今天已经签过到" in second
    assert _balance(bot, "u1") == 10


async def test_double_tap_in_the_same_second_signs_in_once(bot):
    # both messages are in flight before either is handled: the database decides, not the order of replies
    await bot.say("g1", "u1", "签到", drain=False)
    await bot.say("g1", "u1", "签到", drain=False)
    await bot.drain()
    texts = bot.pop_text()
    assert texts.count("签到成功") == 1 and texts.count("今天已经签过到") == 1
    with bot.db() as db:
        models = _models(bot)
        assert len(db.exec(select(models.PointsSignIn)).all()) == 1
        assert len(db.exec(select(models.PointsLedger)).all()) == 1
    assert _balance(bot, "u1") == 10


async def test_the_database_refuses_a_second_sign_in_row_for_the_same_day(bot):
    await bot.say("g1", "u1", "签到")
    models = _models(bot)
    with bot.db() as db:
        row = db.exec(select(models.PointsSignIn)).one()
        db.add(models.PointsSignIn(room_id="g1", member_id="u1", day=row.day, streak=1, points=10,
                                   signed_at=bot.now))
        with pytest.raises(IntegrityError):
            db.commit()


async def test_streak_builds_across_local_midnight_and_breaks_after_a_missed_day():
    async with harness(start="2026-11-23T23:59:58+08:00") as bot:
        bot.room("g1", "签到群", members=MEMBERS)
        await bot.advance_to("2026-11-23T23:59:59+08:00")
        await bot.say("g1", "u1", "签到")                       # day 1 (Monday), one second before midnight
        assert "+10 积分" in bot.pop_text()
        await bot.advance_to("2026-11-24T00:00:00+08:00")
        await bot.say("g1", "u1", "签到")                       # a second later, but local Tuesday
        tuesday = bot.pop_text()
        assert "签到成功" in tuesday and "连续签到 2 天" in tuesday and "+12 积分" in tuesday
        await bot.advance_to("2026-11-25T12:00:00+08:00")
        await bot.say("g1", "u1", "签到")
        assert "连续签到 3 天" in bot.pop_text()
        await bot.advance_to("2026-11-27T08:00:00+08:00")       # Thursday missed
        await bot.say("g1", "u1", "签到")
        broken = bot.pop_text()
        assert "签到成功" in broken and "连续" not in broken and "+10 积分" in broken
        with bot.db() as db:
            days = [str(r.day) for r in db.exec(select(_models(bot).PointsSignIn)
                                                .order_by(_models(bot).PointsSignIn.day)).all()]
        assert days == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27"]
        assert _balance(bot, "u1") == 10 + 12 + 14 + 10


async def test_the_streak_shown_before_todays_sign_in_counts_up_to_yesterday():
    async with harness(start="2026-11-23T09:00:00+08:00") as bot:
        bot.room("g1", "签到群", members=MEMBERS)
        await bot.say("g1", "u1", "签到")
        await bot.advance_to("2026-11-24T09:00:00+08:00")       # the next day, not signed in yet
        bot.pop()
        await bot.say("g1", "u1", "我的积分")
        tuesday = bot.pop_text()
        assert "今天还没签到" in tuesday and "连续签到 1 天" in tuesday
        await bot.advance_to("2026-11-25T09:00:00+08:00")       # a day missed: the streak is gone
        await bot.say("g1", "u1", "我的积分")
        assert "连续" not in bot.pop_text()

async def test_local_day_follows_the_configured_time_zone_not_utc():
    # 07:30 in Shanghai is 23:30 UTC of the previous day; both sign-ins below are on different local days
    async with harness(start="2026-11-23T07:30:00+08:00") as bot:
        bot.room("g1", "签到群", members=MEMBERS)
        await bot.say("g1", "u1", "签到")
        await bot.advance_to("2026-11-23T08:30:00+08:00")        # same local day, different UTC day
        await bot.say("g1", "u1", "签到")
        assert "今天已经签过到" in bot.pop_text()


async def test_streak_bonus_is_configurable_and_capped():
    settings = {"plugins": {"points": {"signin_points": 5, "streak_bonus": 10, "streak_bonus_max": 15}}}
    async with harness(settings=settings) as bot:
        bot.room("g1", "签到群", members=MEMBERS)
        earned = []
        for _ in range(4):
            await bot.say("g1", "u1", "签到")
            earned.append(bot.pop_text())
            await bot.advance("1d")
    assert ["+5 积分" in earned[0], "+15 积分" in earned[1], "+20 积分" in earned[2], "+20 积分" in earned[3]] \
        == [True] * 4


async def test_sign_ins_are_per_room(bot):
    bot.room("g2", "另一个群", members=MEMBERS)
    await bot.say("g1", "u1", "签到")
    await bot.say("g2", "u1", "签到")
    assert bot.pop_text().count("签到成功") == 2
    assert _balance(bot, "u1", "g1") == 10 and _balance(bot, "u1", "g2") == 10


# --- balance, levels, ranking ------------------------------------------------------------


async def test_balance_shows_points_level_and_streak(bot):
    await bot.say("g1", "u1", "签到")
    bot.pop()
    await bot.say("g1", "u1", "我的积分")
    text = bot.pop_text()
    assert "你的积分：10" in text and "V1 社区菜鸟" in text and "今天已签到" in text and "连续签到 1 天" in text
    assert "再获得 90 分升到 V2 社区新秀" in text


async def test_level_up_is_announced_exactly_once(bot):
    _grant(bot, "u1", 95)
    await bot.say("g1", "u1", "签到")                             # 95 + 10 crosses V2 (100)
    first = bot.pop_text()
    assert first.count("升级为 V2「社区新秀」") == 1 and "@Alice" in first
    _grant(bot, "u1", 50)
    await bot.advance("1d")
    await bot.say("g1", "u1", "签到")                             # still V2: nothing more to announce
    assert "升级" not in bot.pop_text()
    # spending and earning back does not announce V2 again: the level counts points earned
    with bot.db() as db:
        _service(bot).spend(db, room_id="g1", member_id="u1", amount=100, reason="t", source="test", at=bot.now)
        db.commit()
    await bot.advance("1d")
    await bot.say("g1", "u1", "签到")
    assert "升级" not in bot.pop_text()


async def test_a_grant_from_another_plugin_announces_the_level_up_in_its_transaction(bot):
    from bot import Plugin

    other = Plugin(name="gift")
    gift = other.on_fullmatch("送分")

    @gift.handle
    async def give(ctx):
        ctx.service("points").grant(ctx.db, room_id=ctx.room_id, member_id=ctx.member_id, amount=300,
                                    reason="活动", source="gift", key="gift-once", at=ctx.now)

    async with BotHarness(REPO, plugins=[bot.runtime.plugins["points"], other]) as h:
        h.room("g1", "群", members=MEMBERS)
        await h.say("g1", "u1", "送分")
        await h.say("g1", "u1", "送分")                            # same key: no second grant, no second message
        text = h.pop_text()
    assert text.count("升级为 V3") == 1 and "V2" not in text


async def test_levels_are_configurable():
    levels = [{"name": "新人", "threshold": 0}, {"name": "老友", "threshold": 15}]
    settings = {"plugins": {"points": {"levels": levels}}}
    async with harness(settings=settings) as bot:
        bot.room("g1", "群", members=MEMBERS)
        await bot.say("g1", "u1", "签到")
        await bot.advance("1d")
        await bot.say("g1", "u1", "签到")
        assert "升级为 V2「老友」" in bot.pop_text()


def test_levels_must_start_at_zero_and_increase(tmp_path):
    from click.testing import CliRunner

    from bot.cli import main

    (tmp_path / "qunbot.toml").write_text(
        f'[plugins]\ndirs = ["{REPO / "plugins"}"]\nenabled = ["points"]\n'
        '[[plugins.points.levels]]\nname = "a"\nthreshold = 10\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "check"])
    assert result.exit_code != 0 and "threshold 要从 0 开始" in result.stderr + result.stdout


async def test_ranking_lists_the_top_members_of_the_room(bot):
    _grant(bot, "u2", 50)
    _grant(bot, "u3", 80)
    _grant(bot, "u1", 20)
    _grant(bot, "u1", 500, room="elsewhere")
    await bot.say("g1", "u1", "排行榜")
    text = bot.pop_text()
    assert text.index("1. Carol  80 分") < text.index("2. Bob  50 分") < text.index("3. Alice  20 分")


# --- the ledger -----------------------------------------------------------------------------


async def test_grant_is_idempotent_by_key_and_balance_equals_the_ledger(bot):
    service = _service(bot)
    with bot.db() as db:
        assert service.grant(db, room_id="g1", member_id="u1", amount=30, reason="答题", source="quiz", key="k1",
                             at=bot.now)
        assert not service.grant(db, room_id="g1", member_id="u1", amount=30, reason="答题", source="quiz",
                                 key="k1", at=bot.now)
        service.spend(db, room_id="g1", member_id="u1", amount=10, reason="兑换", source="test", at=bot.now)
        db.commit()
        rows = service.history(db, "g1", "u1")
        assert [(r.amount, r.source) for r in rows] == [(-10, "test"), (30, "quiz")]
        assert service.balance(db, "g1", "u1") == service.ledger_balance(db, "g1", "u1") == 20


async def test_spend_never_goes_negative(bot):
    service = _service(bot)
    insufficient = sys.modules[type(service).__module__].InsufficientPoints
    _grant(bot, "u1", 5)
    with bot.db() as db:
        with pytest.raises(insufficient):
            service.spend(db, room_id="g1", member_id="u1", amount=6, reason="x", source="test", at=bot.now)
        db.commit()
    assert _balance(bot, "u1") == 5


# --- redemption -------------------------------------------------------------------------------


def _catalog(tmp_path: Path, stock: int = 1, cost: int = 100) -> dict:
    path = tmp_path / "catalog.yaml"
    path.write_text(f"items:\n  - name: 帆布袋\n    cost: {cost}\n    stock: {stock}\n", encoding="utf-8")
    return {"plugins": {"points": {"catalog": str(path)}}}


async def test_redeem_spends_points_records_the_redemption_and_admin_fulfils_it(tmp_path):
    async with harness(settings=_catalog(tmp_path, stock=3)) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
        _grant(bot, "u1", 150)
        await bot.say("g1", "u1", "积分商城")
        assert "帆布袋：100 积分，剩 3 件" in bot.pop_text()
        await bot.say("g1", "u1", "兑换 帆布袋")
        done = bot.pop_text()
        assert "兑换成功" in done and "剩余 50 积分" in done and "#1" in done
        await bot.say("g1", "u1", "兑换 帆布袋")
        assert "积分不足" in bot.pop_text()
        await bot.say("g1", "u1", "兑换 口红")
        assert "没有找到「口红」" in bot.pop_text()
        await bot.say("g1", "owner1", "兑换记录")
        assert "#1 Alice：帆布袋" in bot.pop_text()
        await bot.say("g1", "owner1", "已发放 1")
        assert "已发放" in bot.pop_text()
        await bot.say("g1", "owner1", "兑换记录")
        assert "没有待发放" in bot.pop_text()


async def test_the_last_item_in_stock_goes_to_exactly_one_of_two_concurrent_redeemers(tmp_path):
    async with harness(settings=_catalog(tmp_path, stock=1)) as bot:
        bot.room("g1", "群", members=MEMBERS)
        bot.room("g2", "群2", members=MEMBERS)
        _grant(bot, "u1", 100, room="g1")
        _grant(bot, "u2", 100, room="g2")
        # two rooms are dispatched concurrently (no shared room lock)
        await asyncio.gather(bot.say("g1", "u1", "兑换 帆布袋", drain=False),
                             bot.say("g2", "u2", "兑换 帆布袋", drain=False))
        await bot.drain()
        texts = bot.pop_text()
        assert texts.count("兑换成功") == 1 and texts.count("已经兑完") == 1
        with bot.db() as db:
            assert _service(bot).sold(db, "帆布袋") == 1
            assert len(db.exec(select(_models(bot).PointsRedemption)).all()) == 1
        assert sorted([_balance(bot, "u1", "g1"), _balance(bot, "u2", "g2")]) == [0, 100]


async def test_a_refused_redemption_leaves_stock_untouched(tmp_path):
    async with harness(settings=_catalog(tmp_path, stock=1)) as bot:
        bot.room("g1", "群", members=MEMBERS)
        await bot.say("g1", "u1", "兑换 帆布袋")                 # no points
        assert "积分不足" in bot.pop_text()
        _grant(bot, "u2", 100)
        await bot.say("g1", "u2", "兑换 帆布袋")                 # the one item is still there
        assert "兑换成功" in bot.pop_text()


async def test_a_broken_catalog_is_reported_with_file_and_line_and_keeps_the_last_good_one(tmp_path):
    settings = _catalog(tmp_path, stock=2)
    async with harness(settings=settings) as bot:
        bot.room("g1", "群", members=MEMBERS)
        _grant(bot, "u1", 100)
        await bot.say("g1", "u1", "积分商城")
        bot.pop()
        path = tmp_path / "catalog.yaml"
        path.write_text("items:\n  - name: 帆布袋\n    cost: -5\n    stock: 2\n", encoding="utf-8")
        os.utime(path, ns=(1, 10**18))
        await bot.say("g1", "u1", "兑换 帆布袋")
        assert "兑换成功" in bot.pop_text()                       # the previous valid catalog still runs
        catalog = sys.modules[_models(bot).__name__.replace(".models", ".catalog")]
    with pytest.raises(YamlError) as err:
        catalog.load_catalog(path)
    assert err.value.line == 3 and "cost" in str(err.value)


def test_check_reports_a_broken_catalog(tmp_path):
    from click.testing import CliRunner

    from bot.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data/points_catalog.yaml").write_text("items:\n  - name: 袋\n    price: 3\n", encoding="utf-8")
    (tmp_path / "qunbot.toml").write_text(
        f'[plugins]\ndirs = ["{REPO / "plugins"}"]\nenabled = ["points"]\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "check"])
    assert result.exit_code != 0
    assert "points_catalog.yaml:3" in result.stderr + result.stdout and "price" in result.stderr + result.stdout


# --- referral ------------------------------------------------------------------------------------


async def test_referral_pays_the_inviter_only_if_the_invitee_stays(bot):
    await bot.join("g1", {"n1": "小新"}, inviter="u1")
    await bot.join("g1", {"n2": "路人"}, inviter="u2")
    await bot.advance("23h")
    assert _balance(bot, "u1") == 0                                # not at the moment of joining
    await bot.leave("g1", "n2")                                    # n2 leaves before 24 h
    await bot.advance("2h")
    text = bot.pop_text()
    assert "感谢 @Alice 邀请 小新 入群，奖励 20 积分" in text
    assert "Bob" not in text
    assert _balance(bot, "u1") == 20 and _balance(bot, "u2") == 0


async def test_leaving_and_rejoining_does_not_pay_twice_or_early(bot):
    await bot.join("g1", {"n1": "小新"}, inviter="u1")
    await bot.advance("1h")
    await bot.leave("g1", "n1")
    await bot.join("g1", {"n1": "小新"}, inviter="u1")
    await bot.advance("23h30m")                                     # 24 h after the first join, not the second
    assert _balance(bot, "u1") == 0
    await bot.advance("1h")
    await bot.advance("2d")
    assert _balance(bot, "u1") == 20


async def test_referral_survives_a_restart(bot):
    await bot.join("g1", {"n1": "小新"}, inviter="u1")
    await bot.restart()
    await bot.advance("25h")
    assert _balance(bot, "u1") == 20


# --- admin commands ------------------------------------------------------------------------------


async def test_admin_adjusts_points_with_a_reason_and_the_history_shows_who(bot):
    await bot.say("g1", "owner1", "调整积分 @Alice +50 线下活动奖励", mentions=["u1"])
    assert "已为 Alice 增加 50 积分（线下活动奖励），当前 50 积分" in bot.pop_text()
    await bot.say("g1", "owner1", "调整积分 @Alice -20 发广告", mentions=["u1"])
    assert "扣除 20 积分" in bot.pop_text()
    await bot.say("g1", "owner1", "调整积分 @Alice -100 再扣", mentions=["u1"])
    assert "只有 30 积分" in bot.pop_text()
    await bot.say("g1", "owner1", "调整积分 @Alice 50", mentions=["u1"])   # no reason: refused with usage
    assert "原因必填" in bot.pop_text()
    await bot.say("g1", "owner1", "积分明细 @Alice", mentions=["u1"])
    text = bot.pop_text()
    assert "当前 30 分" in text and "-20  发广告（群主 操作）" in text and "+50  线下活动奖励（群主 操作）" in text
    with bot.db() as db:
        rows = _service(bot).history(db, "g1", "u1")
    assert {(r.kind, r.actor_id) for r in rows} == {("adjust", "owner1")}


async def test_a_room_admin_who_is_not_an_operator_can_adjust_points():
    """The project's qunbot.toml makes owner1 an operator too; a plain room admin needs the command as well."""
    async with harness() as bot:
        bot.room("g1", "签到群", members={**MEMBERS, "adm2": "副群主"}, admins=["owner1", "adm2"])
        assert "adm2" not in bot.runtime.config.bot.operators
        await bot.say("g1", "adm2", "调整积分 @Alice +50 线下活动奖励", mentions=["u1"])
        assert "已为 Alice 增加 50 积分" in bot.pop_text()
        assert _balance(bot, "u1") == 50


async def test_members_cannot_use_admin_commands(bot):
    _grant(bot, "u2", 10)
    await bot.say("g1", "u1", "调整积分 @Alice +1000 自己加", mentions=["u1"])
    await bot.say("g1", "u1", "积分明细 @Bob", mentions=["u2"])
    await bot.say("g1", "u1", "兑换记录")
    text = bot.pop_text()
    assert "已为" not in text and "积分明细" not in text and "待发放" not in text
    assert text.count("管理员") == 3                                # the permission-denied reply, each time
    assert _balance(bot, "u1") == 0


async def test_switched_off_in_a_room_its_service_and_the_plugins_needing_it_are_off_there_too():
    from bot import Plugin

    other = Plugin(name="asker")
    ask = other.on_fullmatch("有积分吗")

    @ask.handle
    async def answer(ctx):
        try:
            ctx.service("points")
        except LookupError:
            await ctx.reply("没有")
            return
        await ctx.reply("有")

    needy = Plugin(name="needy", requires=["points"])
    needy.on_fullmatch("需要积分").handle(answer)
    settings = {"rooms": {"g2": {"plugins_disabled": ["points"]}}}
    async with harness(settings=settings) as bot:
        points = bot.runtime.plugins["points"]
    async with BotHarness(REPO, plugins=[points, other, needy], settings=settings) as bot:
        bot.room("g1", members=MEMBERS)
        bot.room("g2", members=MEMBERS)
        for room in ("g1", "g2"):
            await bot.say(room, "u1", "有积分吗")
            await bot.say(room, "u1", "需要积分")
            await bot.say(room, "u1", "签到")
        texts = [(m.room_id, m.text.split(" ", 1)[1][:4]) for m in bot.pop()]
    assert texts == [("g1", "有"), ("g1", "有"), ("g1", "签到成功"), ("g2", "没有")]
