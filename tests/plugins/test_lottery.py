"""lottery: entries, eligibility, the deadline across restarts, and draws anyone can verify."""

from __future__ import annotations

import hashlib
import importlib.util
import random
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from bot._i18n import is_translated
from bot.cli import main
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob", "u3": "Carol", "u4": "Dave", "u5": "Eve"}


def _fairness():
    """The pure algorithm module, imported on its own as a member checking by hand would."""
    spec = importlib.util.spec_from_file_location("lottery_fairness", REPO / "plugins/lottery/fairness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("lottery_fairness", module)
    spec.loader.exec_module(module)
    return module


def _tables(bot: BotHarness):
    """The plugin's table classes, from the module the loader imported."""
    module = sys.modules[bot.runtime.plugins["lottery"].timers["draw"].__module__]
    return module.LotteryDraw, module.LotteryEntry


async def _harness_with_room(bot: BotHarness) -> None:
    bot.room("g1", "抽奖群", members=MEMBERS, admins=["owner1"])


async def _open(bot: BotHarness, args: str = "奖品=口红 名额=2 口令=我要抽奖 时长=10m") -> None:
    await bot.say("g1", "owner1", f"开始抽奖 {args}")


@pytest.fixture
def harness(repo):
    return BotHarness(repo, plugins=["lottery"])


async def test_more_entrants_than_prizes_draws_verifiable_winners(harness):
    fairness = _fairness()
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot)
        opened = bot.pop_text()
        assert "奖品：口红（2 个名额）" in opened and "我要抽奖" in opened
        for member in ("u3", "u1", "u5", "u2"):
            await bot.say("g1", member, "我要抽奖")
        assert bot.pop_text().count("参与成功") == 4
        await bot.advance("10m")
        [announcement] = bot.pop()
        LotteryDraw, _ = _tables(bot)
        with bot.db() as db:
            draw = db.exec(select(LotteryDraw)).one()
    commitment_posted = opened.split("sha256(种子) = ")[1].split()[0]
    assert hashlib.sha256(draw.seed.encode()).hexdigest() == commitment_posted == draw.commitment
    assert draw.seed in announcement.text  # the seed is revealed at the draw, not before
    assert draw.seed not in opened
    assert draw.entrants == ["u1", "u2", "u3", "u5"]
    assert draw.winners == fairness.draw_winners(draw.seed, ["u5", "u3", "u2", "u1"], 2)
    assert len(set(draw.winners)) == 2 and set(draw.winners) <= set(draw.entrants)
    assert set(announcement.mentions) == set(draw.winners)
    assert "共 4 人参与" in announcement.text and "都中奖" not in announcement.text


@pytest.mark.parametrize(("entrants", "prizes"), [(2, 3), (3, 3)])
async def test_not_more_entrants_than_prizes_everyone_wins(harness, entrants, prizes):
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot, f"奖品=面膜 名额={prizes} 口令=抽 时长=5m")
        members = ["u1", "u2", "u3"][:entrants]
        for member in members:
            await bot.say("g1", member, "抽")
        bot.pop()
        await bot.advance("5m")
        [announcement] = bot.pop()
    assert "所有参与者都中奖" in announcement.text
    assert sorted(announcement.mentions) == members


async def test_no_entrants(harness):
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot)
        bot.pop()
        await bot.advance("10m")
        text = bot.pop_text()
    assert "没有人参与" in text and "都中奖" not in text


async def test_duplicate_entries_count_once(harness):
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot)
        bot.pop()
        await bot.say("g1", "u1", "我要抽奖")
        await bot.say("g1", "u1", "  我要抽奖 ")
        await bot.say("g1", "u2", "我要抽奖")
        texts = [m.text for m in bot.pop()]
        _, LotteryEntry = _tables(bot)
        with bot.db() as db:
            entries = db.exec(select(LotteryEntry.member_id)).all()
    assert sorted(entries) == ["u1", "u2"]
    assert "已经参与过" in texts[1] and "第 2 位" in texts[2]


async def test_admins_are_excluded_unless_configured(repo):
    async with BotHarness(repo, plugins=["lottery"]) as bot:
        await _harness_with_room(bot)
        await _open(bot)
        await bot.say("g1", "owner1", "我要抽奖")
        await _open(bot, "奖品=书 名额=1 口令=抽书 时长=10m 含管理员=是")
        await bot.say("g1", "owner1", "抽书")
        bot.pop()
        _, LotteryEntry = _tables(bot)
        with bot.db() as db:
            entries = db.exec(select(LotteryEntry.draw_id, LotteryEntry.member_id)).all()
    assert entries == [(2, "owner1")]


async def test_member_who_joined_after_the_cutoff_is_ineligible(harness):
    async with harness as bot:
        await _harness_with_room(bot)
        await bot.join("g1", {"early": "早到"})            # 09:00
        await _open(bot, "奖品=口红 名额=1 口令=抽 时长=2h 入群早于=2026-11-23 09:30")
        await bot.advance("40m")
        await bot.join("g1", {"late": "晚到"})             # 09:40
        await bot.say("g1", "late", "抽")
        refused = bot.pop_text()
        await bot.say("g1", "early", "抽")
        await bot.say("g1", "u1", "抽")                    # present before the bot looked: eligible
        accepted = bot.pop_text()
        _, LotteryEntry = _tables(bot)
        with bot.db() as db:
            entries = sorted(db.exec(select(LotteryEntry.member_id)).all())
    assert "不能参与" in refused and "11月23日 09:30 之前入群" in refused
    assert accepted.count("参与成功") == 2
    assert entries == ["early", "u1"]


async def test_non_admin_cannot_start_a_draw(harness):
    async with harness as bot:
        await _harness_with_room(bot)
        await bot.say("g1", "u1", "开始抽奖 奖品=口红 名额=1 口令=抽 时长=10m")
        bot.pop()
        await bot.say("g1", "u2", "抽")
        LotteryDraw, _ = _tables(bot)
        with bot.db() as db:
            draws = db.exec(select(LotteryDraw)).all()
        assert bot.pop_text() == ""
    assert draws == []


async def test_bad_command_explains_usage(harness):
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot, "奖品=口红 名额=零 时长=10m")
        text = bot.pop_text()
    assert "抽奖没有开始：名额: 要写整数（现在是 零）" in text and "用法" in text


@pytest.mark.parametrize(("args", "reason"), [
    ("名额=3 时长=10m", "抽奖没有开始：缺少奖品"),
    ("奖品=口红 名额=0", "抽奖没有开始：名额: 不能小于 1（现在是 0）"),
    ("奖品=口红 人员=3", "抽奖没有开始：不认识「人员」"),
    ("口红", "抽奖没有开始：「口红」要写成 名称=值"),
    ("奖品=口红 截止=25:00", "抽奖没有开始：截止: 时间 25:00 不对"),
])
async def test_a_bad_command_is_answered_in_chinese_with_what_to_type(harness, args, reason):
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot, args)
        text = bot.pop_text()
    assert text.startswith(f"@群主 {reason}") and "用法：开始抽奖 奖品=口红" in text, text
    assert is_translated(text)


async def test_draw_open_across_a_crash_is_drawn_once_at_its_deadline(harness):
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot, "奖品=口红 名额=1 口令=抽 时长=10m")
        await bot.say("g1", "u1", "抽")
        await bot.restart(crash=True)
        await bot.say("g1", "u2", "抽")          # the entry keyword still works after the restart
        await bot.say("g1", "u1", "抽")          # and the earlier entry was kept
        texts = bot.pop_text()
        await bot.advance("10m")
        announcement = bot.pop_text()
        await bot.restart(crash=True)
        await bot.advance("1d")
        again = bot.pop_text()
        LotteryDraw, _ = _tables(bot)
        with bot.db() as db:
            draw = db.exec(select(LotteryDraw)).one()
    assert "第 2 位" in texts and "已经参与过" in texts
    assert announcement.count("期抽奖开奖") == 1 and "离线" not in announcement
    assert draw.entrants == ["u1", "u2"] and draw.status == "drawn"
    assert again == ""


async def test_deadline_passed_while_down_draws_at_once_with_a_note(harness):
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot, "奖品=口红 名额=1 口令=抽 时长=10m")
        await bot.say("g1", "u1", "抽")
        bot.pop()
        await bot.sim.stop(cleanup=False)              # the bot is down...
        await bot.sim.clock.advance(timedelta(hours=1))  # ...while the deadline passes
        await bot.sim.start()
        await bot.settle()
        text = bot.pop_text()
    assert "离线" in text and "补开" in text and "@Alice" in text


def _verify(bot: BotHarness, draw_id: int) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(REPO), "lottery", "verify", str(draw_id),
                                       "--db", bot.sim.db_url])
    return result.exit_code, result.output


async def test_verify_matches_and_detects_tampering(harness):
    async with harness as bot:
        await _harness_with_room(bot)
        await _open(bot, "奖品=口红 名额=2 口令=抽 时长=10m")
        for member in ("u1", "u2", "u3", "u4", "u5"):
            await bot.say("g1", member, "抽")
        await bot.advance("10m")
        code, output = _verify(bot, 1)
        assert code == 0 and "MATCH" in output, output
        LotteryDraw, _ = _tables(bot)
        with bot.db() as db:
            draw = db.get(LotteryDraw, 1)
            loser = next(m for m in draw.entrants if m not in draw.winners)
            draw.winners = [loser, *draw.winners[1:]]
            db.add(draw)
            db.commit()
        code, output = _verify(bot, 1)
        assert code == 1 and "MISMATCH" in output and "recomputed winners" in output
        with bot.db() as db:
            draw = db.get(LotteryDraw, 1)
            draw.seed = "0" * 64
            db.add(draw)
            db.commit()
        code, output = _verify(bot, 1)
        assert code == 1 and "posted commitment" in output
        code, output = _verify(bot, 99)
        assert code == 1 and "no draw with id 99" in output


def test_draw_is_deterministic_and_order_independent():
    fairness = _fairness()
    seed = "ab" * 32
    assert fairness.draw_winners(seed, ["c", "a", "b", "a"], 2) == fairness.draw_winners(seed, ["b", "c", "a"], 2)
    assert fairness.draw_winners(seed, ["a"], 3) == ["a"]
    assert fairness.draw_winners(seed, [], 3) == []


def test_draw_is_unbiased_chi_square():
    """Each of 6 entrants should be first winner 1/6 of the time; each unordered pair of 2 winners 1/15.

    Fixed seeds make the test deterministic; the critical values are chi-square at p = 0.001."""
    fairness = _fairness()
    entrants = ["u1", "u2", "u3", "u4", "u5", "u6"]
    rng = random.Random(20261123)
    trials = 6000
    first: dict[str, int] = dict.fromkeys(entrants, 0)
    pairs: dict[frozenset[str], int] = {}
    for _ in range(trials):
        seed = f"{rng.getrandbits(256):064x}"
        winners = fairness.draw_winners(seed, entrants, 2)
        first[winners[0]] += 1
        pairs[frozenset(winners)] = pairs.get(frozenset(winners), 0) + 1
    expected = trials / 6
    chi_first = sum((count - expected) ** 2 / expected for count in first.values())
    assert chi_first < 20.515  # df = 5
    assert len(pairs) == 15
    expected_pair = trials / 15
    chi_pairs = sum((count - expected_pair) ** 2 / expected_pair for count in pairs.values())
    assert chi_pairs < 36.123  # df = 14
    # the test can fail: a biased draw (always keep the sorted order) is rejected by the same statistic
    biased = {e: (trials if e == "u1" else 0) for e in entrants}
    assert sum((c - expected) ** 2 / expected for c in biased.values()) > 20.515


@pytest.mark.skipif(not (REPO / "plugins/points").exists(), reason="needs the points plugin (issue 5)")
async def test_level_and_sign_in_conditions_use_the_points_service(repo):
    async with BotHarness(repo, plugins=["points", "lottery"]) as bot:
        await _harness_with_room(bot)
        points = bot.runtime.plugins["points"].service
        with bot.db() as db:
            points.grant(db, room_id="g1", member_id="u1", amount=1_000_000, reason="test", source="test",
                         key="rich-u1", at=bot.now)
            db.commit()
        await _open(bot, "奖品=口红 名额=1 口令=抽 时长=10m 等级=2")
        bot.pop()
        await bot.say("g1", "u2", "抽")
        refused = bot.pop_text()
        await bot.say("g1", "u1", "抽")
        accepted = bot.pop_text()
        await _open(bot, "奖品=面膜 名额=1 口令=签 时长=10m 签到=是")
        bot.pop()
        await bot.say("g1", "u2", "签")
        not_signed = bot.pop_text()
    assert "等级需达到 V2" in refused and "参与成功" in accepted
    assert "需要今天已签到" in not_signed
