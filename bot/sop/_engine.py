"""The SOP engine: a runtime Component that turns loaded SOP files into posts and plugin actions.

Recurring and sequence steps: one clock timer per step at its next APScheduler fire time; when it
fires, every target room gets a ledger row and an outbox message in one transaction (keyed, so a
restart never posts twice; `expires_at` = fire time + grace, so slow fan-out respects lateness).
Join-relative steps: rows written when a member joins, sent by one sweeper armed at the earliest due row.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from functools import partial

from sqlalchemy import func, literal_column, update
from sqlmodel import Session, col, select

from bot._clock import TimerHandle
from bot._context import RoomInfo
from bot._db import database_unreachable, dialect_insert
from bot._events import Event, MembersJoined
from bot._models import Membership, OutboxMessage, Room
from bot._runtime import DEFAULT_TEMPLATES, Runtime
from bot.sop._check import accounts_and_rooms
from bot.sop._load import LoadedSop, load_all, render_step, variant_of
from bot.sop._models import SopDelivery
from bot.sop._needs import step_problems
from bot.sop._quota import quota_problems
from bot.sop._schema import Step, Targets, parse_duration
from bot.sop._triggers import fire_times, occurrence

log = logging.getLogger("qunbot.sop")

RELOAD_POLL = 3.0
"""Seconds of wall time between two looks at file modification times (edits happen in wall time)."""
_FAR = timedelta(days=3660)
_TICK = timedelta(microseconds=1)
_MISSED_LOG_LIMIT = 50
_SWEEP_BATCH = 500
_IN_CHUNK = 500
_SWEEP_RETRY = timedelta(minutes=1)
_SWEEP_LOCKED_RETRY = timedelta(seconds=5)
_FIRE_RETRY_MIN, _FIRE_RETRY_MAX = 1.0, 30.0
"""Seconds before a fire that found the database unreachable is tried again, doubling up to the maximum."""


class SopEngine:
    """Runs the project's SOP files for every account of one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.tz = runtime.config.bot.tz
        self.files: dict[str, LoadedSop] = {}
        self.problems: dict[str, str] = {}
        self._timers: dict[tuple[str, str], TimerHandle] = {}
        self._sweep_timer: TimerHandle | None = None
        self._retries: dict[tuple[str, str, datetime], TimerHandle] = {}
        self._watch: asyncio.Task[None] | None = None
        self._signature: tuple[tuple[str, int, int], ...] = ()
        self._bot_ids: set[str] = set()
        insert = dialect_insert(runtime.engine.dialect.name)
        self._claim_row = (insert(SopDelivery.__table__).on_conflict_do_nothing(index_elements=["account", "key"])
                           .returning(literal_column("1")))

    # --- life cycle --------------------------------------------------------------------

    async def start(self, runtime: Runtime) -> None:
        for adapter in runtime.adapters.values():
            me = await adapter.self_member()
            if me is not None:
                self._bot_ids.add(me.id)
        self._signature = self._files_signature()
        self.reload()
        runtime.listeners.append(self._on_event)
        self._arm_sweep()
        self._watch = asyncio.get_running_loop().create_task(self._watch_files(), name="sop:watch")

    async def stop(self) -> None:
        if self._on_event in self.rt.listeners:
            self.rt.listeners.remove(self._on_event)
        for handle in [*self._timers.values(), *self._retries.values()]:
            handle.cancel()
        self._timers.clear()
        self._retries.clear()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self._watch is not None:
            self._watch.cancel()
            with suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    def reload(self) -> dict[str, str]:
        """Load every SOP file again; a broken file keeps its last valid version running. Returns problems."""
        config = self.rt.config
        tags = {tag for room in config.rooms.values() for tag in room.tags}
        loaded, problems = load_all(
            self.rt.project, config.sop.dir, self.rt.renderer, [self.rt.project / config.templates_dir,
                                                                DEFAULT_TEMPLATES],
            self.tz, now=self.rt.now(), room_tags=tags, plugins=self.rt.plugins)
        for name, problem in problems.items():
            kept = " (the previous version keeps running)" if name in self.files else ""
            log.error("SOP file not loaded: %s%s", problem, kept)
            if name in self.files:
                loaded[name] = self.files[name]
        changed = sorted(name for name in loaded if loaded[name] is not self.files.get(name))
        self.files, self.problems = loaded, problems
        if changed:  # what an account cannot do for the steps that changed (a WeCom account removes nobody)
            capabilities = {account: adapter.capabilities for account, adapter in self.rt.adapters.items()}
            synced = self.rt.known_rooms()  # the rooms the accounts are in, with topics; then the configured ones
            seen = {room.id for room in synced}
            rooms = synced + [r for r in accounts_and_rooms(config, loaded.values())[1] if r.id not in seen]
            for problem in step_problems([loaded[name] for name in changed], config, self.rt.plugins, capabilities,
                                         rooms):
                log.warning("SOP %s", problem)
            for problem in quota_problems(loaded.values(), config, capabilities, rooms, start=self.rt.now(),
                                          tz=self.tz):
                log.warning("SOP %s（超出的消息不会发出）", problem)
        self._reschedule()
        if changed:
            log.info("SOP loaded: %s", ", ".join(changed))
        return problems

    def check_files(self) -> bool:
        """Reload if an SOP file or template changed since the last look (what the watcher calls)."""
        signature = self._files_signature()
        if signature == self._signature:
            return False
        self._signature = signature
        self.reload()
        return True

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL)
            try:
                self.check_files()
            except Exception:
                log.exception("SOP reload failed; the previous version keeps running")

    def _files_signature(self) -> tuple[tuple[str, int, int], ...]:
        config, found = self.rt.config, []
        for folder in (self.rt.project / config.sop.dir, self.rt.project / config.templates_dir):
            if folder.is_dir():
                for path in folder.rglob("*"):
                    if path.is_file():
                        stat = path.stat()
                        found.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(sorted(found))

    # --- recurring and sequence steps -----------------------------------------------------

    def _reschedule(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        now = self.rt.now()
        with Session(self.rt.engine) as session:  # each file's last post: the bot ran it until then
            running_since = dict(session.exec(select(SopDelivery.file, func.max(SopDelivery.due_at)).where(
                col(SopDelivery.member_id).is_(None)).group_by(SopDelivery.file)).all())
        for loaded in self.files.values():
            if not loaded.sop.enabled:
                continue
            for step in loaded.sop.steps:
                if loaded.triggers.get(step.id) is None:
                    continue
                grace = loaded.sop.grace_of(step)
                self._record_missed(loaded, step, now - grace, running_since.get(loaded.name))
                self._arm(loaded, step, now - grace)

    def _arm(self, loaded: LoadedSop, step: Step, after: datetime) -> None:
        trigger = loaded.triggers[step.id]
        assert trigger is not None
        fire = next(fire_times(trigger, after, after + _FAR), None)
        if fire is not None:
            self._timers[(loaded.name, step.id)] = self.rt.clock.call_at(
                fire, partial(self._fire, loaded, step, fire), name=f"sop:{loaded.name}:{step.id}", background=True)

    def _record_missed(self, loaded: LoadedSop, step: Step, before: datetime, file_last: datetime | None) -> None:
        """Log (and record as skipped) the fires the bot missed while it was down, beyond their grace.

        Missed since the step's own last post, or, for a step that never posted, since the file's last."""
        trigger = loaded.triggers[step.id]
        assert trigger is not None
        with Session(self.rt.engine) as session:
            last = session.exec(select(func.max(SopDelivery.due_at)).where(
                SopDelivery.file == loaded.name, SopDelivery.step == step.id)).one() or file_last
        if last is None and step.offset is None:
            return  # a recurring step never run before has nothing to catch up on
        start = last + timedelta(microseconds=1) if last is not None else datetime(2000, 1, 1, tzinfo=UTC)
        missed = list(fire_times(trigger, start, before))[-_MISSED_LOG_LIMIT:]
        for fire in missed:
            self._deliver_fire(loaded, step, fire, skip_reason=f"late by {_ago(self.rt.now() - fire)}, "
                                                               f"beyond its grace of {_ago(loaded.sop.grace_of(step))}")

    async def _fire(self, loaded: LoadedSop, step: Step, fire: datetime) -> None:
        self._timers.pop((loaded.name, step.id), None)
        self._arm(loaded, step, fire + timedelta(microseconds=1))  # first: a failure below must not end the step
        await self._fire_once(loaded, step, fire, 0)

    async def _fire_once(self, loaded: LoadedSop, step: Step, fire: datetime, retries: int) -> None:
        """Deliver one fire; if the database is unreachable, try again with back-off until it answers.

        Each try decides lateness afresh, so a post that is beyond its grace once the database is back is
        skipped and logged, not sent late; the ledger keeps every room's post to one."""
        self._retries.pop((loaded.name, step.id, fire), None)
        try:
            await self._deliver(loaded, step, fire)
        except Exception as err:
            if not database_unreachable(err):
                raise
            delay = min(_FIRE_RETRY_MIN * 2 ** retries, _FIRE_RETRY_MAX)
            if retries == 0:
                log.warning("SOP %s.%s due at %s: the database is unreachable (%s); retrying every %.0f-%.0fs "
                            "until it answers (grace %s)", loaded.name, step.id, f"{fire.astimezone(self.tz):%H:%M}",
                            str(err).splitlines()[0], _FIRE_RETRY_MIN, _FIRE_RETRY_MAX,
                            _ago(loaded.sop.grace_of(step)))
            self._retries[(loaded.name, step.id, fire)] = self.rt.clock.call_at(
                self.rt.now() + timedelta(seconds=delay), partial(self._fire_once, loaded, step, fire, retries + 1),
                name=f"sop:retry:{loaded.name}:{step.id}")
            return
        if retries:
            log.warning("SOP %s.%s due at %s: handled after the database came back (%d retries)", loaded.name,
                        step.id, f"{fire.astimezone(self.tz):%H:%M}", retries)

    async def _deliver(self, loaded: LoadedSop, step: Step, fire: datetime) -> None:
        grace = loaded.sop.grace_of(step)
        late = self.rt.now() - fire
        reason = f"late by {_ago(late)}, beyond its grace of {_ago(grace)}" if late > grace else None
        trigger = loaded.triggers[step.id]
        assert trigger is not None
        later = next(fire_times(trigger, fire + timedelta(microseconds=1), self.rt.now() + _TICK), None)
        if reason is None and later is not None:  # coalesce: after an outage, one post per step, the latest
            reason = f"coalesced: the post due at {later.astimezone(self.tz):%H:%M} is sent instead"
        claimed, actions = self._deliver_fire(loaded, step, fire, skip_reason=reason)
        for account, room_id, key in actions:
            await self._run_action(loaded, step, account, room_id, key)
        if claimed and reason is None and step.action is None:
            self.rt.clock.call_at(fire + grace + timedelta(seconds=1), partial(self._report, loaded, step, fire),
                                  name=f"sop:report:{loaded.name}:{step.id}", background=True)

    def _deliver_fire(self, loaded: LoadedSop, step: Step, fire: datetime, *, skip_reason: str | None,
                      ) -> tuple[int, list[tuple[str, str, str]]]:
        """Write ledger rows (and outbox rows) for every target room not handled yet; return how many rooms
        that was, and the actions still to run."""
        occ = occurrence(step, fire, self.tz)
        rooms = self.target_rooms(loaded.sop.targets)
        actions: list[tuple[str, str, str]] = []
        woken: set[str] = set()
        claimed = 0
        with Session(self.rt.engine) as session:
            for account, room in rooms:
                key = f"sop:{loaded.name}:{step.id}:{room.id}:{occ}"
                status = "skipped" if skip_reason else ("pending" if step.action else "queued")
                if not self._claim(session, account, key, loaded, step, room.id, None, fire, status, skip_reason):
                    continue
                claimed += 1
                if skip_reason:
                    log.warning("SOP %s.%s for room %s at %s skipped: %s", loaded.name, step.id, room.id,
                                fire.isoformat(), skip_reason)
                elif step.action is not None:
                    actions.append((account, room.id, key))
                else:
                    try:
                        self._enqueue(session, loaded, step, account, key, room, fire, member=None)
                    except Exception as err:  # one room's bad data must not stop the others
                        log.error("SOP %s.%s for room %s failed: %s", loaded.name, step.id, room.id, err)
                        session.execute(update(SopDelivery).where(SopDelivery.account == account,
                                                                  SopDelivery.key == key)
                                        .values(status="failed", detail=str(err)[:500]))
                        continue
                    woken.add(account)
            session.commit()
        for account in woken:
            self.rt.outbox(account).wake()
        if claimed and not skip_reason and step.action is None:
            log.info("SOP %s.%s (%s): queued for %d room(s)", loaded.name, step.id, occ, claimed)
        return claimed, actions

    def _claim(self, session: Session, account: str, key: str, loaded: LoadedSop, step: Step, room_id: str,
               member_id: str | None, due: datetime, status: str, detail: str | None) -> bool:
        """Insert the ledger row; False if this post was already handled (exactly once)."""
        result = session.execute(self._claim_row, {  # values as parameters: one cached statement for every room
            "account": account, "key": key, "file": loaded.name, "step": step.id, "room_id": room_id,
            "member_id": member_id, "due_at": due, "status": status,
            "sent_at": None if status in ("skipped", "pending") else self.rt.now(), "detail": detail or ""})
        return result.first() is not None  # RETURNING, not rowcount: see bot/_unique.py

    def _enqueue(self, session: Session, loaded: LoadedSop, step: Step, account: str, key: str, room: RoomInfo,
                 due: datetime, *, member: str | None, to_member: bool = False) -> None:
        """Render (with `now` = the due time, as `preview` shows it) and hand to the paced outbox, which
        drops the message if it cannot go out within the step's grace."""
        variant = variant_of(loaded, step, room.id)
        if step.variants:
            log.info("SOP %s.%s: room %s gets variant %d (%s)", loaded.name, step.id, room.id, variant + 1,
                     step.variants[variant])
        info = self.rt.members.member_info(member, room.id) if member else None
        rendered = render_step(self.rt.renderer, loaded, step, variant=variant, room=room, now=due.astimezone(self.tz),
                               member=info)
        assert rendered is not None
        mentions = rendered.mentions
        if member and step.mention and not to_member and member not in mentions:
            mentions = (member, *mentions)
        text = rendered.text if to_member else self.rt.members.with_mentions(rendered.text, mentions, room.id)
        refused = self.rt.outbox(account).enqueue(
            session, key=key, text=text, room_id=None if to_member else room.id, to=member if to_member else None,
            mentions=() if to_member else mentions, file=step.file, source=f"sop:{loaded.name}:{step.id}",
            not_before=self.rt.now(), expires_at=due + loaded.sop.grace_of(step))
        if refused:  # the account cannot send this at all: the ledger says failed, with the reason
            raise ValueError(refused)

    async def _run_action(self, loaded: LoadedSop, step: Step, account: str, room_id: str, key: str) -> None:
        assert step.action is not None
        spec = step.action
        try:
            ok = await self.rt.invoke_action(account, spec.plugin, spec.name, room_id=room_id, params=spec.params,
                                             key=key, source=f"sop:{loaded.name}:{step.id}")
        except Exception as err:  # a missing plugin or bad params must not stop the other rooms
            log.error("SOP %s.%s: action %s.%s in room %s failed: %s", loaded.name, step.id, spec.plugin,
                      spec.name, room_id, err)
            ok = False
        self._set_status(account, key, "done" if ok else "failed")

    def _set_status(self, account: str, key: str, status: str, detail: str = "") -> None:
        with Session(self.rt.engine) as session:
            session.execute(update(SopDelivery).where(SopDelivery.account == account, SopDelivery.key == key)
                            .values(status=status, sent_at=self.rt.now(), detail=detail))
            session.commit()

    async def _report(self, loaded: LoadedSop, step: Step, fire: datetime) -> None:
        """After the grace period: how the fan-out went and when the last room got it."""
        pattern = f"sop:{loaded.name}:{step.id}:%:{occurrence(step, fire, self.tz)}"
        with Session(self.rt.engine) as session:
            rows = session.exec(select(OutboxMessage.status, OutboxMessage.sent_at, OutboxMessage.last_error)
                                .where(col(OutboxMessage.key).like(pattern))).all()
        if not rows:
            return
        sent = [at for status, at, _ in rows if status == "sent" and at is not None]
        over = sum(1 for status, _, error in rows if status == "skipped" and (error or "").startswith("超出配额"))
        skipped = sum(1 for status, _, _ in rows if status == "skipped") - over
        summary = f"{len(sent)} of {len(rows)} room(s) got it"
        if sent:
            summary += f", the last at {max(sent).astimezone(self.tz):%H:%M:%S}"
        if skipped:
            summary += f"; {skipped} skipped as late"
        if over:
            summary += f"; {over} not sent: the room's quota was used up"
        cancelled = sum(1 for status, _, _ in rows if status == "cancelled")  # a person did not confirm (WeCom)
        waiting = sum(1 for status, _, _ in rows if status == "awaiting_confirmation")
        if cancelled:
            summary += f"; {cancelled} cancelled (not confirmed in time)"
        if waiting:
            summary += f"; {waiting} still waiting for confirmation"
        if len(rows) - len(sent) - skipped - over - cancelled - waiting:
            summary += f"; {len(rows) - len(sent) - skipped - over - cancelled - waiting} failed or not sent"
        log.info("SOP %s.%s (%s): %s", loaded.name, step.id, f"{fire.astimezone(self.tz):%m-%d %H:%M}", summary)

    # --- join-relative steps --------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        if not isinstance(event, MembersJoined):
            return
        room = self.rt.members.room_info(event.room_id)
        with Session(self.rt.engine) as session:
            for loaded in self.files.values():
                if not loaded.sop.enabled or not self._matches(loaded.sop.targets, room):
                    continue
                for step in loaded.sop.steps:
                    if step.after_join is None:
                        continue
                    due = event.time + parse_duration(step.after_join, signed=False)
                    for member in event.members:
                        if member.id in self._bot_ids:
                            continue
                        key = (f"sop:{loaded.name}:{step.id}:{room.id}:{member.id}:"
                               f"{event.time.astimezone(self.tz).date().isoformat()}")
                        self._claim(session, event.account, key, loaded, step, room.id, member.id, due, "pending",
                                    None)
            session.commit()
        self._arm_sweep()

    def _arm_sweep(self, *, not_before: datetime | None = None) -> None:
        with Session(self.rt.engine) as session:
            due = session.exec(select(func.min(SopDelivery.due_at)).where(
                SopDelivery.status == "pending", col(SopDelivery.member_id).is_not(None))).one()
        if due is not None and not_before is not None:
            due = max(due, not_before)
        if self._sweep_timer is not None:
            if due is not None and self._sweep_timer.when <= due:
                return
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if due is not None:
            self._sweep_timer = self.rt.clock.call_at(due.astimezone(self.tz), self._sweep, name="sop:sweep",
                                                      background=True)

    async def _sweep(self) -> None:
        """Send the join-relative rows that came due (one job, however many members joined)."""
        self._sweep_timer = None
        try:
            swept = self._sweep_due()
        except Exception:  # the database hiccupped: try again in a minute rather than never
            log.exception("SOP join sweep failed; retrying in %s", _SWEEP_RETRY)
            self._sweep_timer = self.rt.clock.call_at(self.rt.now() + _SWEEP_RETRY, self._sweep, name="sop:sweep",
                                                      background=True)
            return
        # A full batch: more are due, go on at once. Otherwise rows still due are locked by another
        # process's sweep (PostgreSQL): look again shortly instead of spinning on them.
        self._arm_sweep(not_before=None if swept == _SWEEP_BATCH else self.rt.now() + _SWEEP_LOCKED_RETRY)

    def _sweep_due(self) -> int:
        """Handle up to one batch of due rows; return how many."""
        now, woken = self.rt.now(), set()
        with Session(self.rt.engine) as session:
            query = (select(SopDelivery).where(SopDelivery.status == "pending", col(SopDelivery.member_id)
                                               .is_not(None), col(SopDelivery.due_at) <= now)
                     .order_by(col(SopDelivery.due_at), col(SopDelivery.id)).limit(_SWEEP_BATCH))
            if self.rt.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = session.exec(query).all()
            for row in rows:
                row.status, row.detail = self._sweep_one(session, row, now)
                row.sent_at = now if row.status == "queued" else None
                session.add(row)
                if row.status == "queued":
                    woken.add(row.account)
            session.commit()
        for account in woken:
            self.rt.outbox(account).wake()
        return len(rows)

    def _sweep_one(self, session: Session, row: SopDelivery, now: datetime) -> tuple[str, str]:
        loaded = self.files.get(row.file)
        step = loaded.step(row.step) if loaded else None
        if loaded is None or step is None or step.after_join is None:
            return "cancelled", "the step is no longer in the SOP file"
        membership = session.get(Membership, (row.room_id, row.member_id))
        if membership is None or membership.left_at is not None:
            return "cancelled", "the member left the room"
        due, grace = row.due_at.astimezone(self.tz), loaded.sop.grace_of(step)
        if now - due > grace:
            detail = f"late by {_ago(now - due)}, beyond its grace of {_ago(grace)}"
            log.warning("SOP %s.%s for %s in %s skipped: %s", row.file, row.step, row.member_id, row.room_id, detail)
            return "skipped", detail
        if step.member_tags:  # evaluated now, so a member who spoke an hour ago is no longer `silent`
            try:
                have = self.rt.service("insight").current_tags(session, row.room_id, row.member_id, now)
            except LookupError as err:
                return "failed", str(err)
            lacking = [tag for tag in step.member_tags if tag not in have]
            if lacking:
                return "skipped", f"the member has no tag {', '.join(lacking)} (member_tags)"
        room = self.rt.members.room_info(row.room_id)
        try:
            self._enqueue(session, loaded, step, row.account, row.key, room, due, member=row.member_id,
                          to_member=step.to == "dm")
        except Exception as err:
            log.error("SOP %s.%s for %s: %s", row.file, row.step, row.member_id, err)
            return "failed", str(err)
        return "queued", ""

    # --- targets --------------------------------------------------------------------------

    def target_rooms(self, targets: Targets) -> list[tuple[str, RoomInfo]]:
        """(account, room) for every known room a file targets."""
        listed, patterned = set(targets.rooms), bool(targets.topics or targets.tags)
        rooms = sorted((room for room in self.rt.members.rooms()
                        if room.id in listed or (patterned and self._matches(targets, room))), key=lambda r: r.id)
        accounts: dict[str, str] = {}
        with Session(self.rt.engine) as session:  # only the matched rooms' rows: a fan-out runs on time
            for start in range(0, len(rooms), _IN_CHUNK):
                ids = [room.id for room in rooms[start:start + _IN_CHUNK]]
                accounts.update(session.exec(select(Room.id, Room.account).where(col(Room.id).in_(ids))).all())
        return [(accounts[room.id], room) for room in rooms
                if room.id in accounts and accounts[room.id] in self.rt.adapters]

    @staticmethod
    def _matches(targets: Targets, room: RoomInfo) -> bool:
        return (room.id in targets.rooms or any(tag in room.tags for tag in targets.tags)
                or any(fnmatchcase(room.topic, pattern) for pattern in targets.topics))


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def make_engine(runtime: Runtime) -> SopEngine | None:
    """Component factory: an engine when the project has an SOP folder."""
    return SopEngine(runtime) if (runtime.project / runtime.config.sop.dir).is_dir() else None

