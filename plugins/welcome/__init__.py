"""welcome (欢迎): greet newcomers with an @-mention shortly after they join, many at once in one message.

The first join in a room opens a short window (`delay`); everyone joining before it closes is greeted
together when it does, so a QR code shared in a big group brings one greeting, not fifty. Whoever left
before the greeting is left out. Every join is kept with its inviter: the record of who invited whom.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Session, col, select

from bot import ROOM_ADMIN, Context, MemberInfo, MembersJoined, Plugin, insert_unique, parse_duration

from .models import WelcomeJoin


class WelcomeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay: str = "30s"
    """How long after the first join the greeting goes out; joins within it share the message."""
    max_mentions: int | None = Field(default=None, ge=1, le=100)
    """At most this many newcomers @-mentioned in one message; larger batches are split. Default: the
    account's `pacing.max_mentions`, the same limit merged replies (签到 …) keep."""
    invite_words: list[str] = ["邀请记录", "邀请榜"]
    """Admin command: who invited how many newcomers into this room."""
    invite_top: int = Field(default=10, ge=1, le=50)

    @field_validator("delay")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def delay_time(self) -> timedelta:
        return parse_duration(self.delay)


class WelcomeService:
    """Who invited whom, for other plugins (the greeting rows are the record)."""

    def inviter_of(self, session: Session, room_id: str, member_id: str) -> str | None:
        """The inviter at the member's latest join into the room, if WeChat told."""
        return session.exec(select(WelcomeJoin.inviter_id).where(
            WelcomeJoin.room_id == room_id, WelcomeJoin.member_id == member_id)
            .order_by(col(WelcomeJoin.joined_at).desc())).first()

    def invited_by(self, session: Session, room_id: str, inviter_id: str) -> list[str]:
        """Members the inviter brought into the room, first invited first, each once."""
        ids = session.exec(select(WelcomeJoin.member_id).where(
            WelcomeJoin.room_id == room_id, WelcomeJoin.inviter_id == inviter_id)
            .order_by(col(WelcomeJoin.joined_at))).all()
        return list(dict.fromkeys(ids))


plugin = Plugin(
    name="welcome",
    description="欢迎新人：入群后 @ 欢迎，同时进群的人合并成一条；记录邀请人",
    usage="新人入群自动欢迎；管理员发送「邀请记录」查看谁邀请了多少人",
    config=WelcomeConfig,
    needs={("reply_at_will", "welcome_by_template")},  # a WeCom 入群欢迎语 template greets without the bot
)
plugin.service = WelcomeService()


NICKNAME = "%NICKNAME%"
"""What WeCom's 入群欢迎语 template replaces with each newcomer's name."""


@plugin.on_startup
async def greeting_as_template(ctx: Context) -> None:
    """Where the platform greets newcomers by a template (WeCom), the greeting becomes that template."""
    if not ctx.capabilities.welcome_by_template:
        return
    newcomer = MemberInfo(NICKNAME, NICKNAME)
    rendered = ctx.render("welcome/greeting.j2", newcomers=[newcomer], inviters=[], count=1, part=1, parts=1,
                          room={"id": "", "topic": ""})
    ctx.set_welcome_template(rendered.text)


@plugin.on_event(MembersJoined).handle
async def on_join(ctx: Context) -> None:
    event = ctx.event
    assert isinstance(event, MembersJoined)
    me = await ctx.bot_member()
    newcomers = [m for m in event.members if me is None or m.id != me.id]
    if not newcomers:
        return
    config: WelcomeConfig = ctx.config
    if ctx.capabilities.welcome_by_template:  # the platform greets them: keep the record of who invited whom
        for member in newcomers:
            insert_unique(ctx.db, WelcomeJoin, account=ctx.account, room_id=event.room_id, member_id=member.id,
                          inviter_id=event.inviter_id, joined_at=event.time, greet_at=ctx.now, status="template")
        return
    open_batch = ctx.db.exec(select(WelcomeJoin.greet_at).where(
        WelcomeJoin.room_id == event.room_id, WelcomeJoin.status == "pending",
        WelcomeJoin.greet_at > ctx.now).order_by(col(WelcomeJoin.greet_at))).first()
    greet_at = open_batch or ctx.now + config.delay_time
    for member in newcomers:
        insert_unique(ctx.db, WelcomeJoin, account=ctx.account, room_id=event.room_id, member_id=member.id,
                      inviter_id=event.inviter_id, joined_at=event.time, greet_at=greet_at, status="pending")
    ctx.schedule("greet", at=greet_at, key=f"greet:{event.room_id}:{greet_at.timestamp():.0f}")


@plugin.timer("greet")
async def greet(ctx: Context) -> None:
    """Greet everyone whose batch is due and who is still in the room, in chunks of `max_mentions`."""
    config: WelcomeConfig = ctx.config
    rows = ctx.db.exec(select(WelcomeJoin).where(
        WelcomeJoin.room_id == ctx.room_id, WelcomeJoin.status == "pending", WelcomeJoin.greet_at <= ctx.now)
        .order_by(col(WelcomeJoin.id))).all()
    here: dict[str, WelcomeJoin] = {}
    for row in rows:
        membership = ctx.membership(row.member_id)
        still_here = (membership is not None and membership.in_room
                      and (membership.joined_at is None or membership.joined_at <= row.joined_at))
        if still_here and row.member_id not in here:
            row.status, row.greeted_at = "greeted", ctx.now
            here[row.member_id] = row
        else:
            row.status = "left"
        ctx.db.add(row)
    batch = list(here.values())
    size = config.max_mentions or ctx.max_mentions
    chunks = [batch[i:i + size] for i in range(0, len(batch), size)]
    for number, chunk in enumerate(chunks, start=1):
        inviters = list(dict.fromkeys(r.inviter_id for r in chunk if r.inviter_id and r.inviter_id not in here))
        await ctx.say(template="welcome/greeting.j2", newcomers=[ctx.member_info(r.member_id) for r in chunk],
                      inviters=[ctx.member_info(i) for i in inviters], count=len(batch), part=number,
                      parts=len(chunks))


invites = plugin.on_fullmatch("邀请记录", "邀请榜", words_from="invite_words", permission=ROOM_ADMIN, priority=10)


@invites.handle
async def show_invites(ctx: Context) -> None:
    rows = ctx.db.exec(select(WelcomeJoin.inviter_id, WelcomeJoin.member_id).where(
        WelcomeJoin.room_id == ctx.room_id, col(WelcomeJoin.inviter_id).is_not(None))).all()
    pairs = set(rows)
    counts = Counter(inviter for inviter, _ in pairs)
    staying = Counter(inviter for inviter, member in pairs if _in_room(ctx, member))
    top = sorted(counts, key=lambda inviter: (-counts[inviter], inviter))[:ctx.config.invite_top]
    await ctx.reply(template="welcome/invites.j2", inviters=[
        {"member": ctx.member_info(i), "invited": counts[i], "staying": staying[i]} for i in top])


def _in_room(ctx: Context, member_id: str) -> bool:
    membership = ctx.membership(member_id)
    return membership is not None and membership.in_room
