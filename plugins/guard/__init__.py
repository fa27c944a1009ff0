"""guard (风控): keep groups clean of ads and floods, with a warning first and removal only by a logged rule.

Each message from a member who is not exempt (room admins, operators, the whitelist) goes through small
rules (`rules.py`): links, QR codes in images, shared cards, phone numbers and WeChat ids written out,
the admins' banned words, and floods. The first finding is a strike: the member is warned with the rule's
name, and after `remove_after` strikes within `strike_window` removed — or, where the account cannot remove
members, the room's admins are asked to. Every detection and action is a `guard_record` row; a false
positive costs one 撤销处罚.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import col, select

from bot import OPERATOR, ROOM_ADMIN, Context, MembersJoined, Plugin, WatchedFile, insert_unique, parse_duration

from .flood import FloodWatch
from .models import GuardRecord, GuardWhitelist
from .policy import decide
from .rules import BannedWordRule, ContactRule, Finding, LinkRule, Message, QrCodeRule, ShareRule
from .words import GuardWords, load_words

RuleName = Literal["link", "qrcode", "share", "contact", "banned_word", "flood"]


class GuardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[RuleName] = ["flood", "share", "qrcode", "link", "contact", "banned_word"]
    """Which rules run, in this order; the first finding counts."""
    words_file: str = "data/guard.yaml"
    """Banned words and allowed domains the admins edit."""
    allowed_domains: list[str] = []
    """Links to these domains (and their subdomains) are fine, e.g. the brand's own shop."""
    flood_messages: int = Field(8, ge=0, le=1000)
    flood_seconds: float = Field(10, gt=0, le=3600)
    """`flood_messages` messages within `flood_seconds` from one member is a flood (0: off)."""
    repeat_messages: int = Field(4, ge=0, le=1000)
    repeat_seconds: float = Field(120, gt=0, le=86400)
    """The same text `repeat_messages` times within `repeat_seconds` is a flood too (0: off)."""
    remove_after: int = Field(3, ge=0, le=100)
    """Strikes within `strike_window` that remove a member; 0: warn only, never remove."""
    strike_window: str = "24h"
    newcomer_period: str = "24h"
    """A member who joined less than this long ago is a newcomer ..."""
    newcomer_remove_after: int = Field(1, ge=0, le=100)
    """... and is removed after this many strikes (stricter: ad accounts post right after joining)."""
    whitelist: list[str] = []
    """Member ids never checked (in every room); admins add more per room with 白名单 @某人."""
    mass_join_count: int = Field(10, ge=0, le=10000)
    mass_join_window: str = "10m"
    """One inviter bringing `mass_join_count` members within `mass_join_window` is flagged to admins (0: off)."""
    whitelist_words: list[str] = ["白名单"]
    revoke_words: list[str] = ["撤销处罚"]
    records_words: list[str] = ["风控记录"]
    records_shown: int = Field(10, ge=1, le=50)

    @field_validator("strike_window", "newcomer_period", "mass_join_window")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class GuardService:
    """For other plugins (the FAQ): check a text the bot is about to send, and whether a room is flooding."""

    def __init__(self) -> None:
        self.watches: dict[tuple[int, float, int, float], FloodWatch] = {}

    def check_text(self, ctx: Context, text: str) -> Finding | None:
        """The first content rule (not flood) the text breaks in `ctx`'s room, or None."""
        message = Message(text)
        for rule in _content_rules(ctx.project, ctx.config_of("guard")):
            if rule.name in ("qrcode", "share"):
                continue
            finding = rule.detect(message)
            if finding is not None:
                return finding
        return None

    def room_busy(self, room_id: str, at: datetime) -> bool:
        return any(watch.room_busy(room_id, at) for watch in self.watches.values())


service = GuardService()

plugin = Plugin(
    name="guard",
    description="风控：广告、二维码、名片、手机号 / 微信号、违禁词、刷屏；先警告，多次违规再移出群",
    usage="自动运行；管理员「白名单 @某人」「撤销处罚 @某人」「风控记录」",
    config=GuardConfig,
    needs={"read_room_messages"},  # it judges what members post; removal is optional (admins are asked)
)
plugin.service = service

_words: dict[str, WatchedFile[GuardWords]] = {}
_rules: dict[tuple[object, ...], list[LinkRule | QrCodeRule | ShareRule | ContactRule | BannedWordRule]] = {}
_joins: dict[tuple[str, str], list[datetime]] = {}


def _words_file(project: Path, config: GuardConfig) -> WatchedFile[GuardWords]:
    path = project / config.words_file
    return _words.setdefault(str(path), WatchedFile(path, load_words, GuardWords()))


def _content_rules(project: Path, config: GuardConfig
                   ) -> list[LinkRule | QrCodeRule | ShareRule | ContactRule | BannedWordRule]:
    """The rules for these settings, built once per version of the word list (not once per message)."""
    watched = _words_file(project, config)
    words = watched.get()
    key = (str(watched.path), watched.version, tuple(config.rules), tuple(config.allowed_domains))
    rules = _rules.get(key)
    if rules is None:
        built = {
            "link": lambda: LinkRule([*config.allowed_domains, *words.allowed_domains]),
            "qrcode": QrCodeRule,
            "share": ShareRule,
            "contact": ContactRule,
            "banned_word": lambda: BannedWordRule(words.banned_words),
        }
        if len(_rules) > 64:  # old word-list versions
            _rules.clear()
        rules = _rules[key] = [built[name]() for name in config.rules if name in built]
    return rules


def _watch(ctx: Context) -> FloodWatch:
    """One flood window per distinct flood setting (rooms may override them)."""
    config = ctx.config
    limits = (config.flood_messages, config.flood_seconds, config.repeat_messages, config.repeat_seconds)
    watch = service.watches.get(limits)
    if watch is None:
        watch = service.watches[limits] = FloodWatch(messages=limits[0], seconds=limits[1], repeats=limits[2],
                                                     repeat_seconds=limits[3])
    return watch


@plugin.on_startup
async def forget_windows(ctx: Context) -> None:
    """A (re)started bot starts its flood windows afresh; strikes are in the database and stay."""
    service.watches.clear()
    _joins.clear()


@plugin.on_check
def check_words(project: Path, config: GuardConfig) -> list[str]:
    try:
        load_words(project / config.words_file)
    except Exception as err:  # a YamlError names file and line
        return [str(err)]
    return []


def _exempt(ctx: Context) -> bool:
    member = ctx.member_id or ""
    if member in ctx.config.whitelist or ctx.is_room_admin() or ctx.is_operator():
        return True
    return ctx.db.get(GuardWhitelist, (ctx.room_id, member)) is not None


def _message(ctx: Context) -> Message:
    event = ctx.event
    file = getattr(event, "content", None) or getattr(event, "file", None)
    path = None
    if file:  # only files inside the project (the simulator's and adapters' downloads): never elsewhere
        candidate = (ctx.project / file).resolve()
        if candidate.is_relative_to(ctx.project.resolve()):
            path = candidate
    return Message(getattr(event, "text", "") or "", getattr(event, "kind", "text"), path)


async def _violates(ctx: Context) -> bool:
    """Rule for the guard's matcher: does this member's message break a rule? (Counts every message.)"""
    if ctx.room_id is None or ctx.member_id is None or _exempt(ctx):
        return False
    message = _message(ctx)
    finding = None
    if "flood" in ctx.config.rules:
        finding = _watch(ctx).see(ctx.room_id, ctx.member_id, message.text, ctx.now)
    if finding is None:
        for rule in _content_rules(ctx.project, ctx.config):
            finding = rule.detect(message)
            if finding is not None:
                break
    if finding is None:
        return False
    ctx.state["finding"] = finding
    return True


watch = plugin.on_message(rule=_violates, priority=1, block=True)


@watch.handle
async def act(ctx: Context) -> None:
    finding = ctx.state.get("finding")
    if finding is None or ctx.room_id is None or ctx.member_id is None:
        return
    config = ctx.config
    joined = ctx.joined_at()
    newcomer = joined is not None and ctx.now - joined < parse_duration(config.newcomer_period)
    limit = config.newcomer_remove_after if newcomer else config.remove_after
    decision = decide(ctx.db, room_id=ctx.room_id, member_id=ctx.member_id, now=ctx.now,
                      window=parse_duration(config.strike_window), remove_after=limit,
                      can_remove=ctx.capabilities.remove_members)
    recorded = insert_unique(
        ctx.db, GuardRecord, room_id=ctx.room_id, member_id=ctx.member_id, event_id=ctx.event.id,
        rule=finding.rule, label=finding.label, evidence_hash=finding.evidence_hash, action=decision.action,
        strike=decision.strike, actor_id=None, revoked=False, created_at=ctx.now)
    if not recorded:
        return  # the same message delivered again: acted on already
    ctx.log.info("room %s: %s broke rule %s (strike %d/%s) -> %s", ctx.room_id, ctx.member_id, finding.rule,
                 decision.strike, decision.limit or "-", decision.action)
    if decision.action == "remove":
        await ctx.reply(template="guard/removed.j2", label=finding.label, strike=decision.strike,
                        newcomer=newcomer)
        await ctx.remove_member(ctx.member_id)
    elif decision.action == "notify_owner":
        await _tell_admins(ctx, "guard/ask_owner.j2", label=finding.label, strike=decision.strike,
                           offender=ctx.member_info(ctx.member_id, ctx.room_id).display)
    else:
        await ctx.reply(template="guard/warn.j2", label=finding.label, strike=decision.strike, limit=decision.limit,
                        newcomer=newcomer)


async def _tell_admins(ctx: Context, template: str, **variables: object) -> None:
    """Privately where the account can, else in the room with an @ of each admin."""
    me = await ctx.bot_member()
    admins = [a for a in ctx.room_admins() if me is None or a != me.id]
    if ctx.capabilities.direct_messages and admins:
        room = ctx.room.topic if ctx.room else ctx.room_id
        for admin in admins:
            await ctx.say(template=template, to=admin, room_topic=room, **variables)
    else:
        await ctx.say(template=template, mentions=admins, room_topic=None, **variables)


# --- mass joins ---------------------------------------------------------------------------------


joins = plugin.on_event(MembersJoined, block=False)


@joins.handle
async def mass_join(ctx: Context) -> None:
    event = ctx.event
    assert isinstance(event, MembersJoined)
    config = ctx.config
    if not config.mass_join_count or not event.inviter_id or ctx.is_room_admin(event.inviter_id):
        return
    window = parse_duration(config.mass_join_window)
    times = [t for t in _joins.get((event.room_id, event.inviter_id), []) if t > ctx.now - window]
    before = len(times)
    times.extend([ctx.now] * len(event.members))
    _joins[(event.room_id, event.inviter_id)] = times
    if before < config.mass_join_count <= len(times):
        inserted = insert_unique(
            ctx.db, GuardRecord, room_id=event.room_id, member_id=event.inviter_id, event_id=event.id,
            rule="mass_join", label="短时间大量拉人", evidence_hash="", action="flag", strike=0, actor_id=None,
            revoked=False, created_at=ctx.now)
        if inserted:
            await _tell_admins(ctx, "guard/mass_join.j2", count=len(times), window=config.mass_join_window,
                               inviter=ctx.member_info(event.inviter_id, event.room_id).display)


# --- admin commands -------------------------------------------------------------------------------


async def _target(ctx: Context) -> str | None:
    return next(iter(await ctx.mentioned()), None)


whitelist = plugin.on_command("白名单", words_from="whitelist_words", permission=ROOM_ADMIN | OPERATOR,
                              priority=5)


@whitelist.handle
async def add_whitelist(ctx: Context) -> None:
    target = await _target(ctx)
    if target is None or ctx.room_id is None:
        await ctx.reply(template="guard/usage.j2", command=ctx.config.whitelist_words[0])
        return
    insert_unique(ctx.db, GuardWhitelist, room_id=ctx.room_id, member_id=target, added_by=ctx.member_id or "",
                  created_at=ctx.now)
    await ctx.reply(template="guard/whitelisted.j2", name=ctx.member_info(target, ctx.room_id).display)


revoke = plugin.on_command("撤销处罚", words_from="revoke_words", permission=ROOM_ADMIN | OPERATOR, priority=5)


@revoke.handle
async def revoke_strikes(ctx: Context) -> None:
    """Take back the member's strikes in this room (all that still count), recorded with the admin's id."""
    target = await _target(ctx)
    if target is None or ctx.room_id is None:
        await ctx.reply(template="guard/usage.j2", command=ctx.config.revoke_words[0])
        return
    rows = ctx.db.exec(select(GuardRecord).where(
        GuardRecord.room_id == ctx.room_id, GuardRecord.member_id == target,
        col(GuardRecord.revoked).is_(False), col(GuardRecord.action).in_(("warn", "remove", "notify_owner")))).all()
    for row in rows:
        row.revoked = True
        ctx.db.add(row)
    if rows:
        insert_unique(ctx.db, GuardRecord, room_id=ctx.room_id, member_id=target, event_id=ctx.event.id,
                      rule="revoke", label="撤销处罚", evidence_hash="", action="revoke", strike=0,
                      actor_id=ctx.member_id, revoked=False, created_at=ctx.now)
    for flood in service.watches.values():
        flood.forget(ctx.room_id, target)
    await ctx.reply(template="guard/revoked.j2", name=ctx.member_info(target, ctx.room_id).display,
                    count=len(rows), removed=any(r.action == "remove" for r in rows))


records = plugin.on_fullmatch("风控记录", words_from="records_words", permission=ROOM_ADMIN | OPERATOR, priority=5)


@records.handle
async def show_records(ctx: Context) -> None:
    rows = ctx.db.exec(select(GuardRecord).where(GuardRecord.room_id == ctx.room_id)
                       .order_by(col(GuardRecord.created_at).desc(), col(GuardRecord.id).desc())
                       .limit(ctx.config.records_shown)).all()
    items = [{"time": row.created_at.astimezone(ctx.now.tzinfo).strftime("%m-%d %H:%M"),
              "name": ctx.member_info(row.member_id, ctx.room_id).display, "label": row.label,
              "action": row.action, "strike": row.strike, "revoked": row.revoked,
              "actor": ctx.member_info(row.actor_id, ctx.room_id).display if row.actor_id else None}
             for row in rows]
    await ctx.reply(template="guard/records.j2", items=items)
