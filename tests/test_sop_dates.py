"""Issue 15: a recurring step has a date range (`from` / `until`, or the days of its file's `start:`
sequence), which the engine, `check` and `preview` all follow."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.testing import BotHarness

TOML = '[bot]\ntimezone = "Asia/Shanghai"\n'


def make(tmp_path, sop: str):
    root = tmp_path / "p"
    (root / "sop").mkdir(parents=True)
    (root / "scripts_templates").mkdir()
    (root / "qunbot.toml").write_text(TOML, encoding="utf-8")
    (root / "sop" / "sale.yaml").write_text(textwrap.dedent(sop), encoding="utf-8")
    return root


SALE = """\
    targets: {rooms: [g1]}
    start: "2026-12-12 20:00"
    steps:
      - {id: warmup, offset: -1d, text: 明晚开场}
      - {id: open, offset: 0, text: 开场}
      - {id: daily, at: "09:00", text: 周年庆进行中%s}
"""


async def test_a_daily_step_in_a_sale_file_posts_only_on_the_sale_days(tmp_path):
    root = make(tmp_path, SALE % "")
    async with BotHarness(root, plugins=[], start="2026-12-01T00:00:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        sent = []
        for _ in range(40):
            await bot.advance("1d")
            sent += [(f"{bot.now:%m-%d}", m.text) for m in bot.pop()]
    daily = [day for day, text in sent if text == "周年庆进行中"]
    assert daily == ["12-12", "12-13"], sent  # 09:00 on 12-11 and 12-12, seen at the next day's check


async def test_until_any_keeps_a_daily_step_going_after_the_sale(tmp_path):
    root = make(tmp_path, SALE % ", until: 不限")
    async with BotHarness(root, plugins=[], start="2026-12-01T00:00:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        await bot.advance("20d")
        daily = [m for m in bot.sent if m.text == "周年庆进行中"]
    assert len(daily) == 10  # 12-11 … 12-20: from the first day of the sale on, without end


async def test_explicit_dates_bound_a_daily_step_inclusively(tmp_path):
    root = make(tmp_path, """\
        targets: {rooms: [g1]}
        from: 2026-12-03
        until: 2026-12-05
        steps:
          - {id: daily, at: "09:00", text: 早安}
          - {id: night, at: "22:00", text: 晚安, until: "2026-12-04 21:59"}
    """)
    async with BotHarness(root, plugins=[], start="2026-12-01T00:00:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        await bot.advance("10d")
        texts = [m.text for m in bot.sent]
    # 早安 12-03 … 12-05; 晚安's own until replaces the file's: 12-03 only (12-04 22:00 is after 21:59)
    assert texts.count("早安") == 3 and texts.count("晚安") == 1


def test_preview_shows_the_range_and_where_it_comes_from(tmp_path):
    root = make(tmp_path, SALE % "")
    out = CliRunner().invoke(main, ["--project", str(root), "sop", "preview", "--start", "2026-12-10T00:00",
                                    "--days", "5"]).stdout
    assert ("· daily 只在 12-11 00:00 到 12-12 23:59 之间发（按 start: 这一场的日子；要一直发，写 until: 不限）"
            in out), out
    assert out.count("周年庆进行中") == 2


@pytest.mark.parametrize(("bound", "message"), [
    ("until: 明年", "sop/sale.yaml:2: until: '明年' 要写成日期"),
    ("until: start+3d", "sop/sale.yaml:2: until: start+3d 是相对开场的时间，需要文件开头写 start:"),
])
def test_a_bad_bound_is_reported_on_its_line(tmp_path, bound, message):
    root = make(tmp_path, f"targets: {{rooms: [g1]}}\n{bound}\nsteps: [{{id: m, at: '08:00', text: x}}]\n")
    result = CliRunner().invoke(main, ["--project", str(root), "sop", "check"])
    assert result.exit_code == 1 and result.stderr.startswith(message), result.stderr
