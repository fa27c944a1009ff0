"""A whole bot on a virtual clock against a simulated WeChat.

`qunbot simulate`, `qunbot chat` and `bot.testing` all build one of these, so
what a plugin author tests is what the simulator prints is what runs live.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from bot._clock import VirtualClock
from bot._config import ProjectConfig, load_config
from bot._events import DEFAULT_BOT, MemberRef
from bot._plugin import Plugin
from bot._runtime import Runtime
from bot.adapters._profiles import account_capabilities
from bot.adapters.simulated import SentMessage, SimulatedAdapter


class Component(Protocol):
    """Something that runs beside the plugins (the SOP engine): started after, stopped before."""

    async def start(self, runtime: Runtime) -> None: ...
    async def stop(self) -> None: ...


ComponentFactory = Callable[[Runtime], Component | None]
_component_factories: list[ComponentFactory] = []


def register_component(factory: ComponentFactory) -> None:
    """Let a runtime part (e.g. the SOP engine) attach itself to every bot this module builds."""
    if factory not in _component_factories:
        _component_factories.append(factory)


def build_components(runtime: Runtime) -> list[Component]:
    return [c for factory in _component_factories if (c := factory(runtime)) is not None]


class Simulation:
    """One simulated account with its rooms, on a virtual clock, over a private database."""

    def __init__(self, project: Path, *, start: datetime, config: ProjectConfig | None = None,
                 db_url: str | None = None, plugins: Sequence[Plugin] | None = None,
                 bot: MemberRef = DEFAULT_BOT, seed: int = 0,
                 on_send: Callable[[SentMessage], None] | None = None) -> None:
        self.project = project
        self.config = config if config is not None else load_config(project)
        self.clock = VirtualClock(start.astimezone(self.config.bot.tz))
        self.account = self.config.accounts[0].id
        self.adapter = SimulatedAdapter(self.account, self.clock, bot=bot, on_send=on_send,
                                        capabilities=account_capabilities(self.config.accounts[0]))
        self._tmp: str | None = None
        if db_url is None:
            self._tmp = tempfile.mkdtemp(prefix="qunbot-sim-")
            db_url = f"sqlite:///{self._tmp}/sim.db"
        self.db_url = db_url
        self._plugins = plugins
        self._seed = seed
        self.runtime: Runtime | None = None
        self._components: list[Component] = []

    def make_runtime(self) -> Runtime:
        return Runtime(self.project, self.config, clock=self.clock, adapters={self.account: self.adapter},
                       db_url=self.db_url, plugins=self._plugins, seed=self._seed)

    async def start(self) -> Runtime:
        self.runtime = self.make_runtime()
        self.clock.settle = self.runtime.background_idle
        await self.runtime.start()
        self._components = build_components(self.runtime)
        for component in self._components:
            await component.start(self.runtime)
        return self.runtime

    async def stop(self, *, cleanup: bool = True) -> None:
        for component in reversed(self._components):
            await component.stop()
        self._components = []
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None
        if cleanup and self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def crash_and_restart(self) -> Runtime:
        """Drop the runtime without a clean shutdown (timers vanish, nothing flushed), then start anew."""
        assert self.runtime is not None
        for outbox in self.runtime._outboxes.values():
            outbox.stop()
        self.runtime.tasks.disarm_all()
        for component in self._components:
            await component.stop()
        self.runtime.engine.dispose()
        self.clock._heap.clear()
        return await self.start()

    async def advance_to(self, when: datetime) -> None:
        await self.clock.advance_to(when)

    async def advance(self, delta: timedelta) -> None:
        await self.clock.advance(delta)

    async def drain(self) -> None:
        """Write what is batched and send everything queued, moving the clock only as far as pacing requires."""
        assert self.runtime is not None
        await self.runtime.background_idle()
        self.runtime.members.flush_speakers()
        outbox = self.runtime.outbox(self.account)
        while outbox.pending_count():
            due = outbox.next_wakeup
            if due is None:
                break
            await self.clock.advance_to(max(due, self.clock.now()))

    async def settle(self) -> None:
        """Let queued sends and one-shot timers finish (background schedules stay pending)."""
        await self.clock.run_until_idle()
import bot._retention  # noqa: E402  (attaches the daily pruning of finished work)
import bot.sop  # noqa: E402, F401  (attaches the SOP engine; it imports this module)
