"""Test plugins in a simulated group on a virtual clock (after nonebug and Errbot's testbot).

    async with BotHarness(plugins=["points"]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "签到")
        assert "签到成功" in bot.pop_text()

Every action dispatches the event and then lets the outbox send what was
queued, moving the virtual clock by the pacing gaps. Pacing defaults to zero
here so times stay where the test put them; pass `pacing=` to test pacing.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bot._config import CONFIG_FILE, ProjectConfig, parse_config
from bot._events import MemberRef
from bot._plugin import Plugin
from bot._runtime import Runtime
from bot._scenario import parse_offset
from bot._simulation import Simulation
from bot.adapters.simulated import SentMessage

NO_PACING = {"min_interval": 0, "jitter": 0, "room_interval": 0}
_NO_SOP_DIR = ".qunbot-harness-no-sop"


class HandlerFailed(AssertionError):
    """A plugin handler raised or timed out during the test. The running bot logs, rolls back and goes on;
    in a test that would read as "the bot said nothing", so `pop()` raises this, from the handler's error."""


class _Failures(logging.Handler):
    """Collects what the dispatcher logs when a handler fails (it isolates the failure; we surface it)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("plugin handler"):
            self.records.append(record)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) \
            else value
    return out


def _duration(value: str | timedelta) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_offset(value if value.startswith(("+", "-")) else f"+{value}")


class BotHarness:
    """A simulated account with rooms you populate, running the real runtime."""

    def __init__(self, project: Path | str = ".", *, plugins: Sequence[str | Plugin] | None = None,
                 settings: Mapping[str, Any] | None = None, start: str | datetime = "2026-11-23T09:00:00+08:00",
                 bot_id: str = "bot", bot_name: str | None = None, pacing: Mapping[str, Any] | None = None,
                 db_url: str | None = None, seed: int = 0, sop: bool = True, raise_errors: bool = True) -> None:
        """`project`: the folder with qunbot.toml (its plugins, templates, settings); `plugins`: only these
        (names, or Plugin objects); `settings`: qunbot.toml keys merged over the file's (`{"plugins":
        {"hello": {"words": ["hi"]}}}`); `sop=False`: do not run the project's SOP files (a plugin's tests
        need not depend on them); `raise_errors=False`: let `pop()` ignore failed handlers (see `failures`)."""
        self.project = Path(project).resolve()
        self.raise_errors = raise_errors
        self._failures = _Failures()
        raw: dict[str, Any] = {}
        if (self.project / CONFIG_FILE).exists():
            raw = tomllib.loads((self.project / CONFIG_FILE).read_text(encoding="utf-8"))
        objects = [p for p in plugins or () if isinstance(p, Plugin)]
        names = [p if isinstance(p, str) else p.name for p in plugins or ()]
        overrides: dict[str, Any] = {"pacing": dict(pacing if pacing is not None else NO_PACING)}
        if plugins is not None and not objects:
            overrides["plugins"] = {"enabled": names}
        if bot_name is not None:
            overrides["bot"] = {"name": bot_name}
        if not sop:
            overrides["sop"] = {"dir": _NO_SOP_DIR}
        raw = _merge(_merge(raw, overrides), settings or {})
        accounts = raw.pop("accounts", None)  # one simulated account, emulating what the first one can do
        kept = {key: value for key, value in (accounts or [{}])[0].items()
                if key in ("emulate", "room_quota", "max_rooms_per_post")}
        if kept:
            raw["accounts"] = [{"id": "default", **kept}]
        self.config: ProjectConfig = parse_config(raw)
        when = datetime.fromisoformat(start) if isinstance(start, str) else start
        self.sim = Simulation(self.project, start=when, config=self.config, db_url=db_url,
                              plugins=objects or None, bot=MemberRef(bot_id, self.config.bot.name), seed=seed)
        self._read = 0

    # --- set-up and life cycle -------------------------------------------------------

    def room(self, room_id: str, topic: str = "", *, members: Mapping[str, str] | Iterable[str] = (),
             admins: Iterable[str] = ()) -> None:
        """Add a room before or after start (members: {id: name} or ids)."""
        refs = [MemberRef(k, v) for k, v in members.items()] if isinstance(members, Mapping) \
            else [MemberRef(m, m) for m in members]
        self.sim.adapter.add_room(room_id, topic, members=refs, admins=admins)
        if self.sim.runtime is not None:
            self.sim.runtime.members.sync_rooms(
                self.sim.account, [s for s in self.sim.adapter.snapshots() if s.id == room_id])

    async def __aenter__(self) -> BotHarness:
        logging.getLogger("qunbot.dispatch").addHandler(self._failures)
        try:
            await self.sim.start()
        except BaseException:
            await self.sim.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        logging.getLogger("qunbot.dispatch").removeHandler(self._failures)
        await self.sim.stop()

    @property
    def runtime(self) -> Runtime:
        assert self.sim.runtime is not None, "the harness is not started"
        return self.sim.runtime

    @property
    def now(self) -> datetime:
        return self.sim.clock.now()

    def db(self) -> Session:
        """A session to inspect the database in assertions."""
        return Session(self.runtime.engine)

    async def restart(self, *, crash: bool = True) -> None:
        """Stop the bot (abruptly by default) and start it again on the same database."""
        if crash:
            await self.sim.crash_and_restart()
        else:
            await self.sim.stop(cleanup=False)
            await self.sim.start()

    # --- what members do ------------------------------------------------------------------

    async def say(self, room: str, member: str, text: str, *, mentions: Iterable[str] = (),
                  file: str | None = None, kind: str | None = None, drain: bool = True, id: str | None = None) -> None:
        """A member speaks; `file` (a path in the project) sends an image, `kind` a card ("mini_program" …);
        give the same `id` twice to simulate WeChat delivering one message twice."""
        await self.sim.adapter.say(room, member, text, mentions=mentions, file=file, kind=kind, id=id)
        if drain:
            await self.drain()

    async def mention_bot(self, room: str, member: str, text: str, *, drain: bool = True) -> None:
        """Say `@Bot text` in a room."""
        await self.say(room, member, f"@{self.config.bot.name} {text}", mentions=[self.sim.adapter.bot.id],
                       drain=drain)

    async def private(self, member: str, text: str, *, drain: bool = True, id: str | None = None) -> None:
        await self.sim.adapter.private(member, text, id=id)
        if drain:
            await self.drain()

    async def join(self, room: str, members: Mapping[str, str], *, inviter: str | None = None,
                   drain: bool = True) -> None:
        await self.sim.adapter.join(room, [MemberRef(k, v) for k, v in members.items()], inviter=inviter)
        if drain:
            await self.drain()

    async def leave(self, room: str, *member_ids: str, drain: bool = True) -> None:
        await self.sim.adapter.leave(room, member_ids)
        if drain:
            await self.drain()

    async def rename(self, room: str, member: str, alias: str, *, drain: bool = True) -> None:
        await self.sim.adapter.rename(room, member, alias)
        if drain:
            await self.drain()

    # --- time ---------------------------------------------------------------------------

    async def advance(self, duration: str | timedelta) -> None:
        """Move the clock forward ("30m", "1d", "+2h", or a timedelta), running what comes due."""
        await self.sim.advance(_duration(duration))

    async def advance_to(self, when: str | datetime) -> None:
        await self.sim.advance_to(datetime.fromisoformat(when) if isinstance(when, str) else when)

    async def drain(self) -> None:
        """Send everything queued, moving the clock only as far as pacing requires."""
        await self.sim.drain()

    async def settle(self) -> None:
        """Run every one-shot timer and send everything, however far the clock must move."""
        await self.sim.settle()

    # --- what the bot sent --------------------------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        return self.sim.adapter.sent

    @property
    def failures(self) -> list[str]:
        """What failed in plugin handlers so far (a handler that raised or timed out), oldest first."""
        return [record.getMessage() for record in self._failures.records]

    def pop_failures(self) -> list[str]:
        """The handler failures not yet reported, cleared: for a test that expects a handler to fail."""
        found = self.failures
        self._failures.records.clear()
        return found

    def pop(self) -> list[SentMessage]:
        """Messages sent since the last `pop`. Raises HandlerFailed if a handler failed meanwhile (unless
        `raise_errors=False`), so a crash shows its traceback instead of an empty reply."""
        if self.raise_errors and self._failures.records:
            record = self._failures.records[0]
            self._failures.records.clear()
            cause = record.exc_info[1] if record.exc_info else None
            raise HandlerFailed(f"{record.getMessage()}: {type(cause).__name__}: {cause}" if cause
                                else record.getMessage()) from cause
        new = self.sent[self._read:]
        self._read = len(self.sent)
        return new

    def pop_text(self) -> str:
        """The texts sent since the last pop, joined by newlines ("" if none)."""
        return "\n".join(m.text for m in self.pop())
