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

Two arrival patterns: one by one (each event awaited before the next is handed over: the most
conservative latency), and together (waves of `wave` events handed over at once, as a puppet service
delivers the 08:00 rush; they share a group commit). The same on PostgreSQL beside plain psycopg, each
sign-in one transaction at the server's default durability (synchronous_commit on) on both sides.
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
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
RAW_ROWS = [  # the outbox row's status is not "pending": the runtime's outbox leaves them alone
    "INSERT INTO points_signin (room_id, member_id, day, streak, points, signed_at) VALUES ({p}, {p}, {p}, 1, 10, {p})",
    "INSERT INTO points_ledger (room_id, member_id, amount, kind, reason, source, key, created_at) "
    "VALUES ({p}, {p}, 10, 'earn', '签到（连续 1 天）', 'points', {p}, {p})",
    "INSERT INTO points_account (room_id, member_id, balance, earned, level_rank) VALUES ({p}, {p}, 10, 10, 1) "
    "ON CONFLICT (room_id, member_id) DO UPDATE SET balance = points_account.balance + 10, "
    "earned = points_account.earned + 10",
    "INSERT INTO core_outbox (account, key, room_id, text, mentions, source, status, attempts, created_at, "
    "not_before, priority, parts) VALUES ('default', {p}, {p}, {p}, {p}, 'points', 'raw', 0, {p}, {p}, 0, '[]') "
    "ON CONFLICT (account, key) DO NOTHING",
]


def _raw_params(n: int, tag: str, when: str) -> list[tuple[Any, ...]]:
    room, member = f"raw-{tag}-g{n % 200}", f"raw-{tag}-m{n}"
    return [(room, member, when[:10], when), (room, member, f"signin:{member}:{when[:10]}", when),
            (room, member),
            (f"raw-{tag}-{n}:points:1", room, f"@成员{n} 签到成功，获得 10 积分", json.dumps([member]), when, when)]


def raw_psycopg(url: str, count: int, *, tag: str, when: str) -> float:
    """Commit `count` sign-ins' worth of rows with plain psycopg, one transaction each; sign-ins per second."""
    import psycopg

    statements = [sql.format(p="%s") for sql in RAW_ROWS]
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        for n in range(count):
            with conn.cursor() as cur:
                for sql, params in zip(statements, _raw_params(n, tag, when), strict=True):
                    cur.execute(sql, params)
            conn.commit()
        took = time.perf_counter() - began
    return count / took


def raw_commits(db: Path, count: int, *, tag: str, when: str) -> float:
    """Commit `count` sign-ins' worth of rows with plain sqlite3; returns sign-ins per second."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    began = time.perf_counter()
    statements = [sql.format(p="?") for sql in RAW_ROWS]
    for n in range(count):
        conn.execute("BEGIN")
        for sql, params in zip(statements, _raw_params(n, tag, when), strict=True):
            conn.execute(sql, params)
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


async def start_runtime(rooms: int, members: int, plugins: list[Any] | None = None, db_url: str | None = None,
                        ) -> tuple[Any, Any, Path, list[Any]]:
    """A started runtime on a fresh SQLite file (or `db_url`) with `rooms` x `members`, and the 签到 events
    they send: m0 of every room, then m1 ..., as members tap at 08:00. Returns (runtime, clock, database,
    events)."""
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
    runtime = Runtime(root, config, clock=clock, adapters={"default": adapter}, db_url=db_url or f"sqlite:///{db}",
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
    from sqlmodel import Session, func, select

    from bot._models import OutboxMessage

    with Session(runtime.engine) as session:  # queued or already sent: the outbox sends while events arrive
        replies = session.exec(select(func.count()).select_from(OutboxMessage)
                               .where(OutboxMessage.source == "reply_only")).one()
    await runtime.stop()
    await clock.aclose()
    if replies != len(events):
        raise AssertionError(f"{replies} replies for {len(events)} events")
    return len(events) / took


async def feed(runtime: Any, events: list[Any], wave: int) -> tuple[float, list[float]]:
    """Hand the events over one by one (wave 1) or `wave` at a time; (events per second, latencies in ms).

    A latency runs from the moment its event was handed over to the moment its handler committed."""
    latencies: list[float] = []

    async def one(event: Any, handed: float) -> None:
        await runtime.dispatch(event)
        latencies.append((time.perf_counter() - handed) * 1000)

    logging.disable(logging.INFO)  # one "sent" line per paced send is not the subject here
    began = time.perf_counter()
    for start in range(0, len(events), wave):
        handed = time.perf_counter()
        if wave == 1:
            await one(events[start], handed)
        else:
            await asyncio.gather(*(one(event, handed) for event in events[start:start + wave]))
    took = time.perf_counter() - began
    logging.disable(logging.NOTSET)
    latencies.sort()
    return len(events) / took, latencies


async def through_runtime(rooms: int, members: int, wave: int, db_url: str | None = None,
                          raw: Any = None) -> dict[str, Any]:
    """Sign everyone in through a fresh runtime; with `raw(db_url_or_file, count, tag, when)` also the plain
    driver's rate on the same database just before and after. Checks every sign-in and reply landed."""
    from sqlalchemy import text
    from sqlmodel import Session, col, select

    from bot._models import OutboxMessage

    runtime, clock, db, events = await start_runtime(rooms, members, db_url=db_url)
    target = db_url or db
    now = clock.now()
    count = len(events)
    figures: dict[str, Any] = {}
    if raw is not None:
        figures["raw_before"] = raw(target, count, tag="a", when=(now - timedelta(days=30)).isoformat())
    rate, latencies = await feed(runtime, events, wave)
    with Session(runtime.engine) as session:
        signins = session.execute(text("SELECT count(*) FROM points_signin WHERE member_id NOT LIKE 'raw-%'")).one()[0]
        mentions = session.exec(select(OutboxMessage.mentions).where(
            OutboxMessage.source == "points", col(OutboxMessage.key).not_like("raw-%"))).all()
    acknowledged = {member for row in mentions for member in row}
    replies = len(mentions)
    await runtime.stop()
    await clock.aclose()
    if raw is not None:
        figures["raw_after"] = raw(target, count, tag="b", when=(now - timedelta(days=20)).isoformat())
    if signins != count or len(acknowledged) != count:
        raise AssertionError(f"{signins} sign-ins and {len(acknowledged)} acknowledged of {count} members")
    figures.update(rate=rate, p50=percentile(latencies, 50), p99=percentile(latencies, 99), max=latencies[-1],
                   replies=replies)
    return figures


def postgres_database() -> tuple[str, Any] | None:
    """A throwaway database on the local PostgreSQL: (url, drop); None if it is not there."""
    import uuid

    try:
        import psycopg
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception:
        return None
    name = f"qunbot_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


async def run(rooms: int = 200, members: int = 100, wave: int = 20, pg_rooms: int = 50,
              progress: Any = lambda _: None) -> Result:
    count = rooms * members
    alone = await through_runtime(rooms, members, 1, raw=raw_commits)
    raw = (alone["raw_before"] + alone["raw_after"]) / 2
    progress(f"one by one: {alone['rate']:,.0f} sign-ins/s; raw sqlite3 {alone['raw_before']:,.0f} before, "
             f"{alone['raw_after']:,.0f} after")
    together = await through_runtime(rooms, members, wave)
    progress(f"{wave} at a time: {together['rate']:,.0f} sign-ins/s, p99 {together['p99']:.1f} ms "
             f"({together['replies']} merged replies)")
    ceiling = await runtime_only(rooms, members)
    progress(f"runtime with a reply-only handler: {ceiling:,.0f} events/s")
    figures: dict[str, Any] = {
        "signins": count, "rooms": rooms, "members_per_room": members, "wave": wave,
        "events_per_s": rounded(alone["rate"]), "latency_p50_ms": rounded(alone["p50"]),
        "latency_p99_ms": rounded(alone["p99"]), "latency_max_ms": rounded(alone["max"]),
        "raw_sqlite_before_per_s": rounded(alone["raw_before"]), "raw_sqlite_after_per_s": rounded(alone["raw_after"]),
        "ratio_to_raw": rounded(alone["rate"] / raw),
        "together_events_per_s": rounded(together["rate"]), "together_latency_p50_ms": rounded(together["p50"]),
        "together_latency_p99_ms": rounded(together["p99"]), "together_ratio_to_raw": rounded(together["rate"] / raw),
        "reply_only_handler_events_per_s": rounded(ceiling), "reply_only_ratio_to_raw": rounded(ceiling / raw),
    }
    targets = [Target("sign-ins together / raw sqlite3", rounded(together["rate"] / raw), 0.5),
               Target("sign-ins together, p99 latency ms", rounded(together["p99"]), 20, at_most=True),
               Target("sign-ins one by one / raw sqlite3", rounded(alone["rate"] / raw), 0.5),
               Target("sign-ins one by one, p99 latency ms", rounded(alone["p99"]), 20, at_most=True)]
    database = postgres_database()
    notes = []
    if database is None:
        notes.append("PostgreSQL at 127.0.0.1:5432 unreachable: its comparison was skipped")
    else:
        url, drop = database
        try:
            pg = await through_runtime(pg_rooms, members, wave, db_url=url, raw=raw_psycopg)
        finally:
            drop()
        pg_raw = (pg["raw_before"] + pg["raw_after"]) / 2
        progress(f"PostgreSQL {wave} at a time: {pg['rate']:,.0f} sign-ins/s, p99 {pg['p99']:.1f} ms; "
                 f"plain psycopg {pg_raw:,.0f} /s")
        figures.update({"pg_signins": pg_rooms * members, "pg_together_events_per_s": rounded(pg["rate"]),
                        "pg_together_latency_p99_ms": rounded(pg["p99"]), "pg_raw_psycopg_per_s": rounded(pg_raw),
                        "pg_ratio_to_raw": rounded(pg["rate"] / pg_raw)})
        targets += [Target("PostgreSQL sign-ins together / raw psycopg", rounded(pg["rate"] / pg_raw), 0.5),
                    Target("PostgreSQL together, p99 latency ms", rounded(pg["p99"]), 20, at_most=True)]
    result = Result("signin", figures, targets, notes)
    return result


if __name__ == "__main__":
    print(asyncio.run(run(*(int(a) for a in sys.argv[1:]), progress=print)).as_json())
