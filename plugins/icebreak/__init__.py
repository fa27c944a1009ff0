"""icebreak (破冰): ask newcomers to introduce themselves and to set the room's nickname format.

A newcomer's first message that looks like a self-introduction (long enough, with words such as
我是 / 来自 / 坐标) within the window is thanked, with points when the points plugin is enabled.
A newcomer whose group nickname still does not fit the room's format after `remind_after` is
reminded once; a rename that fits is acknowledged; admins list who has not complied yet.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from sqlalchemy import update
from sqlmodel import Session, col, select

from bot import ROOM_ADMIN, Context, MemberRenamed, MembersJoined, Plugin, insert_unique, parse_duration

from .models import IcebreakNewcomer
from .rules import looks_like_intro, nickname_fits, pattern_from_format


class IcebreakConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nickname_format: str = "城市-昵称-职业"
    """The format as members read it; the separators between the fields are what is checked."""
    nickname_pattern: str | None = None
    """A regular expression the whole nickname must match, when the readable format is not enough."""
    nickname_example: str = "上海-小红-设计师"
    """Shown with the format; must fit it (checked after the two fields above)."""
    ask_delay: str = "1m"
    """Newcomers joining within this time after the first are asked together in one message."""
    intro_window: str = "24h"
    intro_min_length: int = Field(default=8, ge=1, le=500)
    intro_keywords: list[str] = Field(default=["我是", "我叫", "来自", "坐标", "自我介绍", "从事", "职业", "工作",
                                               "在读", "爱好", "喜欢"], min_length=1)
    intro_points: int = Field(default=10, ge=0)
    """Points for the first self-introduction (0: thanks only). Needs the points plugin."""
    remind_after: str = "2h"
    max_mentions: int = Field(default=20, ge=1, le=100)
    list_words: list[str] = ["未改名单", "未改昵称"]
    list_limit: int = Field(default=50, ge=1, le=500)

    _pattern: str = PrivateAttr(default="")

    @field_validator("ask_delay", "intro_window", "remind_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("nickname_format")
    @classmethod
    def _readable(cls, value: str) -> str:
        pattern_from_format(value)
        return value

    @field_validator("nickname_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"不是有效的正则表达式：{err}") from None
        return value

    @field_validator("nickname_example")
    @classmethod
    def _example_fits(cls, value: str, info: ValidationInfo) -> str:
        if "nickname_format" not in info.data or "nickname_pattern" not in info.data:
            return value  # the format itself is wrong, and that error is reported
        readable, regex = info.data["nickname_format"], info.data["nickname_pattern"]
        if not nickname_fits(value, regex or pattern_from_format(readable)):
            raise ValueError(f"示例 {value!r} 不符合群昵称格式 {regex or readable!r}")
        return value

    @model_validator(mode="after")
    def _compile(self) -> IcebreakConfig:
        self._pattern = self.nickname_pattern or pattern_from_format(self.nickname_format)
        return self

    @property
    def pattern(self) -> str:
        return self._pattern

    def fits(self, alias: str | None) -> bool:
        return nickname_fits(alias, self._pattern)

    def duration(self, field: str) -> timedelta:
        return parse_duration(getattr(self, field))


plugin = Plugin(
    name="icebreak",
    description="破冰：请新人自我介绍、按格式改群昵称；介绍有积分，昵称未改提醒一次",
    usage="新人发一段自我介绍（我是…来自…）；管理员发送「未改名单」查看还没改群昵称的新人",
    config=IcebreakConfig,
    needs={"read_room_messages"},
)

_awaiting: dict[str, set[str]] = {}
"""room id -> newcomers whose introduction window is open: chatter from anyone else costs one lookup."""


def _row(session: Session, room_id: str | None, member_id: str | None) -> IcebreakNewcomer | None:
    return session.exec(select(IcebreakNewcomer).where(
        IcebreakNewcomer.room_id == room_id, IcebreakNewcomer.member_id == member_id)).first()


def _remind_key(row: IcebreakNewcomer) -> str:
    return f"remind:{row.room_id}:{row.member_id}:{row.joined_at.timestamp():.0f}"


def _in_room(ctx: Context, member_id: str) -> bool:
    membership = ctx.membership(member_id)
    return membership is not None and membership.in_room


@plugin.on_startup
async def load_open_windows(ctx: Context) -> None:
    _awaiting.clear()
    for room_id, member_id in ctx.db.exec(select(IcebreakNewcomer.room_id, IcebreakNewcomer.member_id).where(
            col(IcebreakNewcomer.intro_at).is_(None), IcebreakNewcomer.intro_until > ctx.now)):
        _awaiting.setdefault(room_id, set()).add(member_id)


# --- a newcomer joins: ask (batched) and arm the nickname reminder ---------------------------------------


@plugin.on_event(MembersJoined).handle
async def on_join(ctx: Context) -> None:
    event = ctx.event
    assert isinstance(event, MembersJoined)
    config: IcebreakConfig = ctx.config
    me = await ctx.bot_member()
    open_batch = ctx.db.exec(select(IcebreakNewcomer.ask_at).where(
        IcebreakNewcomer.room_id == event.room_id, col(IcebreakNewcomer.asked_at).is_(None),
        IcebreakNewcomer.ask_at > ctx.now).order_by(col(IcebreakNewcomer.ask_at))).first()
    ask_at = open_batch or ctx.now + config.duration("ask_delay")
    asking = False
    for member in event.members:
        if me is not None and member.id == me.id:
            continue
        fits = config.fits(ctx.member_info(member.id).alias)
        fields = {"joined_at": event.time, "ask_at": ask_at, "asked_at": None,
                  "intro_until": event.time + config.duration("intro_window")}
        if not insert_unique(ctx.db, IcebreakNewcomer, account=ctx.account, room_id=event.room_id,
                             member_id=member.id, nickname_ok_at=ctx.now if fits else None, **fields):
            row = _row(ctx.db, event.room_id, member.id)
            assert row is not None
            if row.intro_at is not None and fits:
                continue  # back again, and already did both: nothing to ask
            for name, value in fields.items():
                setattr(row, name, value)
            ctx.db.add(row)
        row = _row(ctx.db, event.room_id, member.id)
        assert row is not None
        asking = True
        if row.intro_at is None:
            _awaiting.setdefault(event.room_id, set()).add(member.id)
        if not fits and row.reminded_at is None:
            ctx.schedule("remind", at=event.time + config.duration("remind_after"), key=_remind_key(row),
                         member_id=member.id)
    if asking:
        ctx.schedule("ask", at=ask_at, key=f"ask:{event.room_id}:{ask_at.timestamp():.0f}")


@plugin.timer("ask")
async def ask(ctx: Context) -> None:
    """One message for everyone whose batch is due: introduce yourself, set your nickname like this."""
    config: IcebreakConfig = ctx.config
    rows = ctx.db.exec(select(IcebreakNewcomer).where(
        IcebreakNewcomer.room_id == ctx.room_id, col(IcebreakNewcomer.asked_at).is_(None),
        IcebreakNewcomer.ask_at <= ctx.now).order_by(col(IcebreakNewcomer.id))).all()
    here = []
    for row in rows:
        row.asked_at = ctx.now
        ctx.db.add(row)
        if _in_room(ctx, row.member_id):
            here.append(row)
    points = config.intro_points if _points(ctx) is not None else 0
    chunks = [here[i:i + config.max_mentions] for i in range(0, len(here), config.max_mentions)]
    for number, chunk in enumerate(chunks, start=1):
        await ctx.say(template="icebreak/ask.j2", newcomers=[ctx.member_info(r.member_id) for r in chunk],
                      nickname_format=config.nickname_format, nickname_example=config.nickname_example,
                      intro_window=config.duration("intro_window"), points=points, part=number, parts=len(chunks))


def _points(ctx: Context) -> object | None:
    try:
        return ctx.service("points")
    except LookupError:
        return None


# --- the first self-introduction ---------------------------------------------------------------------


def _awaited(ctx: Context) -> bool:
    return ctx.room_id is not None and ctx.member_id in _awaiting.get(ctx.room_id, ())


# Early and never blocking: it only watches, so a quiz answer or lottery keyword from a newcomer still reaches
# its plugin, and a blocking plugin cannot hide a newcomer's introduction.
introduction = plugin.on_message(rule=_awaited, priority=15, block=False)


@introduction.handle
async def thank_introduction(ctx: Context) -> None:
    assert ctx.room_id is not None and ctx.member_id is not None
    config: IcebreakConfig = ctx.config
    row = _row(ctx.db, ctx.room_id, ctx.member_id)
    if row is None or row.intro_at is not None or ctx.now > row.intro_until:
        _awaiting.get(ctx.room_id, set()).discard(ctx.member_id)
        return
    if not looks_like_intro(ctx.text, min_length=config.intro_min_length, keywords=config.intro_keywords):
        return
    claimed = ctx.db.execute(update(IcebreakNewcomer).where(  # type: ignore[call-overload]
        col(IcebreakNewcomer.id) == row.id, col(IcebreakNewcomer.intro_at).is_(None))
        .values(intro_at=ctx.now, intro_text=ctx.text[:500]))
    if not claimed.rowcount:
        return
    points = _grant(ctx, config.intro_points)
    if points:
        ctx.db.execute(update(IcebreakNewcomer).where(  # type: ignore[call-overload]
            col(IcebreakNewcomer.id) == row.id).values(intro_points=points))
    _awaiting[ctx.room_id].discard(ctx.member_id)
    await ctx.reply(template="icebreak/thanks.j2", points=points, nickname_ok=config.fits(ctx.member_info(
        ctx.member_id).alias), nickname_format=config.nickname_format, nickname_example=config.nickname_example)


def _grant(ctx: Context, amount: int) -> int:
    """Points for the introduction, once per member and room (the key); 0 without the points plugin."""
    service = _points(ctx)
    if service is None or amount <= 0:
        return 0
    granted = service.grant(ctx.db, room_id=ctx.room_id, member_id=ctx.member_id,  # type: ignore[attr-defined]
                            amount=amount, reason="新人自我介绍", source="icebreak",
                            key=f"icebreak:intro:{ctx.member_id}", at=ctx.now)
    return amount if granted else 0


# --- the nickname ---------------------------------------------------------------------------------------


@plugin.on_event(MemberRenamed).handle
async def on_rename(ctx: Context) -> None:
    event = ctx.event
    assert isinstance(event, MemberRenamed)
    config: IcebreakConfig = ctx.config
    row = _row(ctx.db, event.room_id, event.member_id)
    if row is None or row.nickname_ok_at is not None or not config.fits(event.alias):
        return
    row.nickname_ok_at = ctx.now
    ctx.db.add(row)
    ctx.cancel_scheduled(_remind_key(row))
    await ctx.reply(template="icebreak/renamed.j2", alias=event.alias)


@plugin.timer("remind")
async def remind(ctx: Context) -> None:
    """Once per newcomer: the nickname still does not fit the format."""
    assert ctx.task is not None and ctx.member_id is not None
    config: IcebreakConfig = ctx.config
    row = _row(ctx.db, ctx.room_id, ctx.member_id)
    if row is None or row.reminded_at is not None or not _in_room(ctx, ctx.member_id):
        return
    if config.fits(ctx.member_info(ctx.member_id).alias):
        return
    row.reminded_at = ctx.now
    ctx.db.add(row)
    await ctx.say(template="icebreak/remind.j2", nickname_format=config.nickname_format,
                  nickname_example=config.nickname_example)


pending = plugin.on_fullmatch("未改名单", "未改昵称", words_from="list_words", permission=ROOM_ADMIN, priority=10)


@pending.handle
async def list_pending(ctx: Context) -> None:
    config: IcebreakConfig = ctx.config
    rows = ctx.db.exec(select(IcebreakNewcomer).where(IcebreakNewcomer.room_id == ctx.room_id)
                       .order_by(col(IcebreakNewcomer.joined_at))).all()
    waiting = [r for r in rows if _in_room(ctx, r.member_id) and not config.fits(ctx.member_info(r.member_id).alias)]
    await ctx.reply(template="icebreak/pending.j2", total=len(waiting), nickname_format=config.nickname_format,
                    newcomers=[_listed(ctx, r) for r in waiting[:config.list_limit]])


def _listed(ctx: Context, row: IcebreakNewcomer) -> dict[str, object]:
    return {"member": ctx.member_info(row.member_id), "joined_at": row.joined_at,
            "introduced": row.intro_at is not None, "reminded": row.reminded_at is not None}
