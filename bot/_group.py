"""Group commit: events that arrive together share one transaction, each handler in a savepoint of it.

A handler's work is still all-or-nothing (its savepoint is released or rolled back), and a failing
handler leaves the others' work alone. The group commits once; if that commit fails, nothing of
it happened and the runtime runs each event again on its own. A transaction open across a wait
would hold SQLite's write lock (and PostgreSQL row locks) while other work runs, so a group only
takes handlers seen to finish without waiting; one that waits after all is stopped at that first
wait, rolled back, and run again outside the group.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

T = TypeVar("T")
log = logging.getLogger("qunbot.runtime")
Record = Callable[[Any], Awaitable[Any]]
"""Record an event and run the listeners: its progress, or None if it was held for the database instead."""
Step = Callable[[Any, Any], Coroutine[Any, Any, Any]]

_current: contextvars.ContextVar[GroupCommit | None] = contextvars.ContextVar("qunbot_group", default=None)


class WouldWait(BaseException):  # a BaseException, like GeneratorExit: it passes `except Exception`
    """A handler in a group is about to wait (or is not known to finish without waiting)."""


class GroupCommit:
    """One shared session for the events of a group; savepoints per handler run; hooks to run after commit."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._session: Session | None = None
        self._open: list[SessionTransaction] = []
        self.after: list[Any] = []
        """What to do once the group committed (wake outboxes, arm timers, start background work), in order."""
        self.dropped: list[Any] = []
        """What to do if it did not (close background work that never started)."""
        self.active = True
        self.handler: Any = None
        """The handler running now, so a stop at its first wait can be pinned on it."""

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(self._engine, expire_on_commit=False)
            if self._engine.dialect.name == "sqlite":
                # pysqlite starts transactions itself only before writes: without an explicit BEGIN the
                # first SAVEPOINT would open the transaction and its RELEASE would commit it.
                self._session.connection().exec_driver_sql("BEGIN")
        return self._session

    def shares(self, session: Session) -> bool:
        """Whether `session` is this group's shared one (not to be closed by a handler run)."""
        return session is self._session

    def begin(self) -> tuple[Session, SessionTransaction]:
        savepoint = self.session.begin_nested()
        self._open.append(savepoint)
        return self.session, savepoint

    def end(self, savepoint: SessionTransaction, ok: bool) -> None:
        """Release (ok) or roll back one handler's savepoint; a release that fails rolls it back and raises."""
        self._open.remove(savepoint)
        if not ok:
            savepoint.rollback()
            return
        try:
            savepoint.commit()
        except BaseException:
            if savepoint.is_active:
                savepoint.rollback()
            raise

    def abandon_open(self) -> None:
        """Roll back savepoints of handler runs that were stopped midway."""
        while self._open:
            savepoint = self._open.pop()
            if savepoint.is_active:
                savepoint.rollback()

    def commit(self) -> None:
        self.active = False
        if self._session is not None:
            try:
                self.abandon_open()
                self._session.commit()
            finally:
                self._session.close()

    def rollback(self) -> None:
        self.active = False
        if self._session is not None:
            try:
                self._session.rollback()
            finally:
                self._session.close()

    def enter(self) -> contextvars.Token[GroupCommit | None]:
        return _current.set(self)

    @staticmethod
    def leave(token: contextvars.Token[GroupCommit | None]) -> None:
        _current.reset(token)


def current_group() -> GroupCommit | None:
    """The group the running code belongs to, if any (a timer that copied the context later sees none)."""
    group = _current.get()
    return group if group is not None and group.active else None


async def drive(coro: Coroutine[Any, Any, T], *, may_wait: bool) -> tuple[T, bool]:
    """Run `coro` in this task as a task would; return (its result, whether it ever waited).

    With `may_wait` False its first wait closes it instead, raising `WouldWait`.
    """
    try:
        waiting = coro.send(None)
    except StopIteration as stop:
        return stop.value, False
    if not may_wait:
        coro.close()
        raise WouldWait
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False  # what Task.__step does before it waits on it
                await asyncio.wait((waiting,))
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as err:  # cancelled (a timeout) while it waited: hand it in, as a task would
            if waiting is not None:
                waiting.cancel()
            try:
                waiting = coro.throw(err)
            except StopIteration as stop:
                return stop.value, True
            continue
        try:
            waiting = coro.send(None)
        except StopIteration as stop:
            return stop.value, True


class EventGroups:
    """Collect events that arrive together (up to `size`) and run them as one group commit.

    Recording and the runtime's listeners (which commit on their own) run first, outside the group's
    transaction; then every event's handlers run in it, and it commits once. A handler not known to
    finish without waiting ends the group there: what ran commits, the rest runs event by event.
    """

    def __init__(self, engine: Engine, *, size: int, room_lock: Callable[[str], asyncio.Lock], record: Record,
                 handle: Step, alone: Step, single: Callable[[Any], Awaitable[None]],
                 unreachable: type[Exception]) -> None:
        """`handle(event, progress)` runs the handlers (raising `unreachable` if the database is away);
        `alone(event, progress)` finishes an event outside any group, holding it if the database is away;
        `single(event)` runs an event that came by itself, as if there were no groups."""
        self._engine = engine
        self.size = size
        self._room_lock = room_lock
        self._record = record
        self._handle_one = handle
        self._alone = alone
        self._single = single
        self._unreachable = unreachable
        self._collecting: list[tuple[Any, asyncio.Future[None]]] | None = None
        self._running = asyncio.Lock()

    async def dispatch(self, event: Any) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._collecting is not None and len(self._collecting) < self.size:
            self._collecting.append((event, done))
            await done
            return
        batch = self._collecting = [(event, done)]
        await asyncio.sleep(0)  # events that arrived together join
        async with self._running:
            if self._collecting is batch:
                self._collecting = None
            if len(batch) == 1:
                await _finish(done, self._single(event))
            else:
                await self._run(batch)
        await done

    async def _run(self, batch: list[tuple[Any, asyncio.Future[None]]]) -> None:
        rooms = sorted({room for event, _ in batch if (room := getattr(event, "room_id", None))})
        locks = [self._room_lock(room) for room in rooms]
        for lock in locks:
            await lock.acquire()
        try:
            ready = []
            for event, done in batch:
                try:
                    progress = await self._record(event)
                except Exception as err:
                    _fail(done, err)
                    continue
                if progress is None:
                    done.set_result(None)  # held until the database answers
                else:
                    ready.append((event, done, progress))
            await self._handle(ready)
        finally:
            for lock in locks:
                lock.release()

    async def _handle(self, ready: list[tuple[Any, asyncio.Future[None], Any]]) -> None:
        group = GroupCommit(self._engine)
        token = group.enter()
        ran: list[asyncio.Future[None]] = []
        failed, left = False, len(ready)
        try:
            for index, (event, done, progress) in enumerate(ready):
                try:
                    await drive(self._handle_one(event, progress), may_wait=False)
                except WouldWait:
                    group.abandon_open()
                    left = index
                    break
                except self._unreachable:
                    failed, left = True, index
                    break
                except Exception as err:
                    _fail(done, err)
                    continue
                ran.append(done)
        finally:
            group.leave(token)
        try:
            if failed:
                group.rollback()
            else:
                group.commit()
        except Exception as err:
            if not failed:
                log.warning("a group commit of %d event(s) failed (%s); running each on its own", len(ready),
                            str(err).splitlines()[0])
            failed, left = True, min(left, len(ready) - 1)
        if failed:  # nothing of the group happened: those events again, each on its own
            for drop in group.dropped:
                drop()
            for event, done, progress in ready[:left + 1]:
                if not done.done():
                    await _finish(done, self._alone(event, progress.restart()))
            left += 1
        else:
            for hook in group.after:
                hook()
            for done in ran:
                if not done.done():
                    done.set_result(None)
        for event, done, progress in ready[left:]:  # after a handler that waits: each on its own
            if not done.done():
                await _finish(done, self._alone(event, progress))


async def _finish(done: asyncio.Future[None], step: Coroutine[Any, Any, Any]) -> None:
    try:
        await step
    except Exception as err:
        _fail(done, err)
    else:
        if not done.done():
            done.set_result(None)


def _fail(done: asyncio.Future[None], err: BaseException) -> None:
    if not done.done():
        done.set_exception(err)
