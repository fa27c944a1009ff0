"""Time, real or virtual: the runtime never calls `datetime.now()` itself.

Everything that waits (paced sends, plugin timers, SOP posts) asks the clock to
call it back at a time. The real clock sleeps on the event loop; the virtual
clock runs callbacks in time order when the simulator advances it, so a week of
group life runs in seconds and the same code paths are exercised.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

log = logging.getLogger("qunbot.clock")

Callback = Callable[[], Awaitable[None]]


@dataclass(order=True)
class _Timer:
    when: datetime
    seq: int
    callback: Callback = field(compare=False)
    name: str = field(compare=False, default="")
    background: bool = field(compare=False, default=False)
    cancelled: bool = field(compare=False, default=False)


class TimerHandle:
    """Returned by `Clock.call_at`; `cancel()` drops the callback if it has not run."""

    def __init__(self, timer: _Timer, task: asyncio.Task[None] | None = None) -> None:
        self._timer = timer
        self._task = task

    @property
    def when(self) -> datetime:
        return self._timer.when

    def cancel(self) -> None:
        self._timer.cancelled = True
        if self._task is not None:
            self._task.cancel()


class Clock:
    """Base clock: `now()` in the configured time zone, and timed callbacks."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz

    def now(self) -> datetime:
        raise NotImplementedError

    def call_at(self, when: datetime, callback: Callback, *, name: str = "", background: bool = False) -> TimerHandle:
        """Run `callback` at `when` (or at once if it has passed).

        `background` marks recurring work (SOP schedules) that does not keep a
        simulation without an `until` running.
        """
        raise NotImplementedError

    def call_later(self, delay: float | timedelta, callback: Callback, *, name: str = "") -> TimerHandle:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        return self.call_at(self.now() + timedelta(seconds=seconds), callback, name=name)


async def _run_logged(timer: _Timer) -> None:
    try:
        await timer.callback()
    except Exception:
        log.exception("timer %s failed", timer.name or timer.callback)


class RealClock(Clock):
    """Wall-clock time; each timer is a task sleeping on the event loop."""

    def __init__(self, tz: tzinfo) -> None:
        super().__init__(tz)
        self._seq = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def call_at(self, when: datetime, callback: Callback, *, name: str = "", background: bool = False) -> TimerHandle:
        timer = _Timer(when, next(self._seq), callback, name, background)

        async def wait_and_run() -> None:
            # Re-check after waking: the wall clock may have been adjusted meanwhile.
            while (delay := (timer.when - self.now()).total_seconds()) > 0:
                await asyncio.sleep(min(delay, 60.0))
            await _run_logged(timer)

        task = asyncio.get_running_loop().create_task(wait_and_run(), name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return TimerHandle(timer, task)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class VirtualClock(Clock):
    """Simulated time that moves only when `advance_to` / `run_until_idle` is awaited.

    Callbacks due at the same instant run in the order they were scheduled, each
    awaited to completion, so a simulation is deterministic.
    """

    def __init__(self, start: datetime, tz: tzinfo | None = None) -> None:
        super().__init__(tz or start.tzinfo)  # type: ignore[arg-type]
        if start.tzinfo is None:
            raise ValueError("the virtual clock needs an aware start time")
        self._now = start.astimezone(self.tz)
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self.settle: Callable[[], Awaitable[None]] | None = None
        """Awaited before each step: lets work running outside the clock (a plugin's background HTTP call)
        finish first, so a simulation stays deterministic however long that work really takes."""

    def now(self) -> datetime:
        return self._now

    def call_at(self, when: datetime, callback: Callback, *, name: str = "", background: bool = False) -> TimerHandle:
        timer = _Timer(max(when, self._now), next(self._seq), callback, name, background)
        heapq.heappush(self._heap, timer)
        return TimerHandle(timer)

    def next_due(self, *, include_background: bool = True) -> datetime | None:
        live = [t for t in self._heap if not t.cancelled and (include_background or not t.background)]
        return min(live).when if live else None

    async def advance_to(self, when: datetime) -> None:
        """Run every callback due up to `when`, in time order, then set the clock to `when`."""
        while True:
            if self.settle is not None:
                await self.settle()
            if not (self._heap and self._heap[0].when <= when):
                break
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.when)
            await _run_logged(timer)
        self._now = max(self._now, when.astimezone(self.tz))

    async def advance(self, delta: timedelta) -> None:
        await self.advance_to(self._now + delta)

    async def run_until_idle(self, *, limit: timedelta = timedelta(days=60)) -> None:
        """Run foreground work (sends, plugin timers) until only background schedules remain."""
        horizon = self._now + limit
        while True:
            if self.settle is not None:
                await self.settle()
            due = self.next_due(include_background=False)
            if due is None or due > horizon:
                break
            await self.advance_to(due)
