"""lottery (抽奖): keyword entry, eligibility, a deadline that survives restarts, and a verifiable draw.

At open the bot posts sha256(seed); at the deadline it derives the winners from the seed and the sorted
entrants (fairness.py, docs/lottery.md) and reveals the seed, so anyone can recompute the result.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlmodel import col, select

from bot import ROOM_ADMIN, Context, Merge, Plugin, insert_unique

from .fairness import canonical_entrants, commitment, draw_winners, new_seed
from .models import LotteryDraw, LotteryEntry
from .options import StartDraw, parse_command, parse_moment
from .service import LotteryService


class LotteryConfig(BaseModel):
    start_words: list[str] = ["开始抽奖", "发起抽奖"]
    history_words: list[str] = ["抽奖记录"]
    default_keyword: str = "抽奖"
    default_duration: str = "10m"
    include_admins: bool = False
    """Let room admins (and the bot, which is always one) enter."""
    confirm_entries: bool = True
    """Reply to each entry; switch off in very large groups to keep the room quiet."""
    history_size: int = 5
    member_tags: list[str] = []
    """Only members with all these insight tags may enter, e.g. ["active"] (per room under
    [rooms.<id>.plugins.lottery]); needs the insight plugin."""


plugin = Plugin(
    name="lottery",
    description="抽奖：口令参与，到点开奖，结果可公开核验",
    usage="管理员发送「开始抽奖 奖品=口红 名额=3 口令=我要抽奖 时长=10m」；群友发送口令参与",
    config=LotteryConfig,
)
plugin.service = LotteryService()

_open_keywords: dict[str, set[str]] = {}
"""room id -> entry keywords of open draws: a hint so ordinary chatter costs one dict lookup."""


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().lower()


def _is_entry(ctx: Context) -> bool:
    return ctx.room_id is not None and _normalize(ctx.text) in _open_keywords.get(ctx.room_id, ())


@plugin.on_startup
async def load_open_draws(ctx: Context) -> None:
    _open_keywords.clear()
    for draw in ctx.db.exec(select(LotteryDraw).where(LotteryDraw.status == "open")):
        _open_keywords.setdefault(draw.room_id, set()).add(_normalize(draw.keyword))


# --- opening a draw ---------------------------------------------------------------

start = plugin.on_command("开始抽奖", "发起抽奖", words_from="start_words", permission=ROOM_ADMIN, priority=10)


@start.handle
async def start_command(ctx: Context) -> None:
    try:
        params = parse_command(ctx.args)
    except (ValueError, ValidationError) as err:
        await ctx.reply(template="lottery/usage.j2", error=_short(err))
        return
    await open_draw(ctx, params, opened_by=ctx.member_id)


@plugin.action("start", params=StartDraw)
async def start_action(ctx: Context, params: StartDraw) -> None:
    """SOP step: `action: {plugin: lottery, name: start, params: {prize: 口红, winners: 3, duration: 30m}}`."""
    await open_draw(ctx, params, opened_by=None)


async def open_draw(ctx: Context, params: StartDraw, *, opened_by: str | None) -> LotteryDraw | None:
    assert ctx.room_id is not None, "a draw needs a room"
    config: LotteryConfig = ctx.config
    keyword = (params.keyword or config.default_keyword).strip()
    if (params.min_level or params.signed_in_today) and not _has_points(ctx):
        await ctx.say(template="lottery/usage.j2", error="等级和签到条件需要启用积分插件（points）")
        return None
    running = ctx.db.exec(select(LotteryDraw.keyword).where(LotteryDraw.room_id == ctx.room_id,
                                                            LotteryDraw.status == "open")).all()
    if _normalize(keyword) in {_normalize(k) for k in running}:
        await ctx.say(template="lottery/usage.j2", error=f"口令「{keyword}」已有一场抽奖在进行")
        return None
    deadline = params.deadline_at(ctx.now, config.default_duration)
    if deadline <= ctx.now:
        await ctx.say(template="lottery/usage.j2", error="截止时间已经过去")
        return None
    seed = new_seed()
    draw = LotteryDraw(
        account=ctx.account, room_id=ctx.room_id, prize=params.prize, winners_count=params.winners,
        keyword=keyword, opened_by=opened_by, opened_at=ctx.now, deadline=deadline, seed=seed,
        commitment=commitment(seed), min_level=params.min_level, signed_in_today=params.signed_in_today,
        joined_before=parse_moment(params.joined_before, ctx.now) if params.joined_before else None,
        include_admins=config.include_admins if params.include_admins is None else params.include_admins,
    )
    ctx.db.add(draw)
    ctx.db.flush()
    ctx.schedule("draw", at=deadline, key=f"draw:{draw.id}", data={"draw_id": draw.id})
    _open_keywords.setdefault(ctx.room_id, set()).add(_normalize(keyword))
    await ctx.say(template="lottery/opened.j2", draw=draw)
    return draw


def _has_points(ctx: Context) -> bool:
    try:
        ctx.service("points")
    except LookupError:
        return False
    return True


# --- entering -----------------------------------------------------------------------

entry = plugin.on_message(rule=_is_entry, priority=20, block=True)


@entry.handle
async def enter(ctx: Context) -> None:
    assert ctx.room_id is not None and ctx.member_id is not None
    draw = ctx.db.exec(select(LotteryDraw).where(
        LotteryDraw.room_id == ctx.room_id, LotteryDraw.status == "open")).all()
    draw = next((d for d in draw if _normalize(d.keyword) == _normalize(ctx.text)), None)
    if draw is None or ctx.now >= draw.deadline:
        return
    if ctx.is_room_admin() and not draw.include_admins:
        return  # admins run the draw; they do not win it unless configured
    reasons = _ineligible(ctx, draw)
    if reasons:
        await ctx.reply(template="lottery/ineligible.j2", draw=draw, reasons=reasons)
        return
    added = insert_unique(ctx.db, LotteryEntry, draw_id=draw.id, member_id=ctx.member_id, entered_at=ctx.now)
    if not ctx.config.confirm_entries:
        return
    count = len(ctx.db.exec(select(LotteryEntry.id).where(LotteryEntry.draw_id == draw.id)).all())
    if not added:
        await ctx.reply(template="lottery/duplicate.j2", draw=draw, count=count)
        return
    deadline = f"{draw.deadline.astimezone(ctx.now.tzinfo):%H:%M}"
    await ctx.reply(template="lottery/entered.j2", draw=draw, count=count,
                    merge=Merge(f"lottery.entered:{draw.id}", "lottery/entered_merged.j2",
                                {"number": count, "deadline": deadline}))


def _ineligible(ctx: Context, draw: LotteryDraw) -> list[str]:
    """Why this member may not enter (empty: they may), in words for the template."""
    reasons: list[str] = []
    assert ctx.room_id is not None and ctx.member_id is not None
    if draw.min_level is not None or draw.signed_in_today:
        points: Any = ctx.service("points")
        if draw.min_level is not None:
            level = points.level(ctx.db, ctx.room_id, ctx.member_id)
            if level.rank < draw.min_level:
                reasons.append(f"等级需达到 V{draw.min_level}（你现在是 {level.name}）")
        if draw.signed_in_today and not points.signed_in_on(ctx.db, ctx.room_id, ctx.member_id, ctx.today):
            reasons.append("需要今天已签到")
    if ctx.config.member_tags:
        try:
            have = ctx.service("insight").current_tags(ctx.db, ctx.room_id, ctx.member_id, ctx.now)
        except LookupError:
            have = set()
        missing = [tag for tag in ctx.config.member_tags if tag not in have]
        if missing:
            reasons.append(f"需要「{'」「'.join(missing)}」标签")
    if draw.joined_before is not None:
        joined = ctx.joined_at()
        if joined is not None and joined >= draw.joined_before:
            reasons.append("需在 {} 之前入群".format(draw.joined_before.astimezone(ctx.now.tzinfo)
                                                     .strftime("%m月%d日 %H:%M")))
    return reasons


# --- the draw ------------------------------------------------------------------------------


@plugin.timer("draw")
async def draw_due(ctx: Context) -> None:
    """Runs once at the deadline (or at once after a restart, `late`); the status guards a second run."""
    task = ctx.task
    assert task is not None
    draw = ctx.db.get(LotteryDraw, int(task.data["draw_id"]))  # type: ignore[call-overload]
    if draw is None or draw.status != "open":
        return
    ids = ctx.db.exec(select(LotteryEntry.member_id).where(LotteryEntry.draw_id == draw.id)).all()
    draw.entrants = canonical_entrants(ids)
    draw.winners = draw_winners(draw.seed, draw.entrants, draw.winners_count)
    draw.status, draw.drawn_at, draw.drawn_late = "drawn", ctx.now, task.late
    ctx.db.add(draw)
    _open_keywords.get(draw.room_id, set()).discard(_normalize(draw.keyword))
    await ctx.say(template="lottery/drawn.j2", draw=draw, winners=[ctx.member_info(w) for w in draw.winners],
                  everyone_wins=0 < len(draw.entrants) <= draw.winners_count, late=task.late,
                  entrant_count=len(draw.entrants))


# --- history --------------------------------------------------------------------------------

history = plugin.on_fullmatch("抽奖记录", words_from="history_words", permission=ROOM_ADMIN, priority=10)


@history.handle
async def show_history(ctx: Context) -> None:
    draws = ctx.db.exec(select(LotteryDraw).where(LotteryDraw.room_id == ctx.room_id)
                        .order_by(col(LotteryDraw.id).desc()).limit(ctx.config.history_size)).all()
    await ctx.reply(template="lottery/history.j2", draws=draws,
                    names={w: ctx.member_info(w).display for d in draws for w in d.winners})


def _short(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg'].removeprefix('Value error, ')}"
    return str(err)
