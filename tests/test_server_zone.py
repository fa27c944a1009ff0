"""The bot's zone (qunbot.toml `bot.timezone`), never the server's, decides what "a day" is.

These tests set the process's zone to America/Los_Angeles themselves, so they guard the promise whatever zone
the machine running them is in (a server in UTC hid a day computed in the server's zone)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from bot.testing import BotHarness

ONBOARDING = """\
    targets: {topics: ["会员*"]}
    steps:
      - {id: day1, after_join: 1d, text: "{{ member.display }}，入群一天啦"}
"""


@pytest.fixture
def server_in_los_angeles(monkeypatch):
    """The process's local zone is Los Angeles (16 hours behind Shanghai in November)."""
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _project(tmp_path: Path) -> Path:
    (tmp_path / "sop").mkdir()
    (tmp_path / "qunbot.toml").write_text('[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    (tmp_path / "sop" / "on.yaml").write_text(textwrap.dedent(ONBOARDING), encoding="utf-8")
    return tmp_path


async def test_rejoining_later_the_same_bot_day_does_not_restart_onboarding(tmp_path, server_in_los_angeles):
    # 08:30 and 16:30 in Shanghai are one day there, but 2026-11-22 and 2026-11-23 in Los Angeles.
    assert time.localtime(1795393800).tm_mday == 22                 # the fixture took effect
    async with BotHarness(_project(tmp_path), plugins=[], start="2026-11-23T08:30:00+08:00") as bot:
        bot.room("g1", "会员群", members={"owner": "群主"})
        await bot.join("g1", {"u1": "Alice"})
        await bot.advance("4h")
        await bot.leave("g1", "u1")
        await bot.advance("4h")
        await bot.join("g1", {"u1": "Alice"})                       # 16:30 the same Shanghai day
        await bot.advance("2d")
    assert [m.text for m in bot.sent] == ["@Alice Alice，入群一天啦"]


async def test_a_rejoin_on_the_next_bot_day_does_restart_onboarding(tmp_path, server_in_los_angeles):
    # 23:30 and 00:30 in Shanghai are two days there, but both 2026-11-23 in Los Angeles.
    async with BotHarness(_project(tmp_path), plugins=[], start="2026-11-23T23:30:00+08:00") as bot:
        bot.room("g1", "会员群", members={"owner": "群主"})
        await bot.join("g1", {"u1": "Alice"})
        await bot.leave("g1", "u1")
        await bot.advance("1h")
        await bot.join("g1", {"u1": "Alice"})
        await bot.advance("3d")
    assert [m.text for m in bot.sent] == ["@Alice Alice，入群一天啦"] * 2


async def test_sign_in_days_follow_the_bot_zone_on_a_server_elsewhere(server_in_los_angeles):
    repo = Path(__file__).resolve().parent.parent
    async with BotHarness(repo, plugins=["points"], start="2026-11-23T08:30:00+08:00") as bot:
        bot.room("g1", "群", members={"u1": "Alice"})
        await bot.say("g1", "u1", "签到")
        await bot.advance("8h")                                      # 16:30 Shanghai: a new day in Los Angeles
        await bot.say("g1", "u1", "签到")
        texts = bot.pop_text()
    assert texts.count("签到成功") == 1 and "今天已经签过到" in texts
