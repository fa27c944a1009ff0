"""`ctx.membership()` and `ctx.bot_member()`: the join facts the runtime records, as plugins see them."""

from __future__ import annotations

from bot import Context, MembershipInfo, MembersJoined, Plugin
from bot.testing import BotHarness


def _spy() -> tuple[Plugin, dict[str, object]]:
    seen: dict[str, object] = {}
    plugin = Plugin("spy")

    @plugin.on_event(MembersJoined).handle
    async def joined(ctx: Context) -> None:
        assert isinstance(ctx.event, MembersJoined)
        seen["bot"] = await ctx.bot_member()
        for member in ctx.event.members:
            seen[member.id] = ctx.membership(member.id)

    @plugin.on_fullmatch("查").handle
    async def look(ctx: Context) -> None:
        seen["u9 later"] = ctx.membership("u9")
        seen["self"] = ctx.membership()
        seen["stranger"] = ctx.membership("nobody")

    return plugin, seen


async def test_membership_shows_join_time_inviter_and_leaving(project):
    plugin, seen = _spy()
    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"owner1": "群主", "u1": "Alice"}, admins=["owner1"])
        await bot.join("g1", {"u9": "小红"}, inviter="u1")
        joined_at = bot.now
        await bot.advance("1h")
        await bot.leave("g1", "u9")
        left_at = bot.now
        await bot.say("g1", "owner1", "查")
    first = seen["u9"]
    assert isinstance(first, MembershipInfo)
    assert (first.room_id, first.member_id, first.inviter_id, first.joined_at, first.in_room) == \
        ("g1", "u9", "u1", joined_at, True)
    later = seen["u9 later"]
    assert isinstance(later, MembershipInfo) and not later.in_room and later.left_at == left_at
    me = seen["self"]
    assert isinstance(me, MembershipInfo) and me.is_admin and me.joined_at is None  # there before the bot looked
    assert seen["stranger"] is None
    assert seen["bot"] is not None and seen["bot"].id == "bot"
