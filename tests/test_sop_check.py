"""SOP files are checked like code: file:line errors, the long-term group rule, and the CLI around them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field
from test_sop_engine import engine_of, project

from bot import Context, Plugin
from bot._config import load_config
from bot.cli import main
from bot.sop._check import load_project
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parent.parent
NOW = datetime.fromisoformat("2026-11-23T09:00:00+08:00")


def problems(tmp_path: Path, sop: str, templates: dict[str, str] | None = None, toml: str = "") -> list[str]:
    root = project(tmp_path, {"x.yaml": sop}, templates, toml)
    return load_project(root, load_config(root), now=NOW)[1]


def test_schema_errors_name_file_and_line(tmp_path):
    found = problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - id: m
            at: "08:00"
            tempalte: a.j2
    """)
    assert len(found) == 1 and found[0].startswith("sop/x.yaml:5: steps.m.tempalte")


def test_bad_times_and_missing_pieces_are_reported(tmp_path):
    assert "sop/x.yaml:3: steps.m.at" in problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "8点", text: 早}
    """)[0]
    assert "需要在文件开头写 start:" in problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps: [{id: m, offset: +1h, text: 早}]
    """)[0]
    bad_cron = problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, cron: "0 25 * * *", text: 早}
    """)[0]
    assert bad_cron.startswith("sop/x.yaml:3: steps.m.cron")
    missing = problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", template: nope/none.j2}
    """)[0]
    assert "找不到模板 nope/none.j2" in missing
    assert problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", text: 早, file: img/none.png}
    """)[0].startswith("sop/x.yaml:3: steps.m.file: 项目文件夹里没有 'img/none.png'")
    assert "qunbot.toml 里没有哪个群带标签 'vip'" in problems(tmp_path, """\
        targets: {tags: [vip]}
        steps: [{id: m, at: "08:00", text: 早}]
    """)[0]


def test_undefined_template_variables_are_reported_with_what_is_available(tmp_path):
    found = problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", template: t.j2}
    """, {"t.j2": "你好 {{ member.name }}"})
    assert found[0].startswith("sop/x.yaml:3: steps.m") and "member" in found[0]
    ok = problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, after_join: 1d, template: t.j2}
    """, {"t.j2": "你好 {{ member.name }}"})
    assert ok == []


MARKETING = """\
    group: {group}
    targets: {{topics: ["完子会员*"]}}
    steps:
      - {{id: morning, at: "08:00", text: 早安}}
      - id: sale
        at: "12:00"
        text: 今日特价
        kind: marketing
      - {{id: night, at: "22:00", text: 晚安}}
"""


def test_the_marketing_share_rule_flags_a_long_term_file_and_spares_a_flash_group(tmp_path):
    found = problems(tmp_path, MARKETING.format(group="long-term"))
    assert len(found) == 1
    assert found[0].startswith("sop/x.yaml:8: 长期群营销比例超了（群名 完子会员*）：从 ")
    assert "的 7 天里 21 条有 7 条是营销（33%，[sop] marketing_share 只允许 20%）；另外还有" in found[0]
    assert problems(tmp_path, MARKETING.format(group="flash")) == []
    relaxed = '[bot]\ntimezone = "Asia/Shanghai"\n[sop]\nmarketing_share = 0.4\n'
    assert problems(tmp_path, MARKETING.format(group="long-term"), toml=relaxed) == []


def test_the_rule_checks_windows_that_do_not_start_at_a_post(tmp_path):
    # From +0.5d to +7.5d the week holds only the two sales (100%); every window that starts at a post
    # holds a content post too (at most 2 of 3 = 67%, under the 70% allowed here).
    relaxed = '[bot]\ntimezone = "Asia/Shanghai"\n[sop]\nmarketing_share = 0.7\n'
    found = problems(tmp_path, """\
        targets: {topics: ["完子会员*"]}
        start: "2026-12-01T08:00:00+08:00"
        steps:
          - {id: hello, offset: 0, text: 你好}
          - {id: sale1, offset: +1d, text: 特价, kind: marketing}
          - {id: sale2, offset: +6d, text: 特价, kind: marketing}
          - {id: bye, offset: +7d12h, text: 再见}
    """, toml=relaxed)
    assert len(found) == 1 and "从 2026-12-01 20:00 起的 7 天里 2 条有 2 条是营销" in found[0]


def test_a_weekly_sale_in_a_daily_rhythm_stays_under_the_share(tmp_path):
    assert problems(tmp_path, """\
        targets: {topics: ["完子会员*"]}
        steps:
          - {id: morning, at: "08:00", text: 早安}
          - {id: sale, at: "12:00", days: 周六, text: 周末特价, kind: marketing}
    """) == []


class LotteryParams(BaseModel):
    prize: str
    winners: int = Field(gt=0)


def lottery_plugin() -> Plugin:
    plugin = Plugin("raffle")

    @plugin.action("start", params=LotteryParams)
    async def start(ctx: Context, params: LotteryParams) -> None:
        await ctx.say(f"抽奖开始：{params.prize}，{params.winners} 位")

    return plugin


ACTION = """\
    group: flash
    targets: {{rooms: [f1, f2]}}
    start: "2026-11-23T20:00:00+08:00"
    steps:
      - {{id: open, offset: 0, text: 开场}}
      - id: draw
        offset: +1h
        action:
          plugin: raffle
          name: start
          params: {{prize: 面膜, winners: {winners}}}
"""


async def test_a_step_starts_a_plugin_action_once_per_room_with_validated_params(tmp_path):
    root = project(tmp_path, {"a.yaml": ACTION.format(winners=3)})
    bot = BotHarness(root, plugins=[lottery_plugin()], start="2026-11-23T19:00:00+08:00")
    bot.room("f1", "快闪1群", members={"u1": "Alice"})
    bot.room("f2", "快闪2群", members={"u1": "Alice"})
    async with bot:
        assert engine_of(bot).problems == {}
        await bot.advance("3h")
        await bot.restart(crash=True)
        await bot.advance("1h")
    draws = [(m.at.isoformat(timespec="minutes"), m.room_id, m.text) for m in bot.sent if "抽奖" in m.text]
    assert draws == [("2026-11-23T21:00+08:00", "f1", "抽奖开始：面膜，3 位"),
                     ("2026-11-23T21:00+08:00", "f2", "抽奖开始：面膜，3 位")]


async def test_invalid_action_params_are_a_file_line_error_and_the_file_does_not_run(tmp_path):
    root = project(tmp_path, {"a.yaml": ACTION.format(winners=0)})
    async with BotHarness(root, plugins=[lottery_plugin()], start="2026-11-23T19:00:00+08:00") as bot:
        problem = engine_of(bot).problems["a"]
        await bot.advance("3h")
    assert problem.startswith("sop/a.yaml:11: steps.draw.action.params.winners: 要大于 0（现在是 0）")
    assert bot.sent == []


def test_the_samples_pass_sop_check_and_qunbot_check():
    result = CliRunner().invoke(main, ["--project", str(REPO), "sop", "check"])
    assert result.exit_code == 0, result.stderr
    assert "daily, flash_sale, onboarding" in result.stdout
    assert ("SOP 检查通过：3 个文件 daily（每日节奏）、flash_sale（双十二快闪专场）、onboarding（新人陪伴）"
            in result.stdout)
    result = CliRunner().invoke(main, ["--project", str(REPO), "check"])
    assert "sop/" not in result.output, result.output


def test_qunbot_check_includes_sop_problems(tmp_path):
    project(tmp_path, {"x.yaml": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '8:70', text: x}\n"})
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "check"])
    assert result.exit_code == 1 and "sop/x.yaml:3: steps.m.at" in result.stderr
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "sop", "check"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("sop/x.yaml:3: steps.m.at: 时间 '8:70' 要写成 时:分")
    assert "SOP 检查未通过：1 个问题" in result.stderr


def test_preview_shows_a_week_of_the_samples_with_rendered_text():
    args = ["--project", str(REPO), "sop", "preview", "--days", "7", "--start", "2026-12-11T00:00:00+08:00"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith("SOP 预览：2026-12-11 00:00 起 7 天（到 12-18 00:00，时区 Asia/Shanghai）")
    assert "  flash_sale  双十二快闪专场（快闪群） → 群名以「快闪」开头的群：9 条" in out
    assert "12月11日 周五" in out and "12月17日 周四" in out and "12月18日" not in out
    assert "  20:00  flash_sale.warmup  [营销]  → 群名以「快闪」开头的群" in out
    assert "明晚 20:00 快闪专场开抢！" in out and "📎 附件：assets/flash/serum.png" in out
    assert out.count("daily.morning") == 7 and out.count("daily.noon_topic") == 5   # weekdays only
    assert "onboarding.day1  [内容]  → 群名以「完子会员」开头的群，@新成员" in out
    assert "  onboarding.day3  [内容]  → 私聊新成员（群名以「完子会员」开头的群）" in out
    assert "（入群后的步骤按一位在 12-11 00:00 入群的新成员计算）" in out
    lines = out.splitlines()
    flash = [line for line in lines if "flash_sale." in line]
    times = [line.split()[0] for line in flash]
    assert times == ["20:00", "18:00", "20:00", "20:10", "20:30", "20:55", "21:00", "21:50", "22:00"]
    assert "▶ 启动插件动作 lottery.start（prize: 修护精华正装 1 瓶，winners: 3，duration: 10m，keyword: 抽奖）" in out
    only = CliRunner().invoke(main, [*args, "--room", "快闪1群"]).stdout
    assert "daily." not in only and only.count("flash_sale.") == 9
    assert "（daily、onboarding 不发到「快闪1群」）" in only
    by_id = CliRunner().invoke(main, [*args, "--room", "g1"]).stdout
    assert "共 0 条" in by_id and "请用 --room 加群名预览" in by_id


def _variant_previews(tmp_path: Path) -> dict[str, str]:
    """Preview a two-variant step for g1..g3; return the text preview shows for each room."""
    root = project(tmp_path, {"v.yaml": """\
        targets: {topics: ["完子会员*"], rooms: [g1, g2, g3]}
        steps: [{id: noon, at: "12:30", variants: [v/a.j2, v/b.j2]}]
    """}, {"v/a.j2": "开场A", "v/b.j2": "开场B"})
    base = ["--project", str(root), "sop", "preview", "--days", "1", "--start", "2026-11-23T09:00"]
    every = CliRunner().invoke(main, base).stdout
    assert ("  12:30  v.noon  [内容]  → 群 g1、群 g2、群 g3、群名以「完子会员」开头的群  2 个版本，每个群固定用其中一个"
            in every)
    assert "── 版本 1（v/a.j2）\n         开场A\n         ── 版本 2（v/b.j2）\n         开场B" in every
    by_topic = CliRunner().invoke(main, [*base, "--room", "完子会员1群"]).stdout   # no room id: both shown
    assert "2 个版本，每个群固定用其中一个" in by_topic
    shown = {}
    for room in ("g1", "g2", "g3"):
        one = CliRunner().invoke(main, [*base, "--room", room]).stdout
        chosen = next(n for n in (1, 2) if f"这个群用版本 {n}/2" in one)
        assert f"（v/{'ab'[chosen - 1]}.j2）\n         开场{'AB'[chosen - 1]}" in one
        shown[room] = f"开场{'AB'[chosen - 1]}"
    return shown


def test_preview_shows_every_variant_and_which_one_a_given_room_gets(tmp_path):
    assert set(_variant_previews(tmp_path)) == {"g1", "g2", "g3"}


async def test_the_variant_preview_shows_for_a_room_is_the_one_the_engine_sends(tmp_path):
    shown = _variant_previews(tmp_path)
    async with BotHarness(tmp_path, plugins=[], start="2026-11-23T09:00:00+08:00") as bot:
        for room in shown:
            bot.room(room, "别的群名", members={"u1": "Alice"})
        await bot.advance("4h")
    assert {m.room_id: m.text for m in bot.sent} == shown
    assert set(shown.values()) == {"开场A", "开场B"}


def test_preview_says_when_a_quiet_file_posts_next_and_when_a_sale_is_over():
    base = ["--project", str(REPO), "sop", "preview", "--days", "7"]
    before = CliRunner().invoke(main, [*base, "--start", "2026-11-23T09:00"]).stdout
    assert ("  flash_sale  双十二快闪专场（快闪群） → 群名以「快闪」开头的群：0 条；下一条在 2026-12-11 20:00，"
            "用 --start 2026-12-10 查看") in before
    after = CliRunner().invoke(main, [*base, "--start", "2027-01-01T09:00"]).stdout
    assert "0 条；这一场（2026-12-12 20:00 开始）已经结束" in after


def test_preview_rejects_a_bad_start():
    result = CliRunner().invoke(main, ["--project", str(REPO), "sop", "preview", "--start", "明天"])
    assert result.exit_code == 2 and "ISO 8601" in result.stderr


def test_inline_text_is_checked_for_syntax_and_names(tmp_path):
    assert problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", text: "早安 {{ mebmer.name }}"}
    """)[0].startswith("sop/x.yaml:3: steps.m.text: 用了没有定义的变量 mebmer（可以用的变量：bot_name、now、room")
    assert problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", text: "早安 {{ now|cn_date }"}
    """)[0].startswith("sop/x.yaml:3: steps.m.text:")
    assert "这个值没有 .nme 这一项" in problems(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, after_join: 1d, text: "欢迎 {{ member.nme }}"}
    """)[0]


STEP = "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', %s}\n"


@pytest.mark.parametrize(("sop", "templates", "expected"), [
    (STEP % "template: t.j2", {"t.j2": "早安".encode("gbk")},
     "sop/x.yaml:3: steps.m: scripts_templates/t.j2:1: 文件不是 UTF-8 编码"),
    (STEP % "template: t.j2", {"t.j2": "早安\n{% if %}"},
     "sop/x.yaml:3: steps.m: scripts_templates/t.j2:2: %} 前面缺少内容"),
    (STEP % "template: t.j2", {"t.j2": "早安 {% include 'gone.j2' %}"},
     "sop/x.yaml:3: steps.m: t.j2: gone.j2: 找不到模板 gone.j2"),
    (STEP % "template: t.j2", {"t.j2": "{% include 't.j2' %}"},
     "sop/x.yaml:3: steps.m: scripts_templates/t.j2:1: 模板嵌套太深"),
    (STEP % "text: '{{ now|cn_dat }}'", {}, "sop/x.yaml:3: steps.m: sop/x.yaml:3:1: 没有叫 cn_dat 的过滤器"),
    (STEP % "text: x, days: 星期八", {}, "sop/x.yaml:3: steps.m: 不认识的日子 '星期八'：请写 周一…周日"),
    ("targets: {rooms: [g1]}\nsteps:\n  - {id: 早 安, at: '08:00', text: x}\n", {},
     "sop/x.yaml:3: steps.早 安.id: 步骤 id '早 安' 只能用字母、数字、_、- 和汉字，不能有空格"),
    ("targets: {rooms: [g1]}\nsteps:\n\t- {id: m, at: '08:00', text: x}\n", {},
     "sop/x.yaml:3: 这一行用了 Tab 缩进：YAML 只能用空格缩进"),
    ("targets: {rooms: [g1]}\nsteps: [{id: m, at: '08:00', text: x}]\nsteps: []\n", {},
     "sop/x.yaml:3: 键 steps 写了两次"),
    ("targets: {rooms: [g1]}\nsteps: {id: m, at: '08:00', text: x}\n", {},
     "sop/x.yaml:2: steps: 要写列表（如 [a, b]）"),
    ("target: {rooms: [g1]}\nsteps: [{id: m, at: '08:00', text: x}]\n", {},
     "sop/x.yaml:1: target: 不认识的键 target，是不是想写 targets？"),
])
def test_common_admin_mistakes_are_file_line_errors(tmp_path, sop, templates, expected):
    root = project(tmp_path, {}, toml="")
    (root / "sop" / "x.yaml").write_text(sop, encoding="utf-8")
    for name, data in templates.items():
        path = root / "scripts_templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    found = load_project(root, load_config(root), now=NOW)[1]
    assert len(found) == 1 and found[0].startswith(expected), found


def test_preview_says_which_new_members_a_tagged_join_step_is_for(tmp_path):
    root = project(tmp_path, {"n.yaml": """\
        targets: {rooms: [g1]}
        steps: [{id: nudge, after_join: 2d, member_tags: [silent], text: 来聊聊吧}]
    """}, toml='[bot]\ntimezone = "Asia/Shanghai"\n[plugins]\nenabled = ["insight"]\n')
    out = CliRunner().invoke(main, ["--project", str(root), "sop", "preview", "--start", "2026-11-23T09:00"]).stdout
    assert "  09:00  n.nudge  [内容]  → 群 g1，@新成员，只发给有标签「silent」的新成员" in out, out


def test_one_target_may_be_written_without_brackets(tmp_path):
    assert problems(tmp_path, """\
        targets: {topics: 快闪*}
        steps: [{id: m, at: "08:00", text: 早}]
    """) == []
