"""Capabilities: what an account can do decides what `check` and `run` say and what the outbox does."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from bot import Context, MembersJoined, Plugin
from bot._config import ConfigError, parse_config
from bot._models import OutboxMessage
from bot.adapters._profiles import PROFILES, account_capabilities
from bot.cli import main
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parent.parent


def write(project: Path, toml: str) -> Path:
    (project / "scripts_templates").mkdir(parents=True, exist_ok=True)
    (project / "qunbot.toml").write_text(textwrap.dedent(toml), encoding="utf-8")
    return project


WECOM = f'''
[[accounts]]
id = "shop"
emulate = "wecom"

[plugins]
dirs = ["{(REPO / "plugins").as_posix()}"]
enabled = ["points", "welcome"]
'''


def test_check_says_plainly_that_points_cannot_work_on_a_wecom_account(tmp_path):
    project = write(tmp_path, WECOM)
    result = CliRunner().invoke(main, ["--project", str(project), "check"])
    assert result.exit_code == 1
    assert ("qunbot.toml:8: 账号 shop：企业微信官方接口读不到群消息，签到积分（points）需要能读群消息的账号。"
            in result.stderr)
    assert "welcome" not in result.stderr  # the greeting becomes a WeCom welcome template there


def test_the_same_plugins_on_a_personal_wechat_account_pass(tmp_path):
    project = write(tmp_path, WECOM.replace('emulate = "wecom"', 'emulate = "wechaty"'))
    result = CliRunner().invoke(main, ["--project", str(project), "check"])
    assert result.exit_code == 0, result.stderr


def test_a_plugin_switched_off_in_every_room_of_the_account_is_not_reported(tmp_path):
    second = '\n[[accounts]]\nid = "wx"\nemulate = "wechaty"\n'
    toml = WECOM.replace('emulate = "wecom"\n', 'emulate = "wecom"\n' + second) + '''
[rooms.g1]
account = "shop"
plugins_disabled = ["points"]

[rooms.g2]
account = "wx"
'''
    result = CliRunner().invoke(main, ["--project", str(write(tmp_path, toml)), "check"])
    assert result.exit_code == 0, result.stderr


def test_config_keys_are_validated():
    with pytest.raises(ConfigError, match="emulate only works with adapter"):
        parse_config({"accounts": [{"id": "a", "adapter": "wechaty", "emulate": "wecom"}]})
    with pytest.raises(ConfigError, match="emulate"):
        parse_config({"accounts": [{"id": "a", "emulate": "wework"}]})
    with pytest.raises(ConfigError, match="没有叫 'nobody' 的账号"):
        parse_config({"accounts": [{"id": "a"}], "rooms": {"g1": {"account": "nobody"}}})
    weekly = parse_config({"accounts": [{"id": "a", "emulate": "wecom", "room_quota": {"per": "week"}}]})
    quota = account_capabilities(weekly.accounts[0]).room_quota
    assert quota is not None and (quota.per, quota.limit) == ("week", None)
    off = parse_config({"accounts": [{"id": "a", "emulate": "wecom", "room_quota": {"per": "none"}}]})
    assert account_capabilities(off.accounts[0]).room_quota is None
    assert account_capabilities(off.accounts[0]).read_room_messages is False


def test_a_plugin_cannot_declare_a_need_that_is_not_a_capability():
    with pytest.raises(ValueError, match="read_messages is not a capability"):
        Plugin("x", needs={"read_messages"})
    plugin = Plugin("y", needs={"read_room_messages", ("reply_at_will", "welcome_by_template")})
    assert plugin.unmet_needs(PROFILES["wecom"]) == [("read_room_messages",)]
    assert plugin.unmet_needs(PROFILES["workpro"]) == []


# --- SOP steps -------------------------------------------------------------------------------

ACTIONS = '''
targets:
  rooms: [g1]
steps:
  - id: 开始答题
    at: "20:00"
    days: 周三
    action: {plugin: quiz, name: start, params: {bank: demo, questions: 3}}
  - id: 私信
    after_join: 10m
    to: dm
    text: 你好
'''


def test_sop_steps_an_account_cannot_serve_are_named_with_file_line_and_step(tmp_path):
    toml = WECOM.replace('["points", "welcome"]', '["points", "quiz"]')
    project = write(tmp_path, toml)
    (project / "sop").mkdir()
    (project / "sop" / "weekly_quiz.yaml").write_text(textwrap.dedent(ACTIONS), encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(project), "sop", "check"])
    assert result.exit_code == 1
    assert ("sop/weekly_quiz.yaml:5: 账号 shop：企业微信官方接口读不到群消息，步骤 开始答题（启动插件动作 quiz.start）"
            "需要能读群消息的账号。") in result.stderr
    assert ("sop/weekly_quiz.yaml:9: 账号 shop：企业微信官方接口不能私聊群成员，步骤 私信需要能私聊的账号。"
            in result.stderr)


# --- quota ------------------------------------------------------------------------------------

THREE_DAILY = '''
targets:
  rooms: [g1]
steps:
  - id: morning
    at: "08:00"
    text: 早安
  - id: noon
    at: "12:00"
    text: 午安
  - id: night
    at: "21:00"
    text: 晚安
'''


def quota_project(tmp_path: Path, sop: str, account: str = 'emulate = "wecom"') -> Path:
    project = write(tmp_path, f'''
    [[accounts]]
    id = "shop"
    {account}
    ''')
    (project / "sop").mkdir()
    (project / "sop" / "daily.yaml").write_text(textwrap.dedent(sop), encoding="utf-8")
    return project


def test_sop_check_refuses_three_daily_posts_on_a_monthly_quota_with_file_step_room_and_numbers(tmp_path):
    project = quota_project(tmp_path, THREE_DAILY)
    result = CliRunner().invoke(main, ["--project", str(project), "sop", "check"])
    assert result.exit_code == 1
    problem = next(line for line in result.stderr.splitlines() if line.startswith("sop/daily.yaml"))
    # whatever month comes first: 3 posts a day against one a day, named by file, line, step and room
    assert "账号 shop（企业微信官方接口）的群 g1 每月最多" in problem
    assert "daily.morning" in problem and "daily.noon" in problem and "daily.night" in problem
    assert "起发不出去" in problem and "步骤 " in problem
    assert "平均每天要发 3 条，这里平均每天最多 1 条" in problem


def test_one_daily_post_fits_a_monthly_quota(tmp_path):
    one = THREE_DAILY.split("  - id: noon")[0]
    result = CliRunner().invoke(main, ["--project", str(quota_project(tmp_path, one)), "sop", "check"])
    assert result.exit_code == 0, result.stderr


def test_the_exact_numbers_for_a_31_day_month(tmp_path):
    from bot._config import load_config
    from bot.sop._check import load_project

    project = quota_project(tmp_path, THREE_DAILY)
    config = load_config(project)
    from datetime import datetime
    _, problems = load_project(project, config, now=datetime(2026, 12, 1, 0, 0, tzinfo=config.bot.tz))
    assert problems == [
        "sop/daily.yaml:8: 账号 shop（企业微信官方接口）的群 g1 每月最多 31 条群发消息，"
        "这套 SOP 在 2026年12月要给它发 93 条（daily.morning 31 条、daily.noon 31 条、daily.night 31 条），"
        "超出 62 条：从 12-11 12:00 的步骤 noon（第 32 条）"
        "起发不出去。这套 SOP 平均每天要发 3 条，这里平均每天最多 1 条：每天发这么多条在这个账号的群里跑不了，"
        "请减少步骤、隔天发，或让这些群由没有配额的账号来管。之后还有 12 个月也超出。"]


def test_one_post_over_the_monthly_budget_is_refused(tmp_path):
    """The boundary: a daily post fills a 31-day month exactly; one more post that month is one too many."""
    from datetime import datetime

    from bot._config import load_config
    from bot.sop._check import load_project

    daily_and_once = (THREE_DAILY.split("  - id: noon")[0].replace("targets:", 'start: "2026-12-10 10:00"\ntargets:')
                      .replace('at: "08:00"', 'at: "08:00"\n    from: "2026-12-01"\n    until: "2026-12-31"')
                      + "  - id: once\n    offset: +1h\n    text: 活动开始\n")
    project = quota_project(tmp_path, daily_and_once)
    config = load_config(project)
    _, problems = load_project(project, config, now=datetime(2026, 12, 1, 0, 0, tzinfo=config.bot.tz))
    assert len(problems) == 1 and "每月最多 31 条" in problems[0] and "要给它发 32 条" in problems[0], problems


def test_a_weekly_quota_and_a_quota_switched_off(tmp_path):
    two = THREE_DAILY.split("  - id: night")[0]
    weekly = quota_project(tmp_path / "w", two, 'emulate = "wecom"\nroom_quota = {per = "week"}')
    result = CliRunner().invoke(main, ["--project", str(weekly), "sop", "check"])
    assert result.exit_code == 1 and "每周最多 7 条群发消息" in result.stderr and "要给它发 14 条" in result.stderr
    off = quota_project(tmp_path / "o", THREE_DAILY, 'emulate = "wecom"\nroom_quota = {per = "none"}')
    result = CliRunner().invoke(main, ["--project", str(off), "sop", "check"])
    assert result.exit_code == 0, result.stderr


def test_preview_shows_the_budget_and_refuses_a_set_over_it(tmp_path):
    project = quota_project(tmp_path, THREE_DAILY)
    args = ["--project", str(project), "sop", "preview", "--days", "1", "--start", "2026-12-01T00:00"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert ("群 g1（账号 shop，企业微信官方接口）：每月最多 31 条，每条要群主在企业微信里确认后才发出；"
            "最多的是 2026年12月，要发 93 条（额度 31），超出！" in result.stdout)
    assert "error: sop/daily.yaml:8:" in result.stderr


def test_rooms_of_a_personal_account_have_no_quota(tmp_path):
    project = quota_project(tmp_path, THREE_DAILY, 'emulate = "wechaty"')
    result = CliRunner().invoke(main, ["--project", str(project), "sop", "check"])
    assert result.exit_code == 0, result.stderr


# --- the runtime never pretends -----------------------------------------------------------------

def moderator(outcomes: list[bool]) -> Plugin:
    plugin = Plugin("mod")

    @plugin.on_command("踢").handle
    async def kick(ctx: Context) -> None:
        outcomes.append(await ctx.remove_member(ctx.args))
        outcomes.append(await ctx.set_topic("新群名"))
        outcomes.append(await ctx.say("已处理"))

    return plugin


def rows(bot: BotHarness) -> list[OutboxMessage]:
    assert bot.runtime is not None
    with Session(bot.runtime.engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())


async def test_an_action_the_account_cannot_do_is_refused_recorded_as_failed_and_the_caller_told(tmp_path):
    outcomes: list[bool] = []
    plugin = Plugin("gate")

    @plugin.on_event(MembersJoined).handle  # joins reach a WeCom account (callbacks); messages do not
    async def gate(ctx: Context) -> None:
        outcomes.append(await ctx.remove_member("spam"))
        outcomes.append(await ctx.set_topic("新群名"))
        outcomes.append(await ctx.say("欢迎"))

    account = {"accounts": [{"id": "x", "emulate": "wecom"}]}
    async with BotHarness(tmp_path, plugins=[plugin], settings=account) as bot:
        bot.room("g1", members={"u1": "A", "spam": "广告"})
        await bot.join("g1", {"u9": "新人"})
        sent = bot.pop()
        stored = rows(bot)
        still_there = "spam" in bot.sim.adapter.sim_rooms["g1"].members
    assert outcomes == [False, False, True]
    assert [(m.action, m.text) for m in sent] == [(None, "欢迎")] and still_there
    failed = {r.action: r for r in stored if r.status == "failed"}
    assert failed["remove_member"].last_error == "企业微信官方接口不能把人移出群"
    assert failed["set_topic"].last_error == "企业微信官方接口不能改群名"
    assert all(r.sent_at is None for r in failed.values())


async def test_members_of_an_emulated_wecom_account_are_not_heard(tmp_path):
    account = {"accounts": [{"id": "x", "emulate": "wecom"}]}
    async with BotHarness(tmp_path, plugins=["points"], settings={**account, "plugins": {
            "dirs": [str(REPO / "plugins")]}}) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.say("g1", "u1", "签到")
        assert bot.pop() == []


def poster(count: int) -> Plugin:
    plugin = Plugin("poster")

    @plugin.on_fullmatch("发").handle
    async def post(ctx: Context) -> None:
        for n in range(count):
            await ctx.say(f"第{n + 1}条", key=f"p:{ctx.event.id}:{n}")

    return plugin


async def test_the_outbox_skips_a_post_over_the_room_budget_and_says_why(tmp_path, caplog):
    account = {"accounts": [{"id": "x", "room_quota": {"per": "day", "limit": 2}}]}
    async with BotHarness(tmp_path, plugins=[poster(3)], settings=account) as bot:
        bot.room("g1", members={"u1": "A"})
        bot.room("g2", members={"u1": "A"})
        with caplog.at_level(logging.WARNING, logger="qunbot.outbox"):
            await bot.say("g1", "u1", "发")
        first_day = bot.pop()
        await bot.advance("1d")
        await bot.say("g1", "u1", "发")
        second_day = bot.pop()
        stored = rows(bot)
    assert [m.text for m in first_day] == ["第1条", "第2条"]
    assert [m.text for m in second_day] == ["第1条", "第2条"]  # a new day, a new budget
    skipped = [r for r in stored if r.status == "skipped"]
    assert [r.text for r in skipped] == ["第3条", "第3条"] and all(r.sent_at is None for r in skipped)
    assert skipped[0].last_error.startswith("超出配额：模拟账号的群每天最多 2 条，群 g1 从 11-23 起已经收到 2 条")
    assert any("超出配额" in record.getMessage() for record in caplog.records)


async def test_run_logs_at_start_what_each_account_cannot_serve(tmp_path, caplog):
    account = {"accounts": [{"id": "x", "emulate": "wecom"}], "plugins": {"dirs": [str(REPO / "plugins")]}}
    with caplog.at_level(logging.WARNING, logger="qunbot.runtime"):
        async with BotHarness(tmp_path, plugins=["points", "welcome"], settings=account):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("账号 default：企业微信官方接口读不到群消息，签到积分（points）需要能读群消息的账号。")
               for w in warnings), warnings


# --- SOP steps at run time ---------------------------------------------------------------------

def raffle(needs: set[str]) -> Plugin:
    plugin = Plugin("raffle", description="抽奖：测试", needs=needs)

    @plugin.action("start")
    async def start(ctx: Context, params: object) -> None:
        await ctx.say("抽奖开始，发送口令参与")

    return plugin


SOP_ON_WECOM = """\
targets: {rooms: [g1]}
steps:
  - id: draw
    at: "20:00"
    action: {plugin: raffle, name: start}
  - id: hello
    after_join: 1m
    to: dm
    text: 你好
"""


async def test_sop_steps_an_account_cannot_do_are_failed_with_the_reason_not_sent(tmp_path):
    from bot.sop._models import SopDelivery

    (tmp_path / "sop").mkdir()
    (tmp_path / "sop" / "w.yaml").write_text(SOP_ON_WECOM, encoding="utf-8")
    account = {"accounts": [{"id": "x", "emulate": "wecom"}]}
    async with BotHarness(tmp_path, plugins=[raffle({"read_room_messages"})], settings=account) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.join("g1", {"u9": "新人"})
        await bot.advance("12h")
        with Session(bot.runtime.engine) as session:
            ledger = {row.step: row for row in session.exec(select(SopDelivery)).all()}
        sent = bot.sent
    assert sent == []
    assert ledger["draw"].status == "failed"  # a raffle nobody's entries could reach is not started
    assert ledger["hello"].status == "failed" and ledger["hello"].detail == "企业微信官方接口不能私聊群成员"


async def test_the_same_steps_run_on_a_personal_account(tmp_path):
    (tmp_path / "sop").mkdir()
    (tmp_path / "sop" / "w.yaml").write_text(SOP_ON_WECOM, encoding="utf-8")
    account = {"accounts": [{"id": "x", "emulate": "wechaty"}]}
    async with BotHarness(tmp_path, plugins=[raffle({"read_room_messages"})], settings=account) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.join("g1", {"u9": "新人"})
        await bot.advance("12h")
        sent = [(m.room_id or m.to, m.text) for m in bot.sent]
    assert sent == [("u9", "你好"), ("g1", "抽奖开始，发送口令参与")]


async def test_a_plugin_can_ask_what_its_account_can_do(tmp_path):
    seen: list[bool] = []
    plugin = Plugin("asker")

    @plugin.on_event(MembersJoined).handle
    async def greet(ctx: Context) -> None:
        seen.append(ctx.capabilities.welcome_by_template)

    for profile, expected in (("wecom", True), ("wechaty", False)):
        account = {"accounts": [{"id": "x", "emulate": profile}]}
        async with BotHarness(tmp_path / profile, plugins=[plugin], settings=account) as bot:
            bot.room("g1", members={"u1": "A"})
            await bot.join("g1", {"u9": "新人"})
        assert seen.pop() is expected


def test_rooms_that_get_the_same_posts_share_one_problem(tmp_path):
    project = quota_project(tmp_path, THREE_DAILY.replace("rooms: [g1]", "tags: [vip]"))
    with (project / "qunbot.toml").open("a", encoding="utf-8") as toml:
        toml.write("".join(f'\n[rooms.g{i}]\ntags = ["vip"]\n' for i in range(7)))
    result = CliRunner().invoke(main, ["--project", str(project), "sop", "check"])
    found = [line for line in result.stderr.splitlines() if line.startswith("sop/")]
    assert len(found) == 1 and "的群 g0、g1、g2、g3、g4 等 7 个群 每月最多" in found[0]


async def test_capabilities_an_adapter_learns_when_it_connects_are_the_ones_enforced(tmp_path):
    from dataclasses import replace

    outcomes: list[bool] = []
    bot = BotHarness(tmp_path, plugins=[moderator(outcomes)])
    adapter = bot.sim.adapter
    connect = adapter.start

    async def start_on_an_old_service(sink):  # e.g. a service that turns out not to rename rooms
        await connect(sink)
        adapter.capabilities = replace(adapter.capabilities, set_topic=False)

    adapter.start = start_on_an_old_service
    async with bot:
        bot.room("g1", members={"u1": "A", "spam": "广告"})
        await bot.say("g1", "u1", "踢 spam")
        sent = bot.pop()
    assert outcomes == [True, False, True]
    assert [m.action for m in sent] == ["remove_member", None]


async def test_run_warns_at_sop_load_when_a_room_would_go_over_its_quota(tmp_path, caplog):
    (tmp_path / "sop").mkdir()
    (tmp_path / "sop" / "daily.yaml").write_text(textwrap.dedent(THREE_DAILY), encoding="utf-8")
    account = {"accounts": [{"id": "x", "emulate": "wecom"}]}
    with caplog.at_level(logging.WARNING, logger="qunbot.sop"):
        async with BotHarness(tmp_path, plugins=[], settings=account) as bot:
            bot.room("g1", members={"u1": "A"})
    warned = [r.getMessage() for r in caplog.records if "每月最多" in r.getMessage()]
    assert warned and ("sop/daily.yaml:8: 账号 default（企业微信官方接口）的群 g1 每月最多 31 条群发消息，"
                       "这套 SOP 在 2026年12月要给它发 93 条") in warned[0]


async def test_sop_posts_beyond_the_daily_budget_are_not_sent_and_the_fan_out_report_says_why(tmp_path, caplog):
    (tmp_path / "sop").mkdir()
    (tmp_path / "sop" / "daily.yaml").write_text(textwrap.dedent(THREE_DAILY), encoding="utf-8")
    account = {"accounts": [{"id": "x", "room_quota": {"per": "day", "limit": 1}}]}
    with caplog.at_level(logging.INFO, logger="qunbot.sop"):
        async with BotHarness(tmp_path, plugins=[], settings=account, start="2026-11-23T07:00:00+08:00") as bot:
            bot.room("g1", members={"u1": "A"})
            await bot.advance("26h")
            sent = [(m.at.strftime("%d %H:%M"), m.text) for m in bot.sent]
    assert sent == [("23 08:00", "早安"), ("24 08:00", "早安")]
    assert any("SOP daily.noon (11-23 12:00): 0 of 1 room(s) got it; 1 not sent: the room's quota was used up"
               in r.getMessage() for r in caplog.records)


def test_preview_says_when_a_post_must_be_split_into_several_tasks(tmp_path):
    one = THREE_DAILY.split("  - id: noon")[0].replace("rooms: [g1]", "tags: [vip]")
    project = quota_project(tmp_path, one, 'emulate = "wecom"\nmax_rooms_per_post = 2')
    with (project / "qunbot.toml").open("a", encoding="utf-8") as toml:
        toml.write("".join(f'\n[rooms.g{i}]\ntags = ["vip"]\n' for i in range(5)))
    args = ["--project", str(project), "sop", "preview", "--days", "1", "--start", "2026-12-01T00:00"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert ("daily（账号 shop，企业微信官方接口）：每条发到 5 个群，一个任务最多 2 个群，会分成 3 个任务，"
            "每个都要群主确认") in result.stdout
