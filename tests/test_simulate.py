"""`qunbot simulate` honours docs/simulate.md: JSON Lines out, virtual times, all event kinds."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main

REPO = Path(__file__).resolve().parent.parent
SPEC_SCENARIO = """\
start: 2026-11-23T07:55:00+08:00
bot: {id: bot, name: 小完子}
rooms:
  - id: g1
    topic: 完子研究所1群
    admins: [owner1]
    members:
      - {id: owner1, name: 群主}
      - {id: u1, name: Alice}
      - {id: u2, name: Bob}
events:
  - at: 2026-11-23T07:56:00+08:00
    say: {room: g1, from: u1, text: 菜单}
  - at: +10s
    say: {room: g1, from: u2, text: "@小完子 你好", mentions: [bot]}
  - at: +1m
    join: {room: g1, members: [{id: u9, name: 小红}], inviter: u1}
  - at: +1m
    rename: {room: g1, member: u9, alias: 上海-小红-设计师}
  - at: +1h
    say: {room: g1, from: u9, text: "@小完子 在吗", mentions: [bot]}
  - at: +1h
    leave: {room: g1, members: [u9]}
  - at: +1m
    private: {from: u1, text: ping}
  - say: {room: g1, from: stranger, text: ping}
"""


def run_cli(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def test_scenario_prints_one_json_line_per_send_at_virtual_times(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SPEC_SCENARIO, encoding="utf-8")
    code, out, err = run_cli(["--project", str(REPO), "simulate", str(scenario)])
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    # u9's join and rename also wake the newcomer rituals (welcome, icebreak: tests/plugins); here only the demo's
    rituals = ("加入「完子研究所1群」", "来破个冰吧", "群昵称改好啦")
    lines = [line for line in lines if not any(word in line["text"] for word in rituals)]
    assert [set(line) for line in lines] == [
        {"at", "room", "text", "mentions"}, {"at", "room", "text", "mentions"},
        {"at", "room", "text", "mentions"}, {"at", "to", "text", "mentions"}, {"at", "room", "text", "mentions"}]
    menu, hello, renamed, pong_dm, pong_room = lines
    assert menu["room"] == "g1" and menu["mentions"] == ["u1"] and menu["text"].startswith("@Alice ")
    assert "菜单" in SPEC_SCENARIO and "小完子能做这些" in menu["text"]
    assert hello["mentions"] == ["u2"] and hello["text"] == "@Bob 我在呢～ 发送「菜单」看看我能做什么"
    assert renamed["text"].startswith("@上海-小红-设计师 ")  # the group nickname is used after a rename
    assert pong_dm == {"at": pong_dm["at"], "to": "u1", "text": "pong", "mentions": []}
    assert pong_room["room"] == "g1" and pong_room["text"] == "pong"
    times = [datetime.fromisoformat(line["at"]) for line in lines]
    assert times == sorted(times)
    assert times[0] >= datetime.fromisoformat("2026-11-23T07:56:00+08:00")
    assert lines[0]["at"].endswith("+08:00") and "." in lines[0]["at"]  # ms precision, local offset
    assert times[2] >= datetime.fromisoformat("2026-11-23T08:58:10+08:00")
    assert times[3] >= datetime.fromisoformat("2026-11-23T09:59:10+08:00")


def test_output_is_deterministic(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SPEC_SCENARIO, encoding="utf-8")
    first = run_cli(["--project", str(REPO), "simulate", str(scenario)])[1]
    second = run_cli(["--project", str(REPO), "simulate", str(scenario)])[1]
    assert first == second and first


def test_bad_scenario_is_one_line_with_file_and_line(tmp_path):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(SPEC_SCENARIO.replace("say: {room: g1, from: u1, text: 菜单}",
                                              "say: {room: g7, from: u1, text: 菜单}"), encoding="utf-8")
    code, out, err = run_cli(["--project", str(REPO), "simulate", str(scenario)])
    assert code != 0 and out == ""
    assert f"{scenario}:13:" in err and "g7" in err
    assert len(err.strip().splitlines()) == 1


def test_logs_go_to_stderr_never_stdout(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SPEC_SCENARIO, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(REPO), "--log-level", "DEBUG",
                           "simulate", str(scenario)], capture_output=True, text=True, check=True)
    assert all(json.loads(line) for line in proc.stdout.splitlines())
    assert "qunbot started" in proc.stderr


def test_the_example_scenario_runs(repo):
    code, out, err = run_cli(["--project", str(repo), "simulate", str(repo / "examples" / "demo.yaml")])
    assert code == 0, err
    assert len(out.splitlines()) >= 3


MENTION_SCENARIO = """\
start: 2026-11-23T09:00:00+08:00
bot: {id: bot, name: 小完子}
rooms:
  - id: g1
    topic: 完子研究所1群
    admins: [owner1]
    members:
      - {id: owner1, name: 群主}
      - {id: u1, name: Alice}
      - {id: u2, name: Bob}
      - {id: u3, name: Bobby}
events:
  - at: +1m
    rename: {room: g1, member: u1, alias: 上海-Alice}
  - at: +1m
    say: {room: g1, from: u3, text: 签到}
  - at: +1m
    say: {room: g1, from: owner1, text: "调整积分 @Bobby +50 线下活动"}
  - at: +1m
    say: {room: g1, from: owner1, text: "调整积分 @上海-Alice\u2005+20 分享"}
  - at: +1m
    say: {room: g1, from: owner1, text: "调整积分 @Bob -1 测试"}
"""


def test_at_name_in_text_is_a_mention_by_display_name_or_group_nickname(tmp_path):
    """simulate.md: `@Name` in text (a display name or group nickname) mentions that member; the longest
    name wins (`@Bobby` is Bobby, not Bob)."""
    path = tmp_path / "s.yaml"
    path.write_text(MENTION_SCENARIO, encoding="utf-8")
    code, out, err = run_cli(["--project", str(REPO), "simulate", str(path)])
    assert code == 0, err
    texts = [json.loads(line)["text"] for line in out.splitlines()]
    assert texts[1:] == ["@群主 已为 Bobby 增加 50 积分（线下活动），当前 60 积分。",
                         "@群主 已为 上海-Alice 增加 20 积分（分享），当前 20 积分。",
                         "@群主 Bob 只有 0 积分，不能扣除 1 积分。"], texts


def test_project_may_follow_the_simulate_verb(tmp_path, monkeypatch):
    """simulate.md writes `qunbot simulate SCENARIO.yaml [--project DIR]`: the option works after the verb."""
    monkeypatch.chdir(tmp_path)  # not the repository: only --project can find its plugins
    code, out, err = run_cli(["simulate", str(REPO / "examples" / "demo.yaml"), "--project", str(REPO)])
    before = run_cli(["--project", str(REPO), "simulate", str(REPO / "examples" / "demo.yaml")])
    assert code == 0, err
    assert out == before[1] and out
