"""The runtime: one process, one database, the enabled plugins, and one or more accounts.

Data flows one way: adapter → `dispatch` → matchers → handlers → outbox → adapter.
Timers (plugin timers, SOP posts) enter through the clock and leave the same way.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from bot._clock import Clock
from bot._config import ProjectConfig
from bot._context import Context, render_merged
from bot._coverage import FIX_HINT, KnownRoom, lack_sentence, plugin_findings, plugin_label
from bot._db import database_unreachable, make_engine, session_scope
from bot._dispatch import DatabaseUnreachable, Dispatcher, Progress, run_event, run_isolated, strip_bot_mention
from bot._events import ActionInvoked, DirectMessage, Event, RoomMessage, TimerFired
from bot._group import EventGroups, current_group
from bot._limits import MemberRateLimit
from bot._loader import load_plugins, plugin_configs
from bot._members import SPEAKERS_FLUSH_AFTER, Members
from bot._migrations import upgrade
from bot._models import OutboxMessage, Room, ScheduledTask
from bot._outbox import MIGRATIONS as OUTBOX_MIGRATIONS
from bot._outbox import Outbox
from bot._plugin import Matcher, Plugin
from bot._redelivery import PRUNE_EVERY, RECORD, Redelivery
from bot._sandbox import render_budget
from bot._sanitize import clean_event, clean_snapshots, room_roles
from bot._tasks import Tasks
from bot._templates import Renderer
from bot.adapters._base import Adapter
from bot.adapters._profiles import account_capabilities

log = logging.getLogger("qunbot.runtime")

DEFAULT_TEMPLATES = Path(__file__).parent / "_default_templates"
HOLD_LIMIT = 10_000
"""Inbound events kept in memory while the database is unreachable; beyond this, new ones are dropped (logged)."""
HOLD_RETRY_MIN, HOLD_RETRY_MAX = 1.0, 30.0
"""Seconds before the first retry of held events, doubling up to the maximum."""
GROUP_SIZE = 200
"""At most this many events that arrived together share one transaction (`bot/_group.py`)."""
ROLE_REFRESH = timedelta(minutes=10)
"""How often rooms' admins are read again from WeChat (joins and leaves update them at once)."""


class Runtime:
    """Everything one bot process runs. Build it, `await start()`, feed events, `await stop()`."""

    def __init__(self, project: Path, config: ProjectConfig, *, clock: Clock, adapters: Mapping[str, Adapter],
                 db_url: str | None = None, plugins: Sequence[Plugin] | None = None,
                 seed: int | None = None) -> None:
        self.project = project
        self.config = config
        self.clock = clock
        self.seed = seed
        """The scenario seed of a simulation; None under `qunbot run` (see `bot._entropy`)."""
        self.adapters = dict(adapters)
        self.engine = make_engine(db_url or config.database.url, base_dir=project)
        self.plugins: dict[str, Plugin] = {p.name: p for p in (plugins if plugins is not None
                                                                else load_plugins(project, config))}
        self.renderer = Renderer(
            [project / config.templates_dir, DEFAULT_TEMPLATES], timezone=config.bot.tz,
            globals={"bot_name": config.bot.name}, budget=render_budget(config.limits),
        )
        self.redelivery = Redelivery(self.engine)
        self.members = Members(self.engine, config, clock.now,
                               defer=lambda callback: clock.call_at(clock.now() + SPEAKERS_FLUSH_AFTER, callback,
                                                                    name="members.flush"),
                               claim=lambda session, event: self.redelivery.claim(session, event, RECORD,
                                                                                  clock.now()))
        self.tasks = Tasks(self.engine, clock, self._fire_task)
        self._configs = plugin_configs(project, config, self.plugins.values())
        self.dispatcher = Dispatcher(
            [m for p in self.plugins.values() for m in p.matchers], self._words_for)
        rng = random.Random(seed)
        self._outboxes = {
            account: Outbox(account, self.engine, clock, config.pacing_for(account), adapter.send,
                            rng=random.Random(rng.random()), capabilities=partial(getattr, adapter, "capabilities"))
            for account, adapter in self.adapters.items()
        }
        for account, outbox in self._outboxes.items():
            outbox.on_disconnect = partial(self._connection_lost, account)
            outbox.render_merged = self._render_merged
            self.adapters[account].bind(self.engine, outbox.settle)
        self._reconnecting: set[str] = set()
        self.active: set[str] = set()
        """Accounts this process runs now (all of them, unless leases hand some to other processes)."""
        self.command_limit = MemberRateLimit(config.bot.command_limit, config.bot.command_window, clock.now)
        self._room_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._held: deque[tuple[Event, Progress]] = deque()
        self._background: set[asyncio.Task[None]] = set()
        """Slow outside work plugins started off the event path (`Context.in_background`)."""
        """Events that came while the database was unreachable, in arrival order; see `_hold`."""
        self._held_dropped = 0
        self._outage_since: datetime | None = None
        self._hold_retry: Any = None
        self.listeners: list[Callable[[Event], Awaitable[None]]] = []
        """Runtime parts that watch recorded events beside the plugins (the SOP engine watches joins)."""
        self.group_commit = True
        """Events that arrive together (and wake handlers) commit in one transaction; False: each alone."""
        self._groups = EventGroups(self.engine, size=GROUP_SIZE, room_lock=self._room_locks.__getitem__,
                                   record=self._record_for_group, handle=self._handle_event,
                                   alone=self._finish_alone, single=self._dispatch_alone,
                                   unreachable=DatabaseUnreachable)
        self.started = False

    # --- life cycle ---------------------------------------------------------------

    async def start(self, *, accounts: Iterable[str] | None = None) -> None:
        """Migrate, warm the caches and start the accounts (all, or those given: leases start the rest)."""
        upgrade(self.engine, {"core": OUTBOX_MIGRATIONS, **{name: p.migrations for name, p in self.plugins.items()}})
        self.members.load()
        for account in self.adapters if accounts is None else accounts:
            await self.start_account(account)
        self.started = True
        self._every(PRUNE_EVERY, self._prune_marks, "redelivery.prune")
        self._every(ROLE_REFRESH, self._refresh_roles, "members.roles")
        self.report_capabilities()
        log.info("qunbot started: %d plugins (%s), %d of %d accounts running here", len(self.plugins),
                 ", ".join(self.plugins), len(self.active), len(self.adapters))

    async def start_account(self, account: str) -> None:
        """Connect one account and resume its queue and timers (at start, or on taking its lease over)."""
        adapter = self.adapters[account]
        if self.started:
            self.members.load()  # another process may have run this account meanwhile
        await adapter.start(self.dispatch)
        self.members.sync_rooms(account, clean_snapshots(await adapter.rooms()))
        outbox = self._outboxes[account]
        settings = next((a for a in self.config.accounts if a.id == account), None)
        if settings is not None:  # an adapter may learn what it can do once connected; qunbot.toml has the last word
            adapter.capabilities = account_capabilities(settings, adapter.capabilities)
        await outbox.reconcile(adapter.was_sent)
        outbox.start()
        armed = self.tasks.arm_pending(account)
        if armed:
            log.info("account %s: re-armed %d pending plugin timers", account, armed)
        self.active.add(account)
        for plugin in self.plugins.values():
            for hook in plugin.startup:
                event = ActionInvoked(account=account, id=f"startup:{plugin.name}", time=self.clock.now(),
                                      plugin=plugin.name, name="startup", room_id=None)
                await run_isolated(self, Context(self, plugin, event), hook, f"{plugin.name}.{hook.__name__}")

    def _every(self, every: timedelta, work: Callable[[], Awaitable[None]], name: str) -> None:
        """Run `work` every `every` while the runtime runs (a failure is logged and tried next time)."""
        async def run() -> None:
            if not self.started:
                return
            try:
                await work()
            except Exception:
                log.exception("%s failed; trying again in %s", name, every)
            self._every(every, work, name)
        self.clock.call_at(self.clock.now() + every, run, name=name, background=True)

    async def _prune_marks(self) -> None:
        self.redelivery.prune(self.clock.now())

    async def _refresh_roles(self) -> None:
        """Read each running account's rooms again, so an admin WeChat demoted stops being one here."""
        for account in sorted(self.active):
            self.members.refresh_roles(room_roles(await self.adapters[account].rooms()))

    async def stop_account(self, account: str) -> None:
        """Stop sending and firing for one account and disconnect it (its rows stay for the next owner)."""
        self.active.discard(account)
        self._outboxes[account].stop()
        await self._outboxes[account].finish_in_flight()
        self.tasks.disarm(account)
        try:
            await self.adapters[account].stop()
        except Exception:
            log.exception("adapter %s did not stop cleanly", account)

    async def stop(self) -> None:
        self.active.clear()
        if self._held:
            log.error("stopping with %d incoming event(s) held for the database; they are lost", len(self._held))
            self._held.clear()
        if self._hold_retry is not None:
            self._hold_retry.cancel()
            self._hold_retry = None
        for task in list(self._background):  # outside work in flight (an AI answer) is given up, not waited for
            task.cancel()
        self.members.flush_speakers()
        for outbox in self._outboxes.values():
            outbox.stop()
        for outbox in self._outboxes.values():
            await outbox.finish_in_flight()
        self.tasks.disarm_all()
        for adapter in self.adapters.values():
            try:
                await adapter.stop()
            except Exception:
                log.exception("adapter %s did not stop cleanly", adapter.account)
        self.engine.dispose()
        self.started = False

    def known_rooms(self) -> list[KnownRoom]:
        """Every synced room with the account serving it and its topic (what checks match SOP targets on)."""
        with Session(self.engine) as session:
            rows = session.exec(select(Room.id, Room.account, Room.topic)).all()
        return [KnownRoom(room_id, account, self.config.room(room_id).tags, topic) for room_id, account, topic in rows]

    def report_capabilities(self) -> None:
        """Say at start, per account, which enabled plugins it cannot serve (the SOP engine adds its steps)."""
        capabilities = {account: adapter.capabilities for account, adapter in self.adapters.items()}
        findings = plugin_findings(self.config, list(self.plugins.values()), capabilities, self.known_rooms())
        for account, sentences in findings.items():
            for sentence in sentences:
                log.warning("账号 %s：%s%s", account, sentence, FIX_HINT)
        for account, caps in capabilities.items():
            if caps.posts_need_confirmation:
                log.info("账号 %s（%s）：每条群消息是一个群发任务，群主在企业微信里确认后才发出", account, caps.subject)

    # --- events in --------------------------------------------------------------------

    async def dispatch(self, event: Event) -> None:
        """Record the event, then run the plugins it wakes. Events of one room run in order.

        While the database is unreachable, events are held in memory and run, in arrival order and
        exactly once, when it answers again (`_retry_held`). This is where every adapter's events enter:
        their text is cleaned here. Events that wake handlers and arrive together share one transaction
        (`bot/_group.py`); each one's effects stay all-or-nothing.
        """
        event = clean_event(event)
        if self.group_commit and not self._held and self._wakes_handlers(event):
            await self._groups.dispatch(event)
        else:
            await self._dispatch_alone(event)

    async def _dispatch_alone(self, event: Event) -> None:
        room_id = getattr(event, "room_id", None)
        lock = self._room_locks[room_id] if room_id else None
        if lock is not None:
            await lock.acquire()
        try:
            if self._held:  # an outage, or its backlog not yet run: keep the arrival order
                self._hold(event, Progress())
                return
            progress = Progress()
            try:
                await self._run_event(event, progress)
            except DatabaseUnreachable as err:
                self._hold(event, progress, err)
        finally:
            if lock is not None:
                lock.release()

    def _wakes_handlers(self, event: Event) -> bool:
        return bool(self.dispatcher.candidates(event, self._text_of(event)))

    def _text_of(self, event: Event) -> str:
        if isinstance(event, RoomMessage | DirectMessage):
            return strip_bot_mention(event.text, self.config.bot.name)
        return ""

    async def _record_for_group(self, event: Event) -> Progress | None:
        """A grouped event's first part, outside the group's transaction; None if it is held instead."""
        progress = Progress()
        if self._held:
            self._hold(event, progress)
            return None
        try:
            await self._record_and_listen(event, progress)
        except DatabaseUnreachable as err:
            self._hold(event, progress, err)
            return None
        return progress

    async def _handle_event(self, event: Event, progress: Progress) -> None:
        await run_event(self, event, self._text_of(event), progress)

    async def _finish_alone(self, event: Event, progress: Progress) -> None:
        """A grouped event finished on its own (its room's lock is held by the group runner)."""
        if self._held:
            self._hold(event, progress)
            return
        try:
            await self._run_event(event, progress)
        except DatabaseUnreachable as err:
            self._hold(event, progress, err)

    async def _run_event(self, event: Event, progress: Progress) -> None:
        """One attempt at an event; raises `DatabaseUnreachable`, with `progress` saying what is done."""
        await self._record_and_listen(event, progress)
        await run_event(self, event, self._text_of(event), progress)

    async def _record_and_listen(self, event: Event, progress: Progress) -> None:
        if not progress.recorded:
            try:
                self.members.record(event)
            except Exception as err:
                if database_unreachable(err):
                    raise DatabaseUnreachable(str(err).splitlines()[0]) from err
                log.exception("could not record event %s", event.id)
            progress.recorded = True
        listeners = list(self.listeners)
        for listener in listeners[progress.listeners:]:
            try:
                await listener(event)
            except Exception as err:
                if database_unreachable(err):
                    raise DatabaseUnreachable(str(err).splitlines()[0]) from err
                log.exception("event listener %r failed on %s", listener, event.id)
            progress.listeners += 1

    # --- events held while the database is unreachable ---------------------------------

    def _hold(self, event: Event, progress: Progress, error: DatabaseUnreachable | None = None) -> None:
        if self._outage_since is None:
            self._outage_since = self.clock.now()
            log.warning("database unreachable (%s): holding incoming events in memory (at most %d) and retrying "
                        "in %.0fs, backing off to %.0fs", error or "while handling an event", HOLD_LIMIT,
                        HOLD_RETRY_MIN, HOLD_RETRY_MAX)
        if len(self._held) >= HOLD_LIMIT:
            self._held_dropped += 1
            if self._held_dropped == 1:
                log.error("database unreachable: %d events held, the most kept; dropping new ones until it answers",
                          HOLD_LIMIT)
            return
        self._held.append((event, progress))
        if self._hold_retry is None:
            self._schedule_held_retry(HOLD_RETRY_MIN)

    def _schedule_held_retry(self, delay: float) -> None:
        self._hold_retry = self.clock.call_at(self.clock.now() + timedelta(seconds=delay),
                                              partial(self._retry_held, delay), name="held-events")

    async def _retry_held(self, delay: float) -> None:
        """Run the held events in arrival order; at the first that finds the database away, wait longer."""
        attempted = 0
        while self._held:
            event, progress = self._held[0]
            room_id = getattr(event, "room_id", None)
            lock = self._room_locks[room_id] if room_id else None
            if lock is not None:
                await lock.acquire()
            try:
                await self._run_event(event, progress)
            except DatabaseUnreachable:
                log.debug("database still unreachable; %d events held", len(self._held))
                self._schedule_held_retry(min(delay * 2, HOLD_RETRY_MAX))
                return
            except Exception:  # never let one event stall the queue behind it
                log.exception("held event %s failed; dropped", event.id)
            finally:
                if lock is not None:
                    lock.release()
            if self._held and self._held[0][0] is event:  # (a stop meanwhile empties the queue)
                self._held.popleft()
                attempted += 1
        since, self._outage_since, self._hold_retry = self._outage_since, None, None
        dropped, self._held_dropped = self._held_dropped, 0
        log.warning("database answers again after %.0fs: ran the %d held event(s) in arrival order%s",
                    (self.clock.now() - since).total_seconds() if since else 0, attempted,
                    f"; {dropped} dropped beyond the limit" if dropped else "")

    def held_count(self) -> int:
        """Events waiting for the database to answer."""
        return len(self._held)

    def run_in_background(self, work: Awaitable[Mapping[str, Any] | None], *, account: str, plugin_name: str,
                          then: str, room_id: str | None, key: str) -> None:
        """Await `work` in its own task; its result (params, or None for nothing more) starts action `then`.

        In a group commit the task starts once the group committed: a group that does not commit runs its
        events again, and the work must not start twice."""
        group = current_group()
        if group is not None:
            group.after.append(partial(self.run_in_background, work, account=account, plugin_name=plugin_name,
                                       then=then, room_id=room_id, key=key))
            group.dropped.append(getattr(work, "close", lambda: None))
            return

        async def finish() -> None:
            try:
                params = await work
            except Exception:
                log.exception("background work of plugin %s failed (%s)", plugin_name, key)
                return
            if params is not None:
                await self.invoke_action(account, plugin_name, then, room_id=room_id, params=params, key=key,
                                         source="background")

        task = asyncio.get_running_loop().create_task(finish(), name=f"{plugin_name}.{then}:{key}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def background_idle(self) -> None:
        """Wait until no background work is running (simulations and tests: deterministic replies)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def invoke_action(self, account: str, plugin_name: str, action_name: str, *, room_id: str | None,
                            params: Mapping[str, Any] | None = None, key: str, source: str = "") -> bool:
        """Start a plugin action (from an SOP step or an admin tool). True if it ran without error."""
        plugin = self.plugins.get(plugin_name)
        action = plugin.actions.get(action_name) if plugin else None
        if plugin is None or action is None:
            raise LookupError(f"no action {plugin_name}.{action_name} (is the plugin enabled?)")
        if room_id is not None and not self.plugin_enabled(plugin_name, room_id):
            log.info("action %s.%s skipped: plugin disabled in room %s", plugin_name, action_name, room_id)
            return False
        unmet = plugin.unmet_needs(self.adapters[account].capabilities)
        if unmet:  # e.g. a quiz on an account that cannot read the answers: not started, and said so
            log.warning("action %s.%s not started in %s: %s", plugin_name, action_name, room_id or account,
                        lack_sentence(self.adapters[account].capabilities, unmet[0], [plugin_label(plugin)]))
            return False
        parsed = action.params.model_validate(dict(params or {})) if action.params else dict(params or {})
        event = ActionInvoked(account=account, id=key, time=self.clock.now(), plugin=plugin_name,
                              name=action_name, room_id=room_id, source=source)
        ctx = Context(self, plugin, event, room_id=room_id)
        return await run_isolated(self, ctx, action.handler, f"{plugin_name}.{action_name}", parsed)

    # --- connection loss ------------------------------------------------------------

    def _connection_lost(self, account: str, error: Exception) -> None:
        if account in self._reconnecting or account not in self.active:
            return
        self._reconnecting.add(account)
        self._schedule_reconnect(account, 1, self.clock.now())

    def _schedule_reconnect(self, account: str, attempt: int, since: datetime) -> None:
        pacing = self.config.pacing_for(account)
        delay = min(pacing.reconnect_min * 2 ** (attempt - 1), pacing.reconnect_max)
        log.warning("account %s: connection lost; reconnect attempt %d in %.0fs", account, attempt, delay)
        self.clock.call_at(self.clock.now() + timedelta(seconds=delay),
                           partial(self._reconnect, account, attempt, since), name=f"reconnect:{account}")

    async def _reconnect(self, account: str, attempt: int, since: datetime) -> None:
        if account not in self.active:
            self._reconnecting.discard(account)
            return
        adapter = self.adapters[account]
        try:
            try:
                await adapter.stop()
            except Exception:
                log.debug("adapter %s: stop before reconnecting failed", account, exc_info=True)
            await adapter.start(self.dispatch)
        except Exception as err:
            log.warning("account %s: reconnect attempt %d failed: %s", account, attempt, err)
            self._schedule_reconnect(account, attempt + 1, since)
            return
        self._reconnecting.discard(account)
        outbox = self._outboxes[account]
        log.warning("account %s: reconnected after %.0fs (%d attempt(s)); %d queued message(s) go out now, "
                    "those past their deadline are skipped", account, (self.clock.now() - since).total_seconds(),
                    attempt, outbox.pending_count())
        outbox.resume()

    async def _fire_task(self, task: ScheduledTask, late: bool) -> None:
        plugin = self.plugins.get(task.plugin)
        handler = plugin.timers.get(task.name) if plugin else None
        if plugin is None or handler is None:
            log.error("timer %s/%s has no handler (plugin disabled?); marking it failed", task.plugin, task.name)
            self._set_task_status(task.id, "failed")
            return
        event = TimerFired(account=task.account, id=f"task:{task.id}", time=self.clock.now(), plugin=task.plugin,
                           name=task.name, key=task.key, due_at=task.due_at, room_id=task.room_id,
                           member_id=task.member_id, data=dict(task.data), late=late)
        ctx = Context(self, plugin, event, room_id=task.room_id, member_id=task.member_id)
        claimed = False
        error = "it failed, timed out or could not commit (see the log above)"

        async def claim_then_run(ctx: Context) -> None:
            # Conditional, in the handler's own transaction: of two processes firing one timer, one runs it.
            nonlocal claimed, error
            result = ctx.db.execute(update(ScheduledTask).where(col(ScheduledTask.id) == task.id,
                                                                ScheduledTask.status == "pending")
                                    .values(status="done", fired_at=self.clock.now()))
            claimed = result.rowcount == 1  # type: ignore[attr-defined]
            if claimed:
                try:
                    await handler(ctx)
                except Exception as err:
                    error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    raise

        if await run_isolated(self, ctx, claim_then_run, f"{plugin.name}.timer.{task.name}"):
            if not claimed:
                log.info("timer %s/%s (%s) already fired elsewhere", task.plugin, task.name, task.key)
            return
        try:
            with Session(self.engine) as session:
                row = session.get(ScheduledTask, task.id)
            if row is None or row.status != "pending":
                return
            if claimed:  # the handler itself failed: again later, then surfaced; never dropped silently
                self.tasks.failed(task, error)
                return
        except SQLAlchemyError:
            pass
        self.tasks.retry_later(task, late=True)  # the database was away: the timer is still pending

    def _set_task_status(self, task_id: int | None, status: str) -> None:
        with session_scope(self.engine) as session:
            row = session.get(ScheduledTask, task_id)
            if row is not None:
                row.status = status

    # --- what handlers reach through their context --------------------------------------

    def new_session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def new_context(self, plugin: Plugin, event: Event, *, room_id: str | None = None, member_id: str | None = None,
                    text: str = "", args: str = "", match: re.Match[str] | None = None) -> Context:
        """A handler's context for an event: how the dispatcher makes one without importing `Context`."""
        return Context(self, plugin, event, room_id=room_id, member_id=member_id, text=text, args=args, match=match)

    def outbox(self, account: str) -> Outbox:
        return self._outboxes[account]

    def after_commit(self, ctx: Context) -> None:
        armed, ctx._armed = ctx._armed, []
        group = current_group()
        if group is not None:  # once the whole group committed
            group.after.append(partial(self._committed, ctx.account, armed))
        else:
            self._committed(ctx.account, armed)

    def _committed(self, account: str, armed: list[int]) -> None:
        self._outboxes[account].wake()
        if armed:
            self.tasks.arm(armed)

    def _render_merged(self, row: OutboxMessage) -> tuple[str, tuple[str, ...]]:
        assert row.merge_template is not None and row.room_id is not None
        return render_merged(self, row.merge_template, row.source, row.room_id, row.parts, fallback=row.text)

    def service(self, plugin_name: str) -> Any:
        plugin = self.plugins.get(plugin_name)
        if plugin is None or plugin.service is None:
            raise LookupError(f"plugin {plugin_name!r} is not enabled or offers no service")
        return plugin.service

    def plugin_enabled(self, plugin_name: str, room_id: str) -> bool:
        """On in this room: enabled, not switched off here, and neither is anything it `requires`."""
        plugin = self.plugins.get(plugin_name)
        if plugin is None or plugin_name in self.config.room(room_id).plugins_disabled:
            return False
        return all(self.plugin_enabled(needed, room_id) for needed in plugin.requires if needed != plugin_name)

    def plugin_config(self, plugin_name: str, room_id: str | None) -> Any:
        if room_id is not None and (plugin_name, room_id) in self._configs:
            return self._configs[(plugin_name, room_id)]
        return self._configs.get((plugin_name, None))

    def now(self) -> datetime:
        return self.clock.now()

    # --- set-up ------------------------------------------------------------------

    def _words_for(self, matcher: Matcher) -> tuple[str, ...]:
        field = matcher.trigger.words_from
        if field is None:
            return matcher.trigger.words
        config = self._configs.get((matcher.plugin.name, None))
        words = getattr(config, field, None)
        if not words:
            return matcher.trigger.words
        return tuple([words] if isinstance(words, str) else words)
