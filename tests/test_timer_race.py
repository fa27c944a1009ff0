"""One pending timer, fired by two processes at once on PostgreSQL, runs its handler once.

Each process runs in its own thread with its own event loop and connections, as two `qunbot run` would.
Both pass the "still pending?" read before either commits, so only the claim in the handler's transaction
(a conditional UPDATE the database serialises) can keep the handler from running twice."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from sqlmodel import select

from bot import Context, Plugin
from bot._models import ScheduledTask
from bot.testing import BotHarness

WAIT = 60.0
"""Seconds a thread waits for the other before the test fails (never reached when all is well)."""


def _plugin(runs: list[str], in_handler: threading.Event, second_fired: threading.Event) -> Plugin:
    plugin = Plugin(name="race")

    @plugin.on_fullmatch("定时").handle
    async def arm(ctx: Context) -> None:
        ctx.schedule("draw", delay=timedelta(minutes=1), key="draw-1")

    @plugin.timer("draw")
    async def draw(ctx: Context) -> None:
        runs.append(threading.current_thread().name)
        in_handler.set()
        # Hold this transaction open until the other process has read the timer as pending and gone on to
        # fire it: then both are past every check except the claim.
        assert await asyncio.to_thread(second_fired.wait, WAIT)

    return plugin


def test_one_timer_fired_by_two_processes_at_once_runs_once(pg_url):
    runs: list[str] = []
    scheduled, in_handler, second_fired = threading.Event(), threading.Event(), threading.Event()
    plugin = _plugin(runs, in_handler, second_fired)
    errors: list[BaseException] = []

    async def first() -> None:
        async with BotHarness(plugins=[plugin], db_url=pg_url) as bot:
            bot.room("g1", members=["u1"])
            await bot.say("g1", "u1", "定时")
            scheduled.set()
            await bot.advance("2m")

    async def second() -> None:
        assert await asyncio.to_thread(scheduled.wait, WAIT)
        async with BotHarness(plugins=[plugin], db_url=pg_url) as bot:   # arms the pending timer at start
            fire = bot.runtime.tasks._fire

            async def fire_seen(task, late):
                second_fired.set()                   # it read the row as pending; now it claims
                await fire(task, late)

            bot.runtime.tasks._fire = fire_seen
            assert await asyncio.to_thread(in_handler.wait, WAIT)
            await bot.advance("2m")

    def run(name: str, main) -> threading.Thread:
        def target() -> None:
            try:
                asyncio.run(main())
            except BaseException as err:
                errors.append(err)
                scheduled.set(), in_handler.set(), second_fired.set()   # let the other thread finish too
        thread = threading.Thread(target=target, name=name)
        thread.start()
        return thread

    threads = [run("first", first), run("second", second)]
    for thread in threads:
        thread.join(timeout=3 * WAIT)
    assert not errors, errors
    assert second_fired.is_set()
    assert runs == ["first"]
    from bot._db import make_engine
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(select(ScheduledTask.status)).scalar_one() == "done"
    engine.dispose()
