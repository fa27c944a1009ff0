"""The `insight` plugin (成员洞察), installed with qunbot through the `qunbot.plugins` entry point.

Enable it with `[plugins] enabled = [..., "insight"]`. The work happens in `bot.insight` (an engine beside
the plugins records who speaks and recomputes on a schedule); this plugin gives admins their commands
(templates in bot/_default_templates/insight/, overridable in the project) and other plugins the service.
"""

from __future__ import annotations

from bot import ROOM_ADMIN, Context, Plugin
from bot.insight import InsightConfig, InsightService

plugin = Plugin(
    name="insight",
    description="成员洞察：按规则和手动打标签，生命周期阶段（AIPL）",
    usage="管理员发送「打标签 @某人 标签」「删标签 @某人 标签」「查标签 @某人」",
    config=InsightConfig,
    needs={"read_room_messages"},
)
service = InsightService()
plugin.service = service


@plugin.on_startup
async def configure(ctx: Context) -> None:
    service.configure(ctx.config, ctx.now.tzinfo)


async def _target_and_tag(ctx: Context) -> tuple[str | None, str]:
    """The @-mentioned member and the tag text after the mention."""
    mentions = await ctx.mentioned()
    words = [w for w in ctx.args.split() if not w.startswith("@")]
    return (mentions[0] if mentions else None), " ".join(words).strip()


tag_cmd = plugin.on_command("打标签", words_from="tag_words", permission=ROOM_ADMIN, priority=10)


@tag_cmd.handle
async def tag(ctx: Context) -> None:
    member, name = await _target_and_tag(ctx)
    if member is None or not name or ctx.room_id is None:
        await ctx.reply(template="insight/usage.j2")
        return
    added = service.tag(ctx.db, ctx.room_id, member, name, by=ctx.member_id, at=ctx.now)
    await ctx.reply(template="insight/tagged.j2", who=ctx.member_info(member), tag=name, added=added)


untag_cmd = plugin.on_command("删标签", words_from="untag_words", permission=ROOM_ADMIN, priority=10)


@untag_cmd.handle
async def untag(ctx: Context) -> None:
    member, name = await _target_and_tag(ctx)
    if member is None or not name or ctx.room_id is None:
        await ctx.reply(template="insight/usage.j2")
        return
    removed = service.untag(ctx.db, ctx.room_id, member, name)
    await ctx.reply(template="insight/untagged.j2", who=ctx.member_info(member), tag=name, removed=removed)


show_cmd = plugin.on_command("查标签", words_from="show_words", permission=ROOM_ADMIN, priority=10)


@show_cmd.handle
async def show(ctx: Context) -> None:
    member, _ = await _target_and_tag(ctx)
    if member is None or ctx.room_id is None:
        await ctx.reply(template="insight/usage.j2")
        return
    tags = sorted(service.current_tags(ctx.db, ctx.room_id, member, ctx.now))
    await ctx.reply(template="insight/show.j2", who=ctx.member_info(member), tags=tags,
                    stage=service.stage(ctx.db, ctx.room_id, member))
