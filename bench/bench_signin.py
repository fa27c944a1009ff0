"""Sign-in pipeline vs the hardware: 签到 through the whole runtime, beside plain sqlite3 on the same file.

The runtime is what `qunbot run` builds (real clock, simulated adapter, the real points plugin and its
templates, a SQLite file database, the paced outbox). Members of `rooms` rooms of `members` each sign in
once; each event is awaited until its handler committed the sign-in, the ledger, the balance and the
reply in the outbox ("reply queued"), so latency is event handed to the runtime -> reply queued.

The baseline commits the same rows per sign-in (a points_signin row, a points_ledger row, the
points_account upsert and a core_outbox row, one transaction each) with plain `sqlite3` into the same
file with the same PRAGMAs, before and after the runtime run; the ratio uses their mean. Beside them,
the same events through the same runtime with a handler that only replies (no points service) show how
much of a sign-in is the runtime's own work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._common import Result, Target, percentile, rounded

REPO = Path(__file__).resolve().parent.parent


def raw_commits(db: Path, count: int, *, tag: str, when: str) -> float:
    """Commit `count` sign-ins' worth of rows with plain sqlite3; returns sign-ins per second."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    began = time.perf_counter()
    for n in range(count):
        room, member = f"raw-{tag}-g{n % 200}", f"raw-{tag}-m{n}"
        conn.execute("BEGIN")
        conn.execute("INSERT INTO points_signin (room_id, member_id, day, streak, points, signed_at) "
                     "VALUES (?, ?, ?, 1, 10, ?)", (room, member, when[:10], when))
        conn.execute("INSERT INTO points_ledger (room_id, member_id, amount, kind, reason, source, key, created_at) "
                     "VALUES (?, ?, 10, 'earn', '签到（连续 1 天）', 'points', ?, ?)",
                     (room, member, f"signin:{member}:{when[:10]}", when))
        conn.execute("INSERT INTO points_account (room_id, member_id, balance, earned, level_rank) "
                     "VALUES (?, ?, 10, 10, 1) ON CONFLICT (room_id, member_id) DO UPDATE SET "
                     "balance = balance + 10, earned = earned + 10", (room, member))
        conn.execute("INSERT INTO core_outbox (account, key, room_id, text, mentions, source, status, attempts, "
                     "created_at, not_before) VALUES ('default', ?, ?, ?, ?, 'points', 'pending', 0, ?, ?) "
                     "ON CONFLICT (account, key) DO NOTHING",
                     (f"raw-{tag}-{n}:points:1", room, f"@成员{n} 签到成功，获得 10 积分", json.dumps([member]),
                      when, when))
        conn.execute("COMMIT")
    took = time.perf_counter() - began
    conn.close()
    return count / took


def make_project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="bench-signin-"))
    (root / "qunbot.toml").write_text(
        f'templates_dir = "{REPO / "scripts_templates"}"\n[bot]\ntimezone = "Asia/Shanghai"\n'
        f'[plugins]\nenabled = ["points"]\ndirs = ["{REPO / "plugins"}"]\n', encoding="utf-8")
    return root


async def start_runtime(rooms: int, members: int, plugins: list[Any] | None = None) -> tuple[Any, Any, Path, list[Any]]:
    """A started runtime on a fresh SQLite file with `rooms` x `members`, and the 签到 events they send:
    m0 of every room, then m1 ..., as members tap at 08:00. Returns (runtime, clock, database, events)."""
    from bot._clock import RealClock
    from bot._config import load_config
    from bot._events import MemberRef, RoomMessage
    from bot._runtime import Runtime
    from bot.adapters.simulated import SimulatedAdapter

    root = make_project()
    config = load_config(root)
    clock = RealClock(config.bot.tz)
    adapter = SimulatedAdapter("default", clock)
    for r in range(rooms):
        adapter.add_room(f"g{r:03d}", f"打卡群{r}", members=[MemberRef(f"g{r:03d}-m{m:03d}", f"成员{m}")
                                                         for m in range(members)])
    db = root / "bench.db"
    runtime = Runtime(root, config, clock=clock, adapters={"default": adapter}, db_url=f"sqlite:///{db}",
                      plugins=plugins)
    await runtime.start()
    now = clock.now()
    events = [RoomMessage(account="default", id=f"e{n}", time=now, room_id=f"g{n % rooms:03d}",
                          sender=MemberRef(f"g{n % rooms:03d}-m{n // rooms:03d}", f"成员{n // rooms}"), text="签到")
              for n in range(rooms * members)]
    return runtime, clock, db, events


async def runtime_only(rooms: int, members: int) -> float:
    """The same events through the same runtime, but a handler that only replies (a template, no points
    service): how fast the runtime's own part of a sign-in goes. Returns events per second."""
    from bot import Plugin

    plugin = Plugin("reply_only")

    @plugin.on_fullmatch("签到").handle
    async def reply(ctx: Any) -> None:
        await ctx.reply(template="points/signin_ok.j2", signin={"points": 10, "streak": 1}, balance=10, tomorrow=12)

    runtime, clock, _, events = await start_runtime(rooms, members, [plugin])
    logging.disable(logging.INFO)
    began = time.perf_counter()
    for event in events:
        await runtime.dispatch(event)
    took = time.perf_counter() - began
    logging.disable(logging.NOTSET)
    pending = runtime.outbox("default").pending_count()
    await runtime.stop()
    await clock.aclose()
    if pending < len(events) - 1:  # the outbox may have sent one meanwhile
        raise AssertionError(f"{pending} replies queued for {len(events)} events")
    return len(events) / took


async def run(rooms: int = 200, members: int = 100, progress: Any = lambda _: None) -> Result:
    from sqlalchemy import text
    from sqlmodel import Session, func, select

    from bot._models import OutboxMessage

    runtime, clock, db, events = await start_runtime(rooms, members)
    count = len(events)
    now = clock.now()
    raw_before = raw_commits(db, count, tag="a", when=(now - timedelta(days=30)).isoformat())
    progress(f"raw sqlite3: {raw_before:,.0f} sign-ins/s")
    latencies = []
    logging.disable(logging.INFO)  # one "sent" line per paced send is not the subject here
    began = time.perf_counter()
    for event in events:
        start = time.perf_counter()
        await runtime.dispatch(event)
        latencies.append((time.perf_counter() - start) * 1000)
    took = time.perf_counter() - began
    logging.disable(logging.NOTSET)
    with Session(runtime.engine) as session:
        signins = session.execute(text("SELECT count(*) FROM points_signin WHERE member_id NOT LIKE 'raw-%'")).one()[0]
        replies = session.exec(select(func.count()).select_from(OutboxMessage)
                               .where(OutboxMessage.source == "points")).one()
    await runtime.stop()
    await clock.aclose()
    raw_after = raw_commits(db, count, tag="b", when=(now - timedelta(days=20)).isoformat())
    progress(f"raw sqlite3 after: {raw_after:,.0f} sign-ins/s")
    if signins != count or replies < 2 * count:  # the raw rows are in the outbox too
        raise AssertionError(f"{signins} sign-ins and {replies} points replies for {count} members")
    rate = count / took
    raw = (raw_before + raw_after) / 2
    ceiling = await runtime_only(rooms, members)
    progress(f"runtime with a reply-only handler: {ceiling:,.0f} events/s")
    latencies.sort()
    result = Result("signin", {
        "signins": count, "rooms": rooms, "members_per_room": members, "events_per_s": rounded(rate),
        "latency_p50_ms": rounded(percentile(latencies, 50)), "latency_p99_ms": rounded(percentile(latencies, 99)),
        "latency_max_ms": rounded(latencies[-1]), "raw_sqlite_before_per_s": rounded(raw_before),
        "raw_sqlite_after_per_s": rounded(raw_after), "ratio_to_raw": rounded(rate / raw),
        "reply_only_handler_events_per_s": rounded(ceiling), "reply_only_ratio_to_raw": rounded(ceiling / raw),
    })
    result.targets += [Target("sign-ins/s through the runtime", rounded(rate), 2_000),
                       Target("sign-in rate / raw sqlite3 commit rate", rounded(rate / raw), 0.25)]
    return result


if __name__ == "__main__":
    print(asyncio.run(run(*(int(a) for a in sys.argv[1:]), progress=print)).as_json())
