"""points (签到积分): daily sign-in with streaks, levels, a ranking, redemption and referral rewards.

The ledger is the truth and other plugins earn or spend through `ctx.service("points")` (service.py);
every "once" (one sign-in a day, one payment per key, one announcement per level, no oversold stock)
is a database constraint or a conditional UPDATE, so duplicate or concurrent messages cannot break it.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from bot import (
    OPERATOR,
    ROOM_ADMIN,
    Context,
    MembersJoined,
    Merge,
    Plugin,
    WatchedFile,
    is_direct_message,
    parse_duration,
)

from .catalog import Catalog, load_catalog
from .models import MIGRATIONS, PointsRedemption
from .service import DEFAULT_LEVELS, MAX_CHANGE, InsufficientPoints, Level, PointsService, SoldOut

__all__ = ["InsufficientPoints", "Level", "PointsService", "SoldOut", "plugin"]


class LevelConfig(BaseModel):
    name: str = Field(min_length=1)
    threshold: int = Field(ge=0, le=10**15)


class PointsConfig(BaseModel):
    signin_words: list[str] = ["签到", "打卡"]
    balance_words: list[str] = ["积分", "我的积分"]
    rank_words: list[str] = ["排行榜", "积分排行"]
    catalog_words: list[str] = ["积分商城", "兑换列表"]
    redeem_words: list[str] = ["兑换"]
    adjust_words: list[str] = ["调整积分"]
    history_words: list[str] = ["积分明细"]
    redemptions_words: list[str] = ["兑换记录"]
    fulfil_words: list[str] = ["已发放"]

    signin_points: int = Field(10, ge=0, le=MAX_CHANGE)
    streak_bonus: int = Field(2, ge=0, le=MAX_CHANGE)
    """Extra points per consecutive day after the first (day 2: +2, day 3: +4 …) up to streak_bonus_max."""
    streak_bonus_max: int = Field(20, ge=0, le=MAX_CHANGE)
    levels: list[LevelConfig] = [LevelConfig(name=lv.name, threshold=lv.threshold) for lv in DEFAULT_LEVELS]
    """V1, V2 … in order; thresholds count points earned (spending does not lower a level)."""
    top_n: int = Field(10, ge=1, le=50)
    catalog: str = "data/points_catalog.yaml"
    referral_points: int = Field(20, ge=0, le=MAX_CHANGE)
    referral_after: str = "24h"
    """The invitee must still be in the room this long after joining for the inviter to earn."""
    announce_referrals: bool = True

    @field_validator("levels")
    @classmethod
    def _ascending(cls, levels: list[LevelConfig]) -> list[LevelConfig]:
        if not levels or levels[0].threshold != 0:
            raise ValueError("第一个等级的 threshold 要从 0 开始")
        if any(b.threshold <= a.threshold for a, b in itertools.pairwise(levels)):
            raise ValueError("等级的 threshold 要一级比一级高")
        return levels

    @model_validator(mode="after")
    def _durations(self) -> PointsConfig:
        parse_duration(self.referral_after)
        return self

    def points_for_streak(self, streak: int) -> int:
        return self.signin_points + min(self.streak_bonus * (streak - 1), self.streak_bonus_max)

    def level_table(self) -> tuple[Level, ...]:
        return tuple(Level(rank, lv.name, lv.threshold) for rank, lv in enumerate(self.levels, start=1))


plugin = Plugin(
    name="points",
    description="签到积分：每日签到、连续签到奖励、等级、排行榜、积分兑换、邀请奖励",
    usage="发送「签到」每日签到；「积分」查看积分和等级；「排行榜」；「积分商城」查看可兑换的奖品，「兑换 奖品名」",
    config=PointsConfig,
    migrations=MIGRATIONS,
    needs={"read_room_messages"},
)
service = PointsService()
plugin.service = service
_catalogs: dict[str, WatchedFile[Catalog]] = {}


@plugin.on_startup
async def configure(ctx: Context) -> None:
    service.levels = ctx.config.level_table()


@plugin.on_check
def check_catalog(project: Any, config: PointsConfig) -> list[str]:
    try:
        load_catalog(project / config.catalog)
    except Exception as err:  # a YamlError names file and line
        return [str(err)]
    return []


def _catalog(ctx: Context) -> WatchedFile[Catalog]:
    path = ctx.project / ctx.config.catalog
    return _catalogs.setdefault(str(path), WatchedFile(path, load_catalog, Catalog()))


def _levels_view(earned: int) -> dict[str, Any]:
    level = service.level_for(earned)
    following = next((lv for lv in service.levels if lv.threshold > earned), None)
    return {"level": level, "next_level": following, "to_next": following.threshold - earned if following else 0}


# --- members ---------------------------------------------------------------------------

signin = plugin.on_fullmatch("签到", "打卡", words_from="signin_words", rule=lambda ctx: ctx.room_id is not None,
                             priority=10, block=True)


@signin.handle
async def sign_in(ctx: Context) -> None:
    assert ctx.room_id is not None and ctx.member_id is not None
    points = ctx.service("points")
    done = points.sign_in(ctx.db, room_id=ctx.room_id, member_id=ctx.member_id, day=ctx.today, at=ctx.now,
                          points_for_streak=ctx.config.points_for_streak)
    if done is None:
        await ctx.reply(template="points/signin_again.j2",
                        balance=points.balance(ctx.db, ctx.room_id, ctx.member_id),
                        streak=points.streak(ctx.db, ctx.room_id, ctx.member_id, ctx.today))
        return
    await ctx.reply(template="points/signin_ok.j2", signin=done, balance=done.balance,
                    tomorrow=ctx.config.points_for_streak(done.streak + 1),
                    merge=Merge("points.signin", "points/signin_merged.j2",
                                {"points": done.points, "streak": done.streak}))


balance = plugin.on_fullmatch("积分", "我的积分", words_from="balance_words",
                              rule=lambda ctx: ctx.room_id is not None, priority=10, block=True)


@balance.handle
async def show_balance(ctx: Context) -> None:
    assert ctx.room_id is not None and ctx.member_id is not None
    earned = service.earned(ctx.db, ctx.room_id, ctx.member_id)
    await ctx.reply(template="points/balance.j2", balance=service.balance(ctx.db, ctx.room_id, ctx.member_id),
                    streak=service.streak(ctx.db, ctx.room_id, ctx.member_id, ctx.today),
                    signed_today=service.signed_in_on(ctx.db, ctx.room_id, ctx.member_id, ctx.today),
                    **_levels_view(earned))


dm_signin = plugin.on_fullmatch("签到", "打卡", words_from="signin_words", rule=is_direct_message(), priority=10,
                                block=True)
dm_balance = plugin.on_fullmatch("积分", "我的积分", words_from="balance_words", rule=is_direct_message(),
                                 priority=10, block=True)


@dm_signin.handle
async def sign_in_privately(ctx: Context) -> None:
    """Points belong to a room, so a private 签到 / 积分 says where to send it (instead of the bot's menu)."""
    await ctx.reply(template="points/in_rooms_only.j2", word=ctx.text.strip(), signin=True)


@dm_balance.handle
async def balance_privately(ctx: Context) -> None:
    await ctx.reply(template="points/in_rooms_only.j2", word=ctx.text.strip(), signin=False)


ranking = plugin.on_fullmatch("排行榜", "积分排行", words_from="rank_words",
                              rule=lambda ctx: ctx.room_id is not None, priority=10, block=True)


@ranking.handle
async def show_ranking(ctx: Context) -> None:
    assert ctx.room_id is not None
    rows = service.top(ctx.db, ctx.room_id, ctx.config.top_n)
    await ctx.say(template="points/ranking.j2", rows=[
        {"who": ctx.member_info(row.member_id), "balance": row.balance, "level": service.level_for(row.earned)}
        for row in rows])


catalog = plugin.on_fullmatch("积分商城", "兑换列表", words_from="catalog_words",
                              rule=lambda ctx: ctx.room_id is not None, priority=10, block=True)


@catalog.handle
async def show_catalog(ctx: Context) -> None:
    items = _catalog(ctx).get().items
    await ctx.reply(template="points/catalog.j2", items=[
        {"item": item, "left": max(item.stock - service.sold(ctx.db, item.name), 0)} for item in items])


# Longer admin commands that start with the same word (兑换记录) have a higher priority and block.
redeem = plugin.on_command("兑换", words_from="redeem_words", rule=lambda ctx: ctx.room_id is not None,
                           priority=12, block=True)


@redeem.handle
async def redeem_item(ctx: Context) -> None:
    assert ctx.room_id is not None and ctx.member_id is not None
    if not ctx.args:
        await show_catalog(ctx)
        return
    item = _catalog(ctx).get().find(ctx.args)
    if item is None:
        await ctx.reply(template="points/redeem_failed.j2", reason="unknown", wanted=ctx.args)
        return
    points = ctx.service("points")
    try:
        redemption = points.redeem(ctx.db, room_id=ctx.room_id, member_id=ctx.member_id, item=item.name,
                                   cost=item.cost, stock=item.stock, at=ctx.now)
    except SoldOut:
        await ctx.reply(template="points/redeem_failed.j2", reason="sold_out", item=item)
        return
    except InsufficientPoints as short:
        await ctx.reply(template="points/redeem_failed.j2", reason="insufficient", item=item, balance=short.balance)
        return
    ctx.log.info("redemption %s: %s redeemed %s for %d points in %s", redemption.id, ctx.member_id, item.name,
                 item.cost, ctx.room_id)
    await ctx.reply(template="points/redeemed.j2", item=item, redemption=redemption,
                    balance=points.balance(ctx.db, ctx.room_id, ctx.member_id))


# --- referrals ---------------------------------------------------------------------------

joined = plugin.on_event(MembersJoined, priority=40)


@joined.handle
async def remember_invites(ctx: Context) -> None:
    event = ctx.event
    assert isinstance(event, MembersJoined)
    inviter = event.inviter_id
    if inviter is None or not ctx.config.referral_points:
        return
    wait = parse_duration(ctx.config.referral_after)
    for member in event.members:
        if member.id == inviter:
            continue
        ctx.schedule("referral", delay=wait, key=f"referral:{event.room_id}:{member.id}:{event.id}",
                     data={"inviter": inviter, "joined_at": ctx.now.isoformat()}, room_id=event.room_id,
                     member_id=member.id)


@plugin.timer("referral")
async def pay_referral(ctx: Context) -> None:
    """Pays if the invitee has been in the room, invited by this inviter, since the join that was scheduled."""
    task = ctx.task
    assert task is not None and task.room_id is not None and task.member_id is not None
    inviter, invitee = str(task.data["inviter"]), task.member_id
    since = ctx.membership(invitee, task.room_id)
    member = ctx.member_info(invitee, task.room_id)
    earliest = task.due_at - parse_duration(ctx.config.referral_after) + timedelta(seconds=1)
    stayed = (since is not None and since.left_at is None and since.inviter_id == inviter
              and since.joined_at is not None and since.joined_at <= earliest)
    if not stayed:
        ctx.log.info("referral of %s by %s in %s not paid: the invitee did not stay", invitee, inviter, task.room_id)
        return
    paid = ctx.service("points").grant(
        ctx.db, room_id=task.room_id, member_id=inviter, amount=ctx.config.referral_points,
        reason=f"邀请 {member.display} 入群", source="points", key=f"referral:{invitee}", at=ctx.now)
    if paid and ctx.config.announce_referrals:
        await ctx.say(template="points/referral.j2", room=task.room_id, mentions=[inviter],
                      inviter=ctx.member_info(inviter, task.room_id), invitee=member,
                      points=ctx.config.referral_points)


# --- admins ------------------------------------------------------------------------------

# A sign may be followed by a few spaces; an unbounded `\s*` there made a run of spaces cost quadratic time.
_AMOUNT = re.compile(r"(?<![\w.])((?:[+＋\-－]\s{0,3})?\d+)(?![\w.])")


async def _target(ctx: Context) -> str | None:
    """The member an admin command is about: the first @-mentioned member other than the bot."""
    return next(iter(await ctx.mentioned()), None)


def _without_mentions(ctx: Context, text: str) -> str:
    for member_id in getattr(ctx.event, "mentions", ()):
        text = text.replace(f"@{ctx.member_info(member_id).display}", " ")
    return text.replace("\u2005", " ").strip()


adjust = plugin.on_command("调整积分", words_from="adjust_words", permission=ROOM_ADMIN | OPERATOR,
                           rule=lambda ctx: ctx.room_id is not None, priority=5, block=True)


@adjust.handle
async def adjust_points(ctx: Context) -> None:
    """`调整积分 @某人 +50 线下活动奖励` / `-20 违规广告`: an audited change with the admin's id and reason."""
    assert ctx.room_id is not None and ctx.member_id is not None
    target = await _target(ctx)
    rest = _without_mentions(ctx, ctx.args)
    found = _AMOUNT.search(rest)
    reason = (rest[:found.start()] + rest[found.end():]).strip() if found else ""
    if target is None or found is None or not reason:
        await ctx.reply(template="points/adjust_usage.j2")
        return
    digits = "".join(found.group(1).replace("＋", "+").replace("－", "-").split())
    if len(digits.lstrip("+-").lstrip("0")) > len(str(MAX_CHANGE)) or abs(int(digits)) > MAX_CHANGE:
        await ctx.reply(template="points/adjust_too_large.j2", limit=MAX_CHANGE)
        return
    amount = int(digits)
    if amount == 0:
        await ctx.reply(template="points/adjust_usage.j2")
        return
    points = ctx.service("points")
    try:
        points.adjust(ctx.db, room_id=ctx.room_id, member_id=target, amount=amount, reason=reason,
                      actor_id=ctx.member_id, at=ctx.now)
    except InsufficientPoints as short:
        await ctx.reply(template="points/adjust_failed.j2", who=ctx.member_info(target), balance=short.balance,
                        amount=amount)
        return
    ctx.log.info("points adjusted by %s: %s %+d in %s (%s)", ctx.member_id, target, amount, ctx.room_id, reason)
    await ctx.reply(template="points/adjusted.j2", who=ctx.member_info(target), amount=amount, reason=reason,
                    balance=points.balance(ctx.db, ctx.room_id, target))


history = plugin.on_command("积分明细", words_from="history_words", permission=ROOM_ADMIN | OPERATOR,
                            rule=lambda ctx: ctx.room_id is not None, priority=5, block=True)


@history.handle
async def show_history(ctx: Context) -> None:
    assert ctx.room_id is not None
    target = await _target(ctx)
    if target is None:
        await ctx.reply(template="points/history_usage.j2")
        return
    rows = service.history(ctx.db, ctx.room_id, target, limit=15)
    await ctx.reply(template="points/history.j2", who=ctx.member_info(target), rows=rows,
                    balance=service.balance(ctx.db, ctx.room_id, target),
                    actors={row.actor_id: ctx.member_info(row.actor_id) for row in rows if row.actor_id})


redemptions = plugin.on_fullmatch("兑换记录", words_from="redemptions_words", permission=ROOM_ADMIN | OPERATOR,
                                  rule=lambda ctx: ctx.room_id is not None, priority=5, block=True)


@redemptions.handle
async def show_redemptions(ctx: Context) -> None:
    assert ctx.room_id is not None
    rows = service.pending_redemptions(ctx.db, ctx.room_id)
    await ctx.reply(template="points/redemptions.j2",
                    rows=[{"row": row, "who": ctx.member_info(row.member_id)} for row in rows])


fulfil = plugin.on_command("已发放", words_from="fulfil_words", permission=ROOM_ADMIN | OPERATOR,
                           rule=lambda ctx: ctx.room_id is not None, priority=5, block=True)


@fulfil.handle
async def mark_fulfilled(ctx: Context) -> None:
    """`已发放 3`: the admin sent redemption #3; it leaves the pending list."""
    number = ctx.args.lstrip("#＃").strip()
    row = ctx.db.get(PointsRedemption, int(number)) if number.isdigit() else None
    if row is None or row.room_id != ctx.room_id:
        await ctx.reply(template="points/fulfil_failed.j2", number=ctx.args)
        return
    if row.status != "fulfilled":
        row.status = "fulfilled"
        ctx.db.add(row)
    await ctx.reply(template="points/fulfilled.j2", row=row, who=ctx.member_info(row.member_id))
