"""examples/newcomer_first_day.yaml through `qunbot simulate`: greeted, introduced, renamed, signed in, points."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_a_newcomers_first_day(tmp_path):
    result = CliRunner().invoke(main, ["--project", str(REPO), "simulate",
                                       str(REPO / "examples/newcomer_first_day.yaml"),
                                       "--db", f"sqlite:///{tmp_path}/example.db"])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    to_u9 = [line for line in lines if "u9" in line["mentions"]]
    greeting, ask, thanks, renamed, signed_in, balance = to_u9
    assert greeting["mentions"] == ["u9", "u8"] and "欢迎 2 位新朋友" in greeting["text"]  # one message for both
    assert "感谢 Alice 的邀请" in greeting["text"]
    assert ask["mentions"] == ["u9", "u8"] and "「城市-昵称-职业」" in ask["text"]
    assert thanks["text"].startswith("@小红 谢谢你的自我介绍") and "送你 10 积分" in thanks["text"]
    assert renamed["text"].startswith("@上海-小红-设计师 群昵称改好啦")
    assert "签到成功" in signed_in["text"] and "+10 积分" in signed_in["text"]
    assert "你的积分：20" in balance["text"]                  # 10 for the introduction + 10 for signing in
    reminders = [line for line in lines if "小提醒" in line["text"]]
    assert [r["mentions"] for r in reminders] == [["u8"]]     # 小刚 only, once
    assert datetime.fromisoformat(reminders[0]["at"]) >= datetime.fromisoformat("2026-11-23T11:30:10+08:00")
    listing = lines[-1]
    assert listing["mentions"] == ["owner1"] and "（1 人）" in listing["text"] and "小刚" in listing["text"]
    assert "小红" not in listing["text"]
    assert sum("谢谢你的自我介绍" in line["text"] for line in lines) == 1
