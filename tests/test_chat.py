"""`qunbot chat` as a newcomer meets it (issue 15): the demo room is one the sample SOP files target,
`@Name` mentions a member, and the README's `/dm` examples give real answers."""

from __future__ import annotations

import io
from pathlib import Path

from bot._chat import ChatConsole

REPO = Path(__file__).resolve().parent.parent


async def chat(lines: str, project: Path = REPO) -> str:
    out = io.StringIO()
    console = ChatConsole(project, db_url=None, out=out)
    await console.run(io.StringIO(lines))
    return out.getvalue()


async def test_a_day_in_the_demo_room_shows_the_morning_post():
    out = await chat("/wait 1d\n")
    assert "→ 群 g1: ☀️ 早安！" in out, out


async def test_an_admin_adjusts_bobs_points_by_mentioning_him_by_name():
    out = await chat("/as owner1\n调整积分 @Bob +50 活动\n/as u2\n积分\n")
    assert "→ 群 g1: @群主 已为 Bob 增加 50 积分（活动），当前 50 积分。" in out, out
    assert "→ 群 g1: @Bob " in out.split("活动），当前 50 积分。", 1)[1]


async def test_private_points_commands_say_where_to_send_them():
    out = await chat("/dm 积分\n/dm 签到\n")
    assert "→ 私聊 u1: 积分按群计算" in out and "请在群里发「积分」" in out, out
    assert "→ 私聊 u1: 签到要在群里发哦" in out and "请到群里发「签到」" in out, out
    assert "发送「菜单」" not in out  # not the fallback that leads back to the menu


async def test_topic_renames_the_room_and_sop_targets_follow():
    out = await chat("/topic 闲聊群\n/wait 1d\n")
    assert "(群名改为「闲聊群」)" in out and "早安" not in out, out
