"""Tags where they act: an SOP join step only for quiet newcomers, a lottery only for active members."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from bot.sop._models import SopDelivery
from bot.testing import BotHarness

NUDGE = """
targets: {rooms: [g1]}
steps:
  - id: nudge
    after_join: 3d
    member_tags: [quiet]
    text: "{{ member.display }}，进群三天了，来聊聊你的护肤问题吧～"
"""
QUIET = {"plugins": {"insight": {"tags": {"quiet": "messages(3) == 0", "active": "active_days(7) >= 2"}}}}


def _project(tmp_path: Path, sop: str) -> Path:
    (tmp_path / "sop").mkdir()
    (tmp_path / "scripts_templates").mkdir()
    (tmp_path / "sop" / "nudge.yaml").write_text(sop, encoding="utf-8")
    return tmp_path


async def test_join_step_only_for_members_with_the_tag(tmp_path):
    project = _project(tmp_path, NUDGE)
    async with BotHarness(project, plugins=["insight"], settings=QUIET) as bot:
        bot.room("g1", "群", members={"owner1": "群主"})
        await bot.join("g1", {"n1": "小新", "n2": "小安"})
        await bot.advance("2d")
        await bot.say("g1", "n1", "大家好，我是小新")
        bot.pop()
        await bot.advance("1d")
        sent = bot.pop_text()
        assert "小安，进群三天了" in sent and "小新" not in sent
        with bot.db() as session:
            rows = {r.member_id: r for r in session.exec(select(SopDelivery))}
        assert rows["n1"].status == "skipped" and "quiet" in rows["n1"].detail
        assert rows["n2"].status == "queued"


async def test_member_tags_need_the_insight_plugin(tmp_path):
    from bot._config import load_config
    from bot.sop._check import load_project

    project = _project(tmp_path, NUDGE)
    _, problems = load_project(project, load_config(project))
    assert len(problems) == 1 and "nudge.yaml:6" in problems[0] and "需要 insight 插件" in problems[0]


async def test_member_tags_only_on_join_steps(tmp_path):
    from bot._config import load_config
    from bot.sop._check import load_project

    project = _project(tmp_path, NUDGE.replace("after_join: 3d", 'at: "08:00"'))
    _, problems = load_project(project, load_config(project))
    assert len(problems) == 1 and "member_tags 只用于 after_join 步骤" in problems[0]


async def test_lottery_only_for_active_members(repo):
    settings = {**QUIET, "plugins": {**QUIET["plugins"], "lottery": {"member_tags": ["active"]}}}
    async with BotHarness(repo, plugins=["insight", "lottery"], settings=settings) as bot:
        bot.room("g1", "群", members={"owner1": "群主", "u1": "Alice", "u2": "Bob"}, admins=["owner1"])
        await bot.say("g1", "u1", "昨天也在")
        await bot.advance("1d")
        await bot.say("g1", "u1", "今天也在")
        await bot.say("g1", "owner1", "开始抽奖 奖品=口红 名额=1 口令=我要抽奖 时长=10m")
        bot.pop()
        await bot.say("g1", "u2", "我要抽奖")
        assert "不能参与" in (refused := bot.pop_text()) and "active" in refused
        await bot.say("g1", "u1", "我要抽奖")
        assert "参与成功" in bot.pop_text()
