"""faq (自动答疑): answer the questions members ask every day from `data/faq.yaml`, and — optionally, off by
default — what no entry matches with an AI answer drawn only from the admins' files in `data/knowledge/`.

Matching is fuzzy and explainable (`matching.py`; `qunbot faq test "问题"` shows the score). Each entry
answers at most once per `cooldown` in a room, and the plugin keeps quiet while a room is flooding. An AI
answer runs off the event path (`ctx.in_background`), within a per-room daily budget and rate limit; it is
refused when nothing relevant is found, when it names a price or stock the files do not contain, and when
it breaks one of the guard's rules.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import update
from sqlmodel import col

from bot import Context, Plugin, WatchedFile, dialect_insert, parse_duration

from .ai import AiError, ask, grounded, stub_answer
from .bank import FaqBank, load_bank
from .knowledge import Knowledge
from .matching import FaqMatcher, Match, normalize, words
from .models import FaqAiUsage


class AiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    base_url: str = ""
    """An OpenAI-compatible endpoint (…/v1); "stub" answers from the files without any AI (simulate, chat)."""
    model: str = ""
    api_key_env: str = ""
    """The environment variable holding the API key (never the key itself in qunbot.toml)."""
    timeout: float = Field(8.0, gt=0, le=60)
    daily_budget: int = Field(50, ge=0, le=100_000)
    """AI answers per room per day; after that the bot stays with the FAQ file."""
    min_interval: str = "30s"
    """At most one AI answer per room within this time."""
    only_when_mentioned: bool = True
    """Ask the AI only for questions that @ the bot (FAQ entries answer without an @)."""
    min_score: float = Field(1.0, ge=0)
    """BM25 score the best excerpt needs to count as relevant (see docs/faq.md)."""

    @field_validator("min_interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class FaqConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str = "data/faq.yaml"
    knowledge_dir: str = "data/knowledge"
    threshold: float = Field(70, ge=0, le=100)
    """Score (0–100) an entry needs to answer; measured precision and recall per threshold: docs/faq.md."""
    cooldown: str = "10m"
    """One entry answers at most once per this time in a room."""
    quiet_messages: int = Field(10, ge=1, le=1000)
    quiet_seconds: float = Field(10, gt=0, le=3600)
    """A room with this many messages within this many seconds is flooding: no answers then."""
    mention: Literal["always", "never"] = "always"
    """@ the member who asked."""
    ai: AiSettings = AiSettings()

    @field_validator("cooldown")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class AiReply(BaseModel):
    """What the background AI call hands to the `ai_reply` action."""

    member_id: str
    answer: str
    sources: list[str]
    direct: bool = False


plugin = Plugin(
    name="faq",
    description="自动答疑：按 data/faq.yaml 回答常见问题；可选 AI 只依据 data/knowledge/ 里的资料回答",
    usage="群友直接提问即可；管理员编辑 data/faq.yaml，用 `qunbot faq test \"问题\"` 试匹配",
    config=FaqConfig,
    needs={"read_room_messages"},
)

class FaqService:
    """For `qunbot faq test`: what would answer a question, and why."""

    def explain(self, project: Path, config: FaqConfig, question: str, *, topic: str = "") -> list[str]:
        matcher, watched = matcher_for(project, config)
        if watched.error is not None:
            return [f"问答文件有错：{watched.error}"]
        entries = _entries_for_topic(watched.get(), topic)
        ranked = matcher.rank(question, entries=entries)
        best = ranked[0] if ranked else None
        if best is not None and best.score >= config.threshold:
            head = f"会回答：{best.entry.id}（得分 {best.score:g}，门槛 {config.threshold:g}，命中{best.how}）"
            lines = [head, f"回复：{best.entry.answer}"]
        else:
            lines = [f"不会回答：没有问答得分达到门槛 {config.threshold:g}"]
        lines += [f"  {m.entry.id}：{m.score:g}（{m.how}）" for m in ranked[:5]]
        if best is None or best.score < config.threshold:
            hits = knowledge_for(project, config).search(question, min_score=config.ai.min_score)
            state = "已开启" if config.ai.enabled else "未开启"
            lines.append(f"AI 答疑{state}；资料检索：" + ("、".join(
                f"{h.chunk.source}（{h.score:.2f}，共同词 {'/'.join(h.shared)}）" for h in hits) or "没有相关资料"))
        return lines


plugin.service = FaqService()
_banks: dict[str, WatchedFile[FaqBank]] = {}
_matchers: dict[str, tuple[int, FaqMatcher]] = {}
_knowledge: dict[str, Knowledge] = {}
_answered: dict[tuple[str, str], datetime] = {}
"""(room, entry id) -> last answered: the cooldown."""
_room_times: dict[str, deque[datetime]] = {}
_ai_last: dict[str, datetime] = {}
_QUESTION = re.compile(r"[?？]|吗|呢|么|怎么|怎样|如何|多少|几|哪|什么|啥|能不能|可不可以|是不是|有没有|会不会|咋")


def matcher_for(project: Path, config: FaqConfig) -> tuple[FaqMatcher, WatchedFile[FaqBank]]:
    """The matcher over the current bank (rebuilt when the file changes; a broken edit keeps the last)."""
    path = project / config.file
    watched = _banks.setdefault(str(path), WatchedFile(path, load_bank, FaqBank()))
    bank = watched.get()
    built = _matchers.get(str(path))
    if built is None or built[0] != watched.version:
        built = _matchers[str(path)] = (watched.version, FaqMatcher(bank.entries))
    return built[1], watched


def knowledge_for(project: Path, config: FaqConfig) -> Knowledge:
    folder = project / config.knowledge_dir
    found = _knowledge.get(str(folder))
    if found is None:
        found = _knowledge[str(folder)] = Knowledge(folder)
    return found


@plugin.on_check
def check_bank(project: Path, config: FaqConfig) -> list[str]:
    problems = []
    try:
        load_bank(project / config.file)
    except Exception as err:  # a YamlError names file and line
        problems.append(str(err))
    ai = config.ai
    if ai.enabled and ai.base_url != "stub":
        if not ai.base_url.startswith(("http://", "https://")) or not ai.model:
            problems.append("plugins.faq.ai：开启 AI 答疑需要 base_url（http(s)://…）和 model")
        if ai.api_key_env and not os.environ.get(ai.api_key_env):
            problems.append(f"plugins.faq.ai：环境变量 {ai.api_key_env} 没有设置（AI 接口的密钥）")
    return problems


@plugin.on_startup
async def forget_windows(ctx: Context) -> None:
    _answered.clear()
    _room_times.clear()
    _ai_last.clear()
    _knowledge.clear()


def _busy(ctx: Context) -> bool:
    """Is the room flooding? Counts every message; the guard's view counts too when it is enabled."""
    if ctx.room_id is None:
        return False
    times = _room_times.setdefault(ctx.room_id, deque(maxlen=ctx.config.quiet_messages))
    times.append(ctx.now)
    window = timedelta(seconds=ctx.config.quiet_seconds)
    if len(times) == times.maxlen and ctx.now - times[0] <= window:
        return True
    guard = _guard(ctx)
    return guard is not None and guard.room_busy(ctx.room_id, ctx.now)


def _guard(ctx: Context) -> Any:
    """The guard plugin's service where it runs in this room (None: no guard here)."""
    try:
        return ctx.service("guard")
    except LookupError:
        return None


def _entries_for_topic(bank: FaqBank, topic: str, room_id: str | None = None) -> set[str] | None:
    """Entries that answer in a room with this topic (None: all of them)."""
    if all(not e.rooms for e in bank.entries):
        return None
    return {e.id for e in bank.entries if not e.rooms or any(
        fnmatch.fnmatchcase(topic, pattern) or pattern == room_id for pattern in e.rooms)}


def _entries_here(ctx: Context, bank: FaqBank) -> set[str] | None:
    if ctx.room_id is None:  # a direct message: entries for every room
        return None
    return _entries_for_topic(bank, ctx.room.topic if ctx.room else "", ctx.room_id)


async def _will_answer(ctx: Context) -> bool:
    """Rule of the FAQ matcher: an entry answers, or the AI is to be asked. Blocks lower handlers then."""
    text = ctx.text.strip()
    if not text or _busy(ctx):
        return False
    config: FaqConfig = ctx.config
    matcher, watched = matcher_for(ctx.project, config)
    if watched.error is not None:
        ctx.log.error("%s（仍使用上一版问答）", watched.error)
    found = matcher.best(text, config.threshold, entries=_entries_here(ctx, watched.get()))
    if found is not None:
        where = ctx.room_id or f"dm:{ctx.member_id}"
        last = _answered.get((where, found.entry.id))
        if last is not None and ctx.now - last < parse_duration(found.entry.cooldown or config.cooldown):
            return False
        plan: tuple[str, object] = ("entry", found)
    elif config.ai.enabled and _QUESTION.search(text) and words(normalize(text)) and (
            ctx.is_direct or not config.ai.only_when_mentioned or getattr(ctx.event, "mentions_bot", False)):
        plan = ("ai", text)
    else:
        return False
    ctx.state["plan"] = plan
    return True


asked = plugin.on_message(rule=_will_answer, priority=80, block=True)


@asked.handle
async def answer(ctx: Context) -> None:
    kind, what = ctx.state.get("plan", ("", None))
    if kind == "entry":
        assert isinstance(what, Match)
        _answered[(ctx.room_id or f"dm:{ctx.member_id}", what.entry.id)] = ctx.now
        rendered = ctx.render_string(what.entry.answer, name=f"{ctx.config.file}#{what.entry.id}")
        await ctx.say(rendered.text, mentions=_mention(ctx))
    elif kind == "ai":
        await _ask_ai(ctx, str(what))


def _mention(ctx: Context) -> list[str]:
    return [ctx.member_id] if ctx.config.mention == "always" and ctx.room_id and ctx.member_id else []


async def _ask_ai(ctx: Context, question: str) -> None:
    ai: AiSettings = ctx.config.ai
    hits = knowledge_for(ctx.project, ctx.config).search(question, min_score=ai.min_score)
    if not hits:
        await ctx.say(template="faq/unknown.j2", mentions=_mention(ctx))
        return
    where = ctx.room_id or f"dm:{ctx.member_id}"
    last = _ai_last.get(where)
    if last is not None and ctx.now - last < parse_duration(ai.min_interval):
        ctx.log.info("AI answer skipped in %s: rate limit (%s)", where, ai.min_interval)
        return
    if not _spend_budget(ctx, where, ai.daily_budget):
        ctx.log.info("AI answer skipped in %s: today's budget of %d is used up", where, ai.daily_budget)
        return
    _ai_last[where] = ctx.now
    member, direct = ctx.member_id or "", ctx.is_direct
    sources = list(dict.fromkeys(h.chunk.source for h in hits))
    if ai.base_url == "stub":
        ctx.in_background(_settled(AiReply(member_id=member, answer=stub_answer(question, hits), sources=sources,
                                           direct=direct)), then="ai_reply")
        return
    api_key = os.environ.get(ai.api_key_env) if ai.api_key_env else None

    async def work() -> dict[str, object] | None:
        try:
            async with httpx.AsyncClient() as client:
                text = await ask(client, base_url=ai.base_url, model=ai.model, api_key=api_key, question=question,
                                 hits=hits, timeout=ai.timeout)
        except AiError as err:
            ctx.log.warning("AI answer for %s failed: %s", where, err)
            return AiReply(member_id=member, answer="", sources=[], direct=direct).model_dump()
        if not grounded(text, hits):
            ctx.log.info("AI answer for %s refused: not grounded in the files (%r)", where, text[:80])
            text = ""
        return AiReply(member_id=member, answer=text, sources=sources, direct=direct).model_dump()

    ctx.in_background(work(), then="ai_reply")


async def _settled(reply: AiReply) -> dict[str, object]:
    return reply.model_dump()


def _spend_budget(ctx: Context, where: str, budget: int) -> bool:
    """Take one AI answer from today's budget in the handler's transaction; False when it is used up."""
    if budget <= 0:
        return False
    insert = dialect_insert(ctx.db.get_bind().dialect.name)
    ctx.db.execute(insert(FaqAiUsage.__table__).values(room_id=where, day=ctx.today, used=0)
                   .on_conflict_do_nothing())
    taken = ctx.db.execute(update(FaqAiUsage).where(
        col(FaqAiUsage.room_id) == where, col(FaqAiUsage.day) == ctx.today, col(FaqAiUsage.used) < budget)
        .values(used=FaqAiUsage.used + 1))
    return taken.rowcount == 1


@plugin.action("ai_reply", params=AiReply)
async def ai_reply(ctx: Context, params: AiReply) -> None:
    """The AI's answer is back: check it against the guard's rules, then send it with its sources."""
    if not params.answer:
        await _send(ctx, params, template="faq/unknown.j2")
        return
    finding = _guard(ctx).check_text(ctx, params.answer) if _guard(ctx) is not None else None
    if finding is not None:
        ctx.log.warning("AI answer withheld: it breaks the guard rule %s", finding.rule)
        await _send(ctx, params, template="faq/unknown.j2")
        return
    await _send(ctx, params, template="faq/ai_answer.j2", answer=params.answer, sources=params.sources)


async def _send(ctx: Context, params: AiReply, *, template: str, **variables: object) -> None:
    if params.direct or ctx.room_id is None:
        await ctx.say(template=template, to=params.member_id, **variables)
    else:
        await ctx.say(template=template, mentions=[params.member_id] if ctx.config.mention == "always" else [],
                      **variables)
