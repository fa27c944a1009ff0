"""Dispatch: find the matchers an event wakes, then run them by priority, each isolated.

Words are indexed — full matches in a dict, keywords in one compiled
alternation, commands by first character — so ordinary chatter costs a few
lookups, not one check per handler. Matchers run in (priority, load order);
after a priority level in which a blocking matcher ran, lower levels are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy.exc import DBAPIError

from bot._db import database_unreachable
from bot._events import DirectMessage, Event, RoomMessage, message_parts
from bot._group import WouldWait, current_group, drive
from bot._plugin import Matcher

if TYPE_CHECKING:
    from sqlalchemy.orm import SessionTransaction
    from sqlmodel import Session

    from bot._clock import Clock
    from bot._config import ProjectConfig
    from bot._limits import MemberRateLimit
    from bot._plugin import Plugin
    from bot._redelivery import Redelivery
    from bot._templates import Renderer

log = logging.getLogger("qunbot.dispatch")

_SPACES = " \t\r\n\u2005\u3000\u00a0"
_DB_ATTEMPTS = 3
_COMMAND_KINDS = frozenset({"fullmatch", "keyword", "command", "regex", "mention"})
"""Triggers a member sets off on purpose; these count against the per-member command limit."""


Outcome = Literal["ok", "failed", "unreachable"]


class DatabaseUnreachable(Exception):
    """The database did not answer while an event ran; the runtime holds the event and runs it again later."""


class HandlerContext(Protocol):
    """A handler's `Context` as the dispatcher sees it: who and where, and the hooks that open, commit and
    discard one handler run. Plugins get the whole `Context`; this module never needs to import it."""

    event: Event
    room_id: str | None
    member_id: str | None
    text: str
    _session: Session | None
    _savepoint: SessionTransaction | None
    _sends: int
    _armed: list[int]
    _waited: bool

    @property
    def db(self) -> Session: ...
    def is_operator(self, member_id: str | None = None) -> bool: ...
    async def reply(self, text: str | None = None, *, template: str | None = None) -> bool: ...
    def _begin(self) -> None: ...
    def _finish(self, ok: bool) -> bool: ...
    def _release(self) -> None: ...


class DispatchHost(Protocol):
    """What running an event asks of the runtime, and nothing more; `Runtime` is one.

    The dispatcher's narrow interface: with it this module imports neither `bot._runtime` nor
    `bot._context` (the runtime imports both), and a test could run events against a small fake.
    """

    dispatcher: Dispatcher
    """The matcher index."""
    command_limit: MemberRateLimit
    redelivery: Redelivery
    clock: Clock
    config: ProjectConfig
    """Read for `bot.handler_timeout` and `bot.permission_denied_reply` only."""
    renderer: Renderer
    """Asked only whether the permission-denied template exists."""

    def plugin_enabled(self, plugin_name: str, room_id: str) -> bool: ...
    def after_commit(self, ctx: HandlerContext) -> None: ...
    def new_context(self, plugin: Plugin, event: Event, *, room_id: str | None = None, member_id: str | None = None,
                    text: str = "", args: str = "", match: re.Match[str] | None = None) -> HandlerContext: ...


@dataclass(slots=True)
class Progress:
    """How far an event got, so running it again after an outage repeats nothing that already committed."""

    recorded: bool = False
    listeners: int = 0
    """How many of the runtime's listeners have seen it."""
    done: set[tuple[int, int]] = field(default_factory=set)
    """(matcher, handler index) of handlers whose work committed (or failed for their own reasons)."""
    allowed: bool | None = None
    """The command-limit decision, taken once per event."""
    sends: dict[int, int] = field(default_factory=dict)
    """Messages queued so far by each matcher's handlers: the next message's key goes on from there."""
    handled: frozenset[str] | None = None
    """Handlers that committed for this message in an earlier delivery (read when a handler first runs)."""

    def restart(self) -> Progress:
        """The same event with none of its handlers' work kept (a group commit that did not happen)."""
        return Progress(recorded=self.recorded, listeners=self.listeners, allowed=self.allowed)


@dataclass(slots=True)
class _Candidate:
    matcher: Matcher
    args: str = ""
    match: re.Match[str] | None = None


class Dispatcher:
    """An index over the enabled plugins' matchers."""

    def __init__(self, matchers: Iterable[Matcher], words_for: Callable[[Matcher], tuple[str, ...]]) -> None:
        self._rank: dict[int, tuple[int, int]] = {}
        self._fullmatch: dict[str, list[Matcher]] = defaultdict(list)
        self._keywords: dict[str, list[Matcher]] = defaultdict(list)
        self._commands: dict[str, list[tuple[str, Matcher]]] = defaultdict(list)
        self._regex: list[Matcher] = []
        self._always: list[Matcher] = []
        self._mention: list[Matcher] = []
        self._events: dict[type, list[Matcher]] = defaultdict(list)
        for index, matcher in enumerate(matchers):
            self._rank[id(matcher)] = (matcher.priority, index)
            kind = matcher.trigger.kind
            if kind == "fullmatch":
                for word in words_for(matcher):
                    self._fullmatch[word].append(matcher)
            elif kind == "keyword":
                for word in words_for(matcher):
                    self._keywords[word].append(matcher)
            elif kind == "command":
                for word in words_for(matcher):
                    self._commands[word[0]].append((word, matcher))
            elif kind == "regex":
                self._regex.append(matcher)
            elif kind == "message":
                self._always.append(matcher)
            elif kind == "mention":
                self._mention.append(matcher)
            else:
                for event_type in matcher.trigger.event_types:
                    self._events[event_type].append(matcher)
        self._memo: tuple[Event, str, list[_Candidate]] | None = None
        self._at_once: set[Callable[..., Any]] = set()
        """Handlers seen to finish without waiting: they may run inside a group commit."""
        for entries in self._commands.values():
            entries.sort(key=lambda entry: -len(entry[0]))  # longest command word wins
        self._keyword_re = (
            re.compile("|".join(map(re.escape, sorted(self._keywords, key=len, reverse=True))))
            if self._keywords else None
        )

    def candidates(self, event: Event, text: str) -> list[_Candidate]:
        """Matchers whose trigger fits, ordered by (priority, load order); rules not yet checked."""
        memo = self._memo  # the runtime asks twice per event: to route it, then to run it
        if memo is not None and memo[0] is event and memo[1] == text:
            return memo[2]
        found: dict[int, _Candidate] = {}
        if isinstance(event, RoomMessage | DirectMessage):
            for matcher in self._fullmatch.get(text, ()):
                found.setdefault(id(matcher), _Candidate(matcher))
            if self._keyword_re is not None:
                for word in set(self._keyword_re.findall(text)):
                    for matcher in self._keywords[word]:
                        found.setdefault(id(matcher), _Candidate(matcher))
            if text:
                for word, matcher in self._commands.get(text[0], ()):
                    if text.startswith(word) and id(matcher) not in found:
                        found[id(matcher)] = _Candidate(matcher, args=text[len(word):].strip(_SPACES))
            for matcher in self._regex:
                match = matcher.trigger.pattern.search(text)  # type: ignore[union-attr]
                if match:
                    found.setdefault(id(matcher), _Candidate(matcher, match=match))
            for matcher in self._always:
                found.setdefault(id(matcher), _Candidate(matcher))
            if isinstance(event, DirectMessage) or event.mentions_bot:
                for matcher in self._mention:
                    found.setdefault(id(matcher), _Candidate(matcher))
        else:
            for event_type in type(event).__mro__:
                for matcher in self._events.get(event_type, ()):
                    found.setdefault(id(matcher), _Candidate(matcher))
        ordered = sorted(found.values(), key=lambda c: self._rank[id(c.matcher)])
        self._memo = (event, text, ordered)
        return ordered


    def finishes_at_once(self, handler: Callable[..., Any]) -> bool:
        return handler in self._at_once

    def observed(self, handler: Callable[..., Any], waited: bool) -> None:
        """Note whether a handler run had to wait (on I/O, a lock, a sleep)."""
        if waited:
            self._at_once.discard(handler)
        else:
            self._at_once.add(handler)


def strip_bot_mention(text: str, bot_name: str) -> str:
    """Remove `@BotName` (with WeChat's U+2005 or a space after it) and surrounding spaces."""
    if bot_name and "@" in text:
        text = re.sub("@" + re.escape(bot_name) + f"[{_SPACES}]?", " ", text)
    return text.strip(_SPACES)


async def run_event(runtime: DispatchHost, event: Event, text: str, progress: Progress | None = None) -> None:
    """Run every matcher the event wakes, honouring priority and `block`.

    Raises `DatabaseUnreachable` if the database does not answer; `progress` then tells a second run which
    handlers already committed, so they are not run twice.
    """
    room_id, member_id = message_parts(event)
    progress = progress if progress is not None else Progress()
    blocked_at: int | None = None
    for candidate in runtime.dispatcher.candidates(event, text):
        matcher = candidate.matcher
        if blocked_at is not None and matcher.priority > blocked_at:
            break
        plugin = matcher.plugin
        if room_id is not None and not runtime.plugin_enabled(plugin.name, room_id):
            continue
        ctx = runtime.new_context(plugin, event, room_id=room_id, member_id=member_id, text=text,
                                  args=candidate.args, match=candidate.match)
        try:
            verdict = await _admit(runtime, ctx, matcher, progress)
        except BaseException:
            ctx._release()
            raise
        if verdict != "run":
            ctx._release()  # a session only a rule or permission check opened: no handler will commit it
            if verdict == "block":
                blocked_at = matcher.priority
            continue
        for index, handler in enumerate(matcher.handlers):
            if (id(matcher), index) in progress.done:
                continue
            label = f"{plugin.name}.{handler.__name__}"
            if label in _handled_before(runtime, ctx, progress):
                log.info("message %s was handled by %s already (redelivered); skipped", event.id, label)
                progress.done.add((id(matcher), index))
                continue
            ctx._sends = progress.sends.get(id(matcher), ctx._sends)  # message keys as in the first run
            grouped = current_group() is not None
            if grouped and not runtime.dispatcher.finishes_at_once(handler):
                raise WouldWait  # run it on its own (and see whether it waits) before it joins a group
            try:
                outcome = await run_handler(runtime, ctx, handler, label)
            except WouldWait:
                runtime.dispatcher.observed(handler, waited=True)
                raise
            if not grouped and outcome != "unreachable":
                runtime.dispatcher.observed(handler, ctx._waited)
            if outcome == "unreachable":
                raise DatabaseUnreachable(label)
            progress.done.add((id(matcher), index))
            progress.sends[id(matcher)] = ctx._sends
        ctx._release()  # the session the redelivery check opened, if no handler ran to close it
        if matcher.block:
            blocked_at = matcher.priority


async def _admit(runtime: DispatchHost, ctx: HandlerContext, matcher: Matcher, progress: Progress,
                 ) -> Literal["run", "skip", "block"]:
    """Rule, command limit and permission for one matcher: run it, skip it, or skip it and block lower ones."""
    try:
        if not await matcher.rule(ctx):
            return "skip"
        if matcher.trigger.kind in _COMMAND_KINDS and ctx.member_id is not None:
            if progress.allowed is None:  # decided at the first command that would run
                progress.allowed = ctx.is_operator() or runtime.command_limit.allow(ctx.room_id, ctx.member_id)
            if not progress.allowed:
                return "skip"
        if not await matcher.permission(ctx):
            if (id(matcher), -1) not in progress.done:
                await _deny(runtime, ctx, matcher)
                progress.done.add((id(matcher), -1))
            return "block" if matcher.block else "skip"
    except DatabaseUnreachable:
        raise
    except Exception as err:
        if database_unreachable(err):
            raise DatabaseUnreachable(str(err).splitlines()[0]) from err
        log.exception("plugin %s: rule or permission check failed for %r", matcher.plugin.name, matcher)
        return "skip"
    return "run"


def _handled_before(runtime: DispatchHost, ctx: HandlerContext, progress: Progress) -> frozenset[str]:
    if progress.handled is None:
        try:
            progress.handled = runtime.redelivery.handled(ctx.event, ctx.db)
        except Exception as err:
            if database_unreachable(err):
                raise DatabaseUnreachable(str(err).splitlines()[0]) from err
            raise
    return progress.handled


async def run_isolated(runtime: DispatchHost, ctx: HandlerContext, call: Callable[..., Awaitable[Any]] | Any,
                       label: str, *args: Any) -> bool:
    """Run one handler with a timeout; log and roll back on failure. True if it succeeded.

    If the database connection dropped under it (the server restarted), its work was rolled back,
    so it runs once more on a fresh connection: same event, same message keys, nothing doubled.
    """
    outcome = await run_handler(runtime, ctx, call, label, *args)
    if outcome == "unreachable":
        log.warning("plugin handler %s: the database is unreachable; its changes rolled back", label)
    return outcome == "ok"


async def run_handler(runtime: DispatchHost, ctx: HandlerContext, call: Callable[..., Awaitable[Any]] | Any,
                      label: str, *args: Any) -> Outcome:
    """`run_isolated`, telling a handler that failed because the database is unreachable from one that failed."""
    sends_before = ctx._sends
    grouped = current_group() is not None
    for attempt in range(1, _DB_ATTEMPTS + 1):
        ok = False
        ctx._begin()
        try:
            # asyncio.timeout runs the handler in this task (wait_for would wrap it in another), so nothing
            # else on the loop runs between the handler's last write and its commit below: with SQLite,
            # another session writing in that gap would wait on this one's lock and block the loop.
            # In a group commit the handler may not wait at all (`drive` stops it at its first wait).
            async with asyncio.timeout(runtime.config.bot.handler_timeout):
                _, ctx._waited = await drive(call(ctx, *args), may_wait=not grouped)
            ok = True
        except WouldWait:
            _discard(ctx, sends_before)
            raise
        except TimeoutError:
            log.error("plugin handler %s timed out after %.1fs on event %s; cancelled, its changes rolled back",
                      label, runtime.config.bot.handler_timeout, ctx.event.id)
        except Exception as err:
            if grouped and database_unreachable(err):
                _discard(ctx, sends_before)
                return "unreachable"  # the group's transaction is gone: the runtime runs its events again
            if _disconnected(err) and attempt < _DB_ATTEMPTS:
                log.warning("plugin handler %s: the database connection dropped (%s); running it again", label,
                            str(err).splitlines()[0])
                _discard(ctx, sends_before)
                continue
            if database_unreachable(err):
                log.debug("plugin handler %s: the database is unreachable (%s)", label, str(err).splitlines()[0])
                _discard(ctx, sends_before)
                return "unreachable"
            log.exception("plugin handler %s failed on event %s; its changes rolled back", label, ctx.event.id)
        try:
            if ok and ctx._session is not None and not runtime.redelivery.claim(ctx._session, ctx.event, label,
                                                                               runtime.clock.now()):
                log.info("message %s was handled by %s already (redelivered, or another process); this run "
                         "rolled back", ctx.event.id, label)
                ctx._finish(False)
                return "ok"
            wrote = ctx._finish(ok)
        except Exception as err:
            if ok and grouped and database_unreachable(err):
                _discard(ctx, sends_before)
                return "unreachable"
            if ok and _disconnected(err) and attempt < _DB_ATTEMPTS:
                log.warning("plugin handler %s: the database connection dropped at commit (%s); running it again",
                            label, str(err).splitlines()[0])
                _discard(ctx, sends_before)
                continue
            if ok and database_unreachable(err):
                _discard(ctx, sends_before)
                return "unreachable"
            log.exception("plugin handler %s: could not commit its changes", label)
            return "failed"
        if wrote:
            runtime.after_commit(ctx)
        return "ok" if ok else "failed"
    return "unreachable"


def _disconnected(err: BaseException) -> bool:
    return isinstance(err, DBAPIError) and bool(err.connection_invalidated)


def _discard(ctx: HandlerContext, sends: int) -> None:
    """Forget a handler run's session and queued work before running it again."""
    if ctx._savepoint is not None:  # in a group commit: only this run's savepoint
        savepoint, ctx._savepoint, ctx._session = ctx._savepoint, None, None
        group = current_group()
        if group is not None:
            with suppress(Exception):
                group.end(savepoint, ok=False)
    elif ctx._session is not None:
        with suppress(Exception):
            ctx._session.rollback()
        with suppress(Exception):
            ctx._session.close()
    ctx._session = None
    ctx._sends = sends
    ctx._armed.clear()


async def _deny(runtime: DispatchHost, ctx: HandlerContext, matcher: Matcher) -> None:
    log.info("member %s may not use %r in %s", ctx.member_id, matcher, ctx.room_id or "a direct message")
    if runtime.config.bot.permission_denied_reply and runtime.renderer.exists("core/permission_denied.j2"):
        deny = runtime.new_context(matcher.plugin, ctx.event, room_id=ctx.room_id, member_id=ctx.member_id,
                                   text=ctx.text)
        await run_isolated(runtime, deny, _reply_denied, f"{matcher.plugin.name}.permission_denied")


async def _reply_denied(ctx: HandlerContext) -> None:
    await ctx.reply(template="core/permission_denied.j2")
