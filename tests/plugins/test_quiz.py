"""quiz: first right answer by arrival wins, forgiving matching, one answer per member, points once."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from bot.cli import main
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO
pytestmark = pytest.mark.skipif(not (REPO / "plugins/points").exists(), reason="needs the points plugin (issue 5)")
MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob", "u3": "Carol"}


def _module(bot: BotHarness):
    return sys.modules[bot.runtime.plugins["quiz"].timers["close"].__module__]


def _balance(bot: BotHarness, member: str) -> int:
    with bot.db() as db:
        return bot.runtime.plugins["points"].service.balance(db, "g1", member)


def _harness(**settings) -> BotHarness:
    quiz = {"question_seconds": 60, "questions_per_round": 3, **settings}
    return BotHarness(PROJECT, plugins=["points", "quiz"], settings={"plugins": {"quiz": quiz}})


async def _start(bot: BotHarness, args: str = "skincare") -> str:
    bot.room("g1", "答题群", members=MEMBERS, admins=["owner1"])
    await bot.say("g1", "owner1", f"开始答题 {args}")
    return bot.pop_text()


async def test_first_by_arrival_wins_when_two_answer_in_the_same_instant():
    async with _harness() as bot:
        opening = await _start(bot)
        await bot.say("g1", "u2", "选B", drain=False)   # same virtual instant, Bob's message arrives first
        await bot.say("g1", "u1", "B", drain=False)
        await bot.drain()
        replies = bot.pop()
        with bot.db() as db:
            rows = db.exec(select(_module(bot).QuizAnswer).order_by("id")).all()
        assert len({r.answered_at for r in rows}) == 1   # the very same virtual instant
        assert _balance(bot, "u2") == 10 and _balance(bot, "u1") == 0
    assert "第 1/3 题（10 积分）" in opening and "B. 透明质酸" in opening
    assert [(r.member_id, r.correct, r.awarded) for r in rows] == [("u2", True, 10), ("u1", True, 0)]
    assert len(replies) == 1 and replies[0].mentions == ("u2",) and "抢答成功" in replies[0].text


async def test_first_k_right_answers_win():
    async with _harness(winners_per_question=2) as bot:
        await _start(bot)
        for member in ("u1", "u2", "u3"):
            await bot.say("g1", member, "b")
        assert [_balance(bot, m) for m in ("u1", "u2", "u3")] == [10, 10, 0]


CHOICE_B = ["B", "b", "Ｂ", "ｂ", "选B", "答案B", "答案是 b。", "B.", " (B) ", "我选b！", "透明质酸"]


@pytest.mark.parametrize("said", CHOICE_B)
async def test_forgiving_choice_matching(said):
    async with _harness() as bot:
        await _start(bot)
        await bot.say("g1", "u1", said)
        assert "抢答成功" in bot.pop_text()
        assert _balance(bot, "u1") == 10


async def test_forgiving_free_answer_matching_and_chatter_is_not_an_answer():
    async with _harness() as bot:
        await _start(bot)
        await bot.advance("60s")                        # question 2 is a free answer (UVB, 20 points)
        assert "第 2/3 题（20 积分）" in bot.pop_text()
        await bot.say("g1", "u3", "这道题我好像在哪本护肤书上看到过但是想不起来了呢")   # long chatter: not an attempt
        await bot.say("g1", "u1", "ｕｖ-ｂ！")
        await bot.say("g1", "u3", "中波紫外线")
        assert _balance(bot, "u1") == 20
        with bot.db() as db:
            rows = db.exec(select(_module(bot).QuizAnswer).where(_module(bot).QuizAnswer.question == 1)).all()
    assert sorted((r.member_id, r.correct) for r in rows) == [("u1", True), ("u3", True)]


async def test_only_the_first_answer_of_a_member_counts_and_points_are_granted_once():
    async with _harness() as bot:
        await _start(bot)
        await bot.say("g1", "u1", "A")                  # wrong, and it was Alice's one answer
        await bot.say("g1", "u1", "B")                  # does not count
        await bot.say("g1", "u2", "B")
        await bot.say("g1", "u2", "B")                  # Bob again: no second grant
        replies = bot.pop()
        assert _balance(bot, "u1") == 0 and _balance(bot, "u2") == 10
        with bot.db() as db:
            rows = db.exec(select(_module(bot).QuizAnswer)).all()
            service = bot.runtime.plugins["points"].service
            again = service.grant(db, room_id="g1", member_id="u2", amount=10, reason="x", source="quiz",
                                  key=f"quiz:{rows[0].round_id}:0:u2", at=datetime.fromisoformat(
                                      "2026-11-23T09:00:00+08:00"))
    assert [(r.member_id, r.text) for r in rows] == [("u1", "A"), ("u2", "B")]
    assert len(replies) == 1 and again is False


async def test_round_reveals_answers_then_shows_scoreboard_and_stores_results():
    async with _harness() as bot:
        await _start(bot)
        await bot.say("g1", "u1", "B")
        await bot.advance("60s")
        first_close = bot.pop_text()
        await bot.say("g1", "u2", "uvb")
        await bot.restart(crash=True)                   # the open question's timer survives
        await bot.advance("60s")
        await bot.say("g1", "u2", "B")
        await bot.advance("60s")
        final = bot.pop_text()
        await bot.advance("1d")
        after = bot.pop_text()
        module = _module(bot)
        with bot.db() as db:
            quiz = db.exec(select(module.QuizRound)).one()
            awarded = {(a.question, a.member_id): a.awarded for a in db.exec(select(module.QuizAnswer))}
    assert "答案：B. 透明质酸" in first_close and "解析：透明质酸" in first_close and "@Alice" in first_close
    assert "第 2/3 题" in first_close
    assert "答案：UVB" in final and "第 3/3 题" in final and "排行榜" in final
    assert final.index("1. Bob：30 积分（答对 2 题）") < final.index("2. Alice：10 积分（答对 1 题）")
    assert after == ""
    assert quiz.status == "finished" and awarded == {(0, "u1"): 10, (1, "u2"): 20, (2, "u2"): 10}


async def test_admins_start_and_members_cannot():
    async with _harness() as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u1", "开始答题")
        assert "答题开始" not in bot.pop_text()
        await bot.runtime.invoke_action(bot.sim.account, "quiz", "start", room_id="g1", key="sop:quiz",
                                        params={"questions": 1, "seconds": 30})
        await bot.drain()
        assert "共 1 题，每题限时 30秒" in bot.pop_text()
        await bot.advance("30s")
        assert "排行榜" in bot.pop_text()
        await bot.runtime.invoke_action(bot.sim.account, "quiz", "start", room_id="g1", key="sop:quiz2",
                                        params={"questions": 1, "seconds": 60})
        await bot.drain()
        started = bot.pop_text()
        assert "每题限时 1分钟" in started and "1分，" not in started  # 分 alone, next to 积分, read as points


def test_check_reports_bad_bank_with_file_and_line(tmp_path):
    (tmp_path / "data/quiz").mkdir(parents=True)
    (tmp_path / "qunbot.toml").write_text(
        f'[plugins]\ndirs = ["{REPO / "plugins"}"]\nenabled = ["points", "quiz"]\n', encoding="utf-8")
    (tmp_path / "data/quiz/bad.yaml").write_text(
        "name: 坏题库\nquestions:\n  - question: 一加一？\n    choices: [一, 二]\n    answer: C\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "check"])
    assert result.exit_code != 0
    assert "bad.yaml:3: questions.0: answer 'C' 不在选项 A-B 里" in result.stderr


async def test_an_sop_step_starts_a_round_through_the_action_hook_and_it_survives_a_restart():
    async with _harness() as bot:
        bot.room("g1", "答题群", members=MEMBERS, admins=["owner1"])
        ran = await bot.runtime.invoke_action("default", "quiz", "start", room_id="g1",
                                              params={"bank": "skincare", "questions": 2}, key="sop:quiz:1")
        await bot.drain()
        assert ran and "第 1/2 题" in bot.pop_text()
        await bot.restart()                                # the question's close timer is durable
        await bot.say("g1", "u1", "B")
        await bot.advance("60s")
        revealed = bot.pop_text()
        assert "第 2/2 题" in revealed and _balance(bot, "u1") == 10


async def test_an_unknown_bank_is_answered_with_the_banks_there_are_and_no_server_paths():
    async with _harness() as bot:
        reply = await _start(bot, "没这个 3")
    assert reply.startswith("答题没有开始：没有找到题库「没这个」（现有题库：护肤小知识）"), reply
    assert "用法：开始答题 题库名 题数" in reply and "/" not in reply.split("用法")[0]
