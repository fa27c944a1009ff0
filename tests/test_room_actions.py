"""Room actions (remove a member, change the topic) travel through the paced outbox like messages."""

from __future__ import annotations

from bot import ROOM_ADMIN, Context, Plugin
from bot.testing import BotHarness


def moderator() -> Plugin:
    plugin = Plugin("mod")

    @plugin.on_command("踢", permission=ROOM_ADMIN).handle
    async def kick(ctx: Context) -> None:
        await ctx.say(f"{ctx.args} 已被移出群聊")
        await ctx.remove_member(ctx.args)

    @plugin.on_command("改名", permission=ROOM_ADMIN).handle
    async def rename(ctx: Context) -> None:
        await ctx.set_topic(ctx.args)

    return plugin


async def test_actions_are_paced_recorded_and_applied(project):
    pacing = {"min_interval": 2, "jitter": 0, "room_interval": 0}
    async with BotHarness(project, plugins=[moderator()], pacing=pacing) as bot:
        bot.room("g1", members={"owner": "群主", "spam": "广告号"}, admins=["owner"])
        await bot.say("g1", "owner", "踢 spam")
        await bot.say("g1", "owner", "改名 完子研究所2群")
        notice, removal, topic = bot.pop()
        room = bot.sim.adapter.sim_rooms["g1"]
    assert notice.text == "spam 已被移出群聊"
    assert removal.as_json() == {"at": removal.at.isoformat(timespec="milliseconds"), "room": "g1",
                                 "action": "remove_member", "member": "spam"}
    assert topic.as_json()["action"] == "set_topic" and topic.as_json()["topic"] == "完子研究所2群"
    assert (removal.at - notice.at).total_seconds() == 2
    assert "spam" not in room.members and room.topic == "完子研究所2群"


async def test_members_cannot_trigger_actions(project):
    async with BotHarness(project, plugins=[moderator()]) as bot:
        bot.room("g1", members={"owner": "群主", "u1": "Alice"}, admins=["owner"])
        await bot.say("g1", "u1", "踢 owner")
        sent = bot.pop()
        assert "owner" in bot.sim.adapter.sim_rooms["g1"].members
    assert [m.action for m in sent] == [None]  # only the polite refusal


async def test_a_member_the_bot_removes_leaves_as_on_wechat(project):
    """WeChat reports a removal as the member leaving: plugins hear it, and the membership ends (so a
    removed ad account gets no onboarding posts afterwards)."""
    from bot._events import MembersLeft
    from bot._models import Membership

    heard: list[tuple[str, ...]] = []
    listener = Plugin("listener")

    @listener.on_event(MembersLeft).handle
    async def left(ctx: Context) -> None:
        heard.append(ctx.event.member_ids)

    async with BotHarness(project, plugins=[moderator(), listener]) as bot:
        bot.room("g1", members={"owner": "群主", "spam": "广告号"}, admins=["owner"])
        await bot.say("g1", "owner", "踢 spam")
        await bot.settle()
        with bot.db() as session:
            membership = session.get(Membership, ("g1", "spam"))
    assert heard == [("spam",)]
    assert membership is not None and membership.left_at is not None
