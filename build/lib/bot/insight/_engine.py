"""The insight engine: records when members speak and recomputes tags and stages on a schedule.

It runs beside the plugins (like the SOP engine) when the `insight` plugin is enabled: a runtime
listener writes one `insight_message` row per room message (time only, no text), and a background
timer on the bot clock recomputes every `recompute_every`, aligned to the local day.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from bot._clock import TimerHandle
from bot._db import session_scope
from bot._events import Event, RoomMessage
from bot._runtime import Runtime
from bot.insight._models import InsightMessage
from bot.insight._service import InsightService

log = logging.getLogger("qunbot.insight")


class InsightEngine:
    def __init__(self, runtime: Runtime, service: InsightService) -> None:
        self.rt = runtime
        self.service = service
        self._timer: TimerHandle | None = None

    async def start(self, runtime: Runtime) -> None:
        for adapter in runtime.adapters.values():
            me = await adapter.self_member()
            if me is not None:
                self.service.exclude.add(me.id)
        runtime.listeners.append(self._on_event)
        self._arm()

    async def stop(self) -> None:
        if self._on_event in self.rt.listeners:
            self.rt.listeners.remove(self._on_event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, RoomMessage) and event.sender.id not in self.service.exclude:
            with session_scope(self.rt.engine) as session:
                session.add(InsightMessage(room_id=event.room_id, member_id=event.sender.id, at=event.time))

    def next_run(self, now: datetime) -> datetime:
        """The next multiple of the interval counted from local midnight (1h: on the hour)."""
        local = now.astimezone(self.service.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        step = self.service.config.interval
        slots = (local - midnight) // step + 1
        return midnight + slots * step

    def _arm(self) -> None:
        self._timer = self.rt.clock.call_at(self.next_run(self.rt.now()), self._run, name="insight:recompute",
                                            background=True)

    async def _run(self) -> None:
        self._arm()  # first: a failure below must not end the schedule
        await asyncio.to_thread(self.recompute_now)  # seconds for a big community: keep the bot answering

    def recompute_now(self) -> int:
        now = self.rt.now()
        try:
            with session_scope(self.rt.engine) as session:
                count = self.service.recompute(session, now)
                self.service.prune(session, now)
        except Exception:
            log.exception("insight recompute failed; the previous tags stay")
            return 0
        log.info("insight: tags and stages recomputed for %d member(s)", count)
        return count


def make_engine(runtime: Runtime) -> InsightEngine | None:
    """Component factory: an engine when the insight plugin is enabled."""
    plugin = runtime.plugins.get("insight")
    if plugin is None or not isinstance(plugin.service, InsightService):
        return None
    return InsightEngine(runtime, plugin.service)


