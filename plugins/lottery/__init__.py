"""lottery (抽奖): keyword entry, eligibility, a deadline that survives restarts, and a verifiable draw.

At open the bot posts sha256(seed) and the terms; at the deadline it derives the winners from the seed and
the sorted entrants (fairness.py, docs/lottery.md) and reveals the seed, so anyone can recompute the result.
In the beacon and announced modes the seed is first mixed with a public value nobody knows at the close
(a drand round, or a number an admin announces from a named public source), so nobody can aim the result.
"""

from __future__ import annotations

import logging
import unicodedata
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlmodel import col, func, select

from bot import OPERATOR, ROOM_ADMIN, Context, Merge, Plugin, explain_validation, insert_unique

from . import beacon as drand
from .fairness import canonical_entrants, commitment, draw_winners, mixed_seed
from .models import MIGRATIONS, LotteryDraw, LotteryEntry
from .options import COMMAND_KEYS, StartDraw, parse_command, parse_moment
from .posted import closed_footer, drawn_footer, normalize_value, opened_footer
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
    announce_words: list[str] = ["公布开奖号"]
    mode: str = Field("seed", pattern="^(seed|beacon|announced)$")
    """The default draw mode (docs/lottery.md): seed, beacon (drand; the bot must be online at the draw) or
    announced (an admin posts a public value after the close); `开奖方式=` overrides it per draw."""
    beacon: drand.BeaconSettings = drand.BeaconSettings()


plugin = Plugin(
    name="lottery",
    description="抽奖：口令参与，到点开奖，结果可公开核验",
    usage="管理员发送「开始抽奖 奖品=口红 名额=3 口令=我要抽奖 时长=10m」；群友发送口令参与",
    config=LotteryConfig,
    migrations=MIGRATIONS,
    needs={"read_room_messages"},
)
plugin.service = LotteryService()
log = logging.getLogger("qunbot.lottery")

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
    mode = params.mode or config.mode
    if params.beacon_round is not None:
        await ctx.say(template="lottery/usage.j2", error="信标轮次由机器人选定，不能指定")
        return None
    if mode == "announced" and not params.announce_source:
        await ctx.say(template="lottery/usage.j2",
                      error="开奖方式=公布 需要写明公布来源，例如 公布来源=11月23日福彩3D开奖号码")
        return None
    number = (ctx.db.exec(select(func.max(LotteryDraw.number)).where(LotteryDraw.room_id == ctx.room_id)).one()
              or 0) + 1
    seed = ctx.secret_hex(f"lottery:{ctx.account}:{ctx.room_id}:{number}")
    draw = LotteryDraw(
        account=ctx.account, room_id=ctx.room_id, number=number, prize=params.prize,
        winners_count=params.winners, keyword=keyword, mode=mode,
        announce_source=params.announce_source if mode == "announced" else None,
        beacon_round=drand.round_after(config.beacon, deadline) if mode == "beacon" else None,
        opened_by=opened_by, opened_at=ctx.now, deadline=deadline, seed=seed,
        commitment=commitment(seed), min_level=params.min_level, signed_in_today=params.signed_in_today,
        joined_before=parse_moment(params.joined_before, ctx.now) if params.joined_before else None,
        include_admins=config.include_admins if params.include_admins is None else params.include_admins,
    )
    ctx.db.add(draw)
    ctx.db.flush()
    ctx.schedule("draw", at=deadline, key=f"draw:{draw.id}", data={"draw_id": draw.id})
    _open_keywords.setdefault(ctx.room_id, set()).add(_normalize(keyword))
    await _post(ctx, draw, "opened", opened_footer(draw, ctx.now.tzinfo, _beacon_time(ctx, draw)))
    return draw


def _beacon_time(ctx: Context, draw: LotteryDraw) -> Any:
    return drand.round_time(ctx.config.beacon, draw.beacon_round) if draw.beacon_round else None


async def _post(ctx: Context, record: LotteryDraw, what: str, footer: str, **variables: Any) -> None:
    """The admins' template, then the plugin's own fairness lines; keyed so `verify` finds the post."""
    rendered = ctx.render(f"lottery/{what}.j2", draw=record, **variables)
    await ctx.say(f"{rendered.text.rstrip()}\n{footer}", mentions=rendered.mentions, key=f"lottery:{record.id}:{what}")


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
    added = insert_unique(ctx.db, LotteryEntry, draw_id=draw.id, member_id=ctx.member_id, entered_at=ctx.now,
                          message_id=ctx.event.id)
    if not ctx.config.confirm_entries:
        return
    count = len(ctx.db.exec(select(LotteryEntry.id).where(LotteryEntry.draw_id == draw.id)).all())
    key = f"lottery:{draw.id}:entry:{ctx.event.id}"
    if not added:
        await ctx.say(template="lottery/duplicate.j2", draw=draw, count=count, mentions=(ctx.member_id,), key=key)
        return
    deadline = f"{draw.deadline.astimezone(ctx.now.tzinfo):%H:%M}"
    await ctx.say(template="lottery/entered.j2", draw=draw, count=count, mentions=(ctx.member_id,), key=key,
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
    """At the deadline (or at once after a restart, `late`): close entries, then draw, now or once the public
    value is there. The status guards a second run; the timer row and the status change commit together."""
    task = ctx.task
    assert task is not None
    draw = ctx.db.get(LotteryDraw, int(task.data["draw_id"]))  # type: ignore[call-overload]
    if draw is None or draw.status == "drawn":
        return
    if draw.status == "open":
        ids = ctx.db.exec(select(LotteryEntry.member_id).where(LotteryEntry.draw_id == draw.id)).all()
        draw.entrants = canonical_entrants(ids)
        draw.drawn_late = task.late
        _open_keywords.get(draw.room_id, set()).discard(_normalize(draw.keyword))
        if draw.mode == "seed":
            await _finish(ctx, draw)
            return
        draw.status = "closed"
        ctx.db.add(draw)
        await _post(ctx, draw, "closed", closed_footer(draw, ctx.now.tzinfo, _beacon_time(ctx, draw)),
                    entrant_count=len(draw.entrants), late=task.late)
    if draw.mode == "beacon":
        await _try_beacon(ctx, draw, attempt=int(task.data.get("attempt", 0)))


async def _try_beacon(ctx: Context, draw: LotteryDraw, *, attempt: int) -> None:
    settings: drand.BeaconSettings = ctx.config.beacon
    assert draw.beacon_round is not None
    try:
        beacon = await drand.fetch(settings, draw.beacon_round)
    except drand.BeaconUnavailable as err:
        log.warning("lottery draw %s: drand round %s not available yet (%s); retrying", draw.id, draw.beacon_round,
                    err)
        ctx.schedule("draw", delay=drand.retry_delay(settings), key=f"draw:{draw.id}:retry:{attempt + 1}",
                     data={"draw_id": draw.id, "attempt": attempt + 1})
        return
    draw.beacon = beacon.as_dict()
    draw.public_value = beacon.randomness
    await _finish(ctx, draw)


async def _finish(ctx: Context, draw: LotteryDraw) -> None:
    effective = mixed_seed(draw.seed, draw.public_value if draw.mode != "seed" else None)
    draw.winners = draw_winners(effective, draw.entrants, draw.winners_count)
    draw.status, draw.drawn_at = "drawn", ctx.now
    ctx.db.add(draw)
    await _post(ctx, draw, "drawn", drawn_footer(draw, effective),
                winners=[ctx.member_info(w) for w in draw.winners],
                everyone_wins=0 < len(draw.entrants) <= draw.winners_count, late=draw.drawn_late,
                entrant_count=len(draw.entrants))


# --- announced mode: an admin posts the public value after the close -------------------------------

announce = plugin.on_command("公布开奖号", words_from="announce_words", permission=ROOM_ADMIN | OPERATOR,
                             priority=10)


@announce.handle
async def announce_value(ctx: Context) -> None:
    """`公布开奖号 3 0 7 9`: the value for draw 第 3 期 of this room, published by the source named at the open."""
    number, _, value = unicodedata.normalize("NFKC", ctx.args).strip().partition(" ")
    value = normalize_value(value)
    if not number.isdigit() or not value or len(value) > 100:
        await ctx.reply(template="lottery/announce_usage.j2", error="格式不对")
        return
    draw = ctx.db.exec(select(LotteryDraw).where(LotteryDraw.room_id == ctx.room_id,
                                                 LotteryDraw.number == int(number))).first()
    if draw is None or draw.mode != "announced":
        await ctx.reply(template="lottery/announce_usage.j2", error=f"第 {number} 期不是等待公布号码的抽奖")
        return
    if draw.status != "closed":
        await ctx.reply(template="lottery/announce_usage.j2",
                        error="报名还没截止，截止后再公布" if draw.status == "open" else "这一期已经开奖")
        return
    draw.public_value = value
    await _finish(ctx, draw)


# --- history --------------------------------------------------------------------------------

history = plugin.on_fullmatch("抽奖记录", words_from="history_words", permission=ROOM_ADMIN, priority=10)


@history.handle
async def show_history(ctx: Context) -> None:
    draws = ctx.db.exec(select(LotteryDraw).where(LotteryDraw.room_id == ctx.room_id)
                        .order_by(col(LotteryDraw.id).desc()).limit(ctx.config.history_size)).all()
    await ctx.reply(template="lottery/history.j2", draws=draws,
                    names={w: ctx.member_info(w).display for d in draws for w in d.winners})


def _short(err: Exception) -> str:
    """Why a command was refused, in the member's words: `奖品` rather than pydantic's `prize: Field required`."""
    if isinstance(err, ValidationError):
        return explain_validation(err, StartDraw, names={v: k for k, v in reversed(COMMAND_KEYS.items())})
    return str(err)
