"""SOP scale: many rooms and daily steps, on the real clock, plus the virtual-clock fan-out numbers.

Real clock (the figures held to targets):
1. `rooms` rooms and `files` SOP files of 6 daily steps each (every file targets rooms/files rooms by a
   topic glob): wall time for the engine to validate every file and arm every step, and resident memory;
2. a burst: 10 more files, each with a sequence step for 100 rooms, due one second apart — `burst`
   posts due within the same 10 s; lateness = outbox row created - due time (p50/p99/max).

Virtual clock (kept from the first SOP bench; `python -m bench --sop-virtual`, off by default because the
week takes minutes): a simulated week of 3 posts a day, one step fanned out to 300 rooms under the
default pacing, and 2,000 members joining.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from bench._common import Result, Target, percentile, rounded, rss_mb
from bot._models import OutboxMessage
from bot.testing import BotHarness

STEP_TIMES = 6


def daily_file(group: int, hours: list[int]) -> str:
    steps = "\n".join(f'  - {{id: s{n}, at: "{hour:02d}:{17 + n:02d}", text: "第{n}条 {{{{ room.topic }}}} '
                      f'{{{{ now|cn_date }}}}"}}' for n, hour in enumerate(hours))
    return f'targets: {{topics: ["客户群{group:03d}-*"]}}\ngrace: 10m\nsteps:\n{steps}\n'


def burst_file(room_ids: list[str], start: datetime, second: int) -> str:
    return (f'targets: {{rooms: [{", ".join(room_ids)}]}}\nstart: "{start.isoformat()}"\ngrace: 10m\n'
            f'steps:\n  - {{id: flash, offset: "+{second}s", text: "限时活动开始 {{{{ room.topic }}}}"}}\n')


async def scale(rooms: int = 10_000, files: int = 100, burst: int = 1_000, *, burst_files: int = 10,
                lead: float = 5.0) -> dict[str, Any]:
    """`burst` posts in `burst_files` files due one second apart (10 files: all within the same 10 s)."""
    from bot._clock import RealClock
    from bot._config import load_config
    from bot._events import MemberRef
    from bot._runtime import Runtime
    from bot.adapters.simulated import SimulatedAdapter
    from bot.sop import SopEngine
    from bot.sop._models import SopDelivery

    per_file = rooms // files
    if burst % burst_files or burst // burst_files > per_file:
        raise ValueError(f"the burst ({burst}) must be {burst_files} files of at most {per_file} rooms")
    root = Path(tempfile.mkdtemp(prefix="bench-sop-scale-"))
    (root / "sop").mkdir()
    (root / "qunbot.toml").write_text('[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    config = load_config(root)
    clock = RealClock(config.bot.tz)
    now = clock.now()
    hours = [(now.hour + 2 + 3 * n) % 24 for n in range(STEP_TIMES)]  # none fires during the run
    for group in range(files):
        (root / "sop" / f"daily{group:03d}.yaml").write_text(daily_file(group, hours), encoding="utf-8")
    adapter = SimulatedAdapter("default", clock)
    for n in range(rooms):
        adapter.add_room(f"r{n:05d}", f"客户群{n // per_file:03d}-{n % per_file:03d}",
                         members=[MemberRef(f"m{n}", f"成员{n}")])
    runtime = Runtime(root, config, clock=clock, adapters={"default": adapter},
                      db_url=f"sqlite:///{root}/bench.db", plugins=[])
    began = time.perf_counter()
    await runtime.start()
    connect = time.perf_counter() - began
    engine = SopEngine(runtime)
    began = time.perf_counter()
    await engine.start(runtime)
    schedule = time.perf_counter() - began
    armed = len(engine._timers)
    rss_scheduled = rss_mb()
    if engine.problems:
        raise AssertionError(f"SOP files did not load: {engine.problems}")

    # the burst is due after the reload that loads it (a reload blocks the loop about as long as the start did)
    start = (clock.now() + timedelta(seconds=lead + 1.5 * schedule)).replace(microsecond=0)
    size = burst // burst_files
    for n in range(burst_files):
        ids = [f"r{n * per_file + k:05d}" for k in range(size)]
        (root / "sop" / f"burst{n}.yaml").write_text(burst_file(ids, start, n), encoding="utf-8")
    began = time.perf_counter()
    if not engine.check_files():  # what the file watcher does after an edit
        raise AssertionError("the SOP engine did not notice the burst files")
    reload = time.perf_counter() - began
    clock_after_reload = clock.now()
    await asyncio.sleep(max(0.0, (start + timedelta(seconds=burst_files) - clock.now()).total_seconds()) + 2.0)
    with Session(runtime.engine) as session:
        rows = session.exec(select(SopDelivery.due_at, OutboxMessage.created_at).join(
            OutboxMessage, (col(OutboxMessage.key) == col(SopDelivery.key))).where(
            col(SopDelivery.file).like("burst%"))).all()
        posts = session.exec(select(func.count()).select_from(OutboxMessage)).one()
    rss_end = rss_mb()
    await engine.stop()
    await runtime.stop()
    await clock.aclose()
    lateness = sorted((created - due).total_seconds() * 1000 for due, created in rows)
    expected = burst
    if len(rows) != expected or posts != expected:
        raise AssertionError(f"{len(rows)} burst posts reached the outbox ({posts} rows), expected {expected}")
    return {
        "rooms": rooms, "files": files + burst_files, "daily_steps": files * STEP_TIMES, "timers_armed": armed,
        "room_step_pairs": rooms * STEP_TIMES, "connect_s": rounded(connect), "validate_schedule_s": rounded(schedule),
        "reload_s": rounded(reload), "burst_due_after_reload_s": rounded((start - clock_after_reload).total_seconds()),
        "rss_mb_scheduled": rounded(rss_scheduled), "rss_mb_end": rounded(rss_end),
        "burst_posts": len(rows), "lateness_p50_ms": rounded(percentile(lateness, 50)),
        "lateness_p99_ms": rounded(percentile(lateness, 99)), "lateness_max_ms": rounded(lateness[-1]),
    }


# --- virtual clock --------------------------------------------------------------------------------

DAILY = """\
    targets: {topics: ["完子会员*"]}
    grace: GRACE
    steps:
      - {id: morning, at: "08:00", text: "早安 {{ now|cn_date }}"}
      - {id: noon, at: "12:30", text: 午间话题}
      - {id: night, at: "22:00", text: 晚安}
"""
JOIN = """\
    targets: {topics: ["完子会员*"]}
    grace: 1h
    steps: [{id: day1, after_join: 1d, text: "{{ member|mention }} 欢迎"}]
"""


def make_project(sop: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="bench-sop-"))
    (root / "sop").mkdir()
    (root / "qunbot.toml").write_text('[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    (root / "sop" / "x.yaml").write_text(textwrap.dedent(sop), encoding="utf-8")
    return root


async def week(rooms: int) -> dict[str, Any]:
    bot = BotHarness(make_project(DAILY.replace("GRACE", "10m")), plugins=[], start="2026-11-23T07:00:00+08:00")
    for n in range(rooms):
        bot.room(f"g{n}", f"完子会员{n}群", members={"u1": "Alice"})
    async with bot:
        began = time.perf_counter()
        await bot.advance("7d")
        took = time.perf_counter() - began
    if len(bot.sent) != rooms * 3 * 7:
        raise AssertionError(f"a week sent {len(bot.sent)} posts, expected {rooms * 21}")
    return {"week_rooms": rooms, "week_posts": len(bot.sent), "week_wall_s": rounded(took)}


async def fan_out(rooms: int, grace: str) -> dict[str, Any]:
    bot = BotHarness(make_project(DAILY.replace("GRACE", grace)), plugins=[], start="2026-11-23T07:59:00+08:00",
                     pacing={})  # the default pacing: 2 s + up to 1.5 s jitter per send
    for n in range(rooms):
        bot.room(f"g{n}", f"完子会员{n}群", members={"u1": "Alice"})
    async with bot:
        await bot.advance("2h")
        with bot.db() as session:
            skipped = session.exec(select(func.count()).select_from(OutboxMessage)
                                   .where(OutboxMessage.status == "skipped")).one()
    mornings = [m for m in bot.sent if m.text.startswith("早安")]
    if len(mornings) + skipped != rooms:
        raise AssertionError(f"fan-out: {len(mornings)} sent + {skipped} skipped != {rooms} rooms")
    last = max(m.at for m in mornings)
    first = min(m.at for m in mornings)
    key = f"fanout_{grace}"
    return {f"{key}_rooms": rooms, f"{key}_sent": len(mornings), f"{key}_skipped": skipped,
            f"{key}_last_after_min": rounded((last - first.replace(minute=0, second=0, microsecond=0))
                                             .total_seconds() / 60)}


async def joins(members: int) -> dict[str, Any]:
    bot = BotHarness(make_project(JOIN), plugins=[], start="2026-11-23T09:00:00+08:00",
                     pacing={"min_interval": 0, "jitter": 0, "room_interval": 0, "hourly_cap": 1_000_000})
    bot.room("g1", "完子会员1群", members={"owner": "群主"})
    async with bot:
        began = time.perf_counter()
        for batch in range(0, members, 100):
            await bot.join("g1", {f"m{i}": f"成员{i}" for i in range(batch, min(members, batch + 100))}, drain=False)
            await bot.advance("1m")
        joined = time.perf_counter() - began
        began = time.perf_counter()
        await bot.advance("1d")
        swept = time.perf_counter() - began
    if len(bot.sent) != members:
        raise AssertionError(f"joins: {len(bot.sent)} day-1 messages for {members} members")
    return {"joins_members": members, "joins_wall_s": rounded(joined), "joins_sweep_wall_s": rounded(swept)}


async def run(rooms: int = 10_000, files: int = 100, burst: int = 1_000, *, burst_files: int = 10,
              lead: float = 5.0, virtual: bool = False,
              week_rooms: int = 200, fan_out_rooms: int = 300, join_members: int = 2_000,
              progress: Any = lambda _: None) -> Result:
    logging.disable(logging.WARNING)  # "skipped as late" lines by the thousand would drown the numbers
    try:
        figures = await scale(rooms, files, burst, burst_files=burst_files, lead=lead)
        progress(f"SOP scale: {figures}")
        if virtual:
            for part in (week(week_rooms), fan_out(fan_out_rooms, "10m"), fan_out(fan_out_rooms, "30m"),
                         joins(join_members)):
                figures.update(await part)
                progress("SOP virtual clock: done one part")
    finally:
        logging.disable(logging.NOTSET)
    result = Result("sop", figures)
    result.targets += [
        Target("SOP validate+schedule s", figures["validate_schedule_s"], 10, at_most=True),
        Target("SOP RSS MB", figures["rss_mb_end"], 300, at_most=True),
        Target("SOP burst lateness p99 ms", figures["lateness_p99_ms"], 200, at_most=True),
    ]
    return result


if __name__ == "__main__":
    print(asyncio.run(run(*(int(a) for a in sys.argv[1:]), progress=print)).as_json())
