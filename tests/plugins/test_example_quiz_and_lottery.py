"""examples/quiz_and_lottery.yaml runs through `qunbot simulate`: a quiz round, then a verifiable draw."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (REPO / "plugins/points").exists(), reason="needs the points plugin (issue 5)")


def test_example_runs_a_quiz_round_and_a_lottery(tmp_path):
    db = f"sqlite:///{tmp_path}/example.db"
    result = CliRunner().invoke(main, ["--project", str(REPO), "simulate", str(REPO / "examples/quiz_and_lottery.yaml"),
                                       "--db", db])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    texts = [line["text"] for line in lines]
    assert sum("题时间到" in t for t in texts) == 3
    scoreboard = next(t for t in texts if "排行榜" in t)
    assert scoreboard.index("Carol：20 积分") < scoreboard.index("Alice：10 积分")
    assert "Bob：10 积分" in scoreboard                      # wrong first answer to Q1, right on Q3
    opened = next(t for t in texts if "抽奖开始" in t)
    drawn = next(line for line in lines if "期抽奖开奖" in line["text"])
    seed = drawn["text"].split("种子：")[1].split()[0]
    assert hashlib.sha256(seed.encode()).hexdigest() in opened
    assert len(drawn["mentions"]) == 2 and set(drawn["mentions"]) <= {"u1", "u2", "u3", "u4"}
    assert sum("参与成功" in t for t in texts) == 4 and sum("已经参与过" in t for t in texts) == 1
    verify = CliRunner().invoke(main, ["--project", str(REPO), "lottery", "verify", "1", "--db", db])
    assert verify.exit_code == 0 and "MATCH" in verify.output
