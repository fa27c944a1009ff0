"""The dashboard at a big fleet: every page timed over HTTP (Starlette's TestClient, in process).

Built directly in SQLite with a fixed seed: `rooms` rooms (完子会员0…, two accounts) of `members` members
in all, `weeks` weeks of member messages (a tenth of the rooms falling silent in the last week), sign-ins,
three bot posts a day per room (one of them the `daily.noon_topic` variant step, with its SOP delivery),
and guard records. Target: every page under 1 s.

    python -m bench.bench_dashboard [rooms members weeks]     # default 1000 50000 4, a new SQLite file
    python -m bench.bench_dashboard --db postgresql://…/empty  # the same in an empty PostgreSQL database
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from bench._common import machine

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.fromisoformat("2026-11-23T20:00:00+08:00")
LIMIT_S = 1.0
PAGES = ("/", "/?page=10", "/?sort=-messages", "/?q=完子会员1*", "/?account=a2&sort=change", "/?quiet=1",
         "/rooms/r1", "/variants", "/guard", "/guard?room=r5&rule=link", "/draws", "/sop")


def populate(engine: Engine, rooms: int, members: int, weeks: int, seed: int = 1) -> dict[str, int]:
    """Fill the (already created) tables through SQLAlchemy Core, so the same rows go to SQLite or PostgreSQL."""
    from sqlmodel import SQLModel

    rng = random.Random(seed)
    tz = NOW.tzinfo
    days = weeks * 7
    today = NOW.date()
    per_room = max(1, members // rooms)
    tables = SQLModel.metadata.tables
    counts: dict[str, int] = {}

    def insert(table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            with engine.begin() as conn:
                conn.execute(tables[table].insert(), rows)
        counts[table] = counts.get(table, 0) + len(rows)

    insert("core_room", [{"id": f"r{i}", "account": f"a{i % 2 + 1}", "topic": f"完子会员{i}"} for i in range(rooms)])
    insert("core_member", [{"id": f"r{i}m{m}", "name": f"成员{i}-{m}"} for i in range(rooms) for m in range(per_room)])
    memberships = []
    for i in range(rooms):
        for m in range(per_room):
            joined = NOW - timedelta(days=rng.randint(0, 120), minutes=rng.randint(0, 1440))
            left = joined + timedelta(days=rng.randint(1, 30)) if rng.random() < 0.05 else None
            memberships.append({"room_id": f"r{i}", "member_id": f"r{i}m{m}", "is_admin": False, "joined_at": joined,
                                "left_at": None if left is None or left > NOW else left})
    insert("core_membership", memberships)
    for d in range(days):
        day = today - timedelta(days=d)
        midnight = datetime.combine(day, datetime.min.time(), tz)
        messages, signins, outbox, deliveries = [], [], [], []
        for i in range(rooms):
            falling = i % 10 == 0 and d < 7
            for _ in range(rng.randint(0, 4) if falling else rng.randint(10, 40)):
                at = midnight + timedelta(minutes=rng.randint(7 * 60, 23 * 60))
                if at < NOW:
                    messages.append({"room_id": f"r{i}", "member_id": f"r{i}m{rng.randrange(per_room)}", "at": at})
            for m in rng.sample(range(per_room), k=per_room // 5):
                signins.append({"room_id": f"r{i}", "member_id": f"r{i}m{m}", "day": day, "streak": 1, "points": 10,
                                "signed_at": midnight + timedelta(hours=8, seconds=m)})
            for post, hour in (("morning", 8), ("noon_topic", 12), ("evening", 20)):
                at = midnight + timedelta(hours=hour, minutes=30)
                if at >= NOW:
                    continue
                key, account = f"sop:daily:{post}:r{i}:{day.isoformat()}", f"a{i % 2 + 1}"
                outbox.append({"account": account, "key": key, "room_id": f"r{i}", "text": "早安", "mentions": [],
                               "source": "sop:daily", "status": "sent", "attempts": 1, "created_at": at,
                               "not_before": at, "sent_at": at})
                if post == "noon_topic":
                    deliveries.append({"account": account, "key": key, "file": "daily", "step": post,
                                       "room_id": f"r{i}", "due_at": at, "status": "done", "sent_at": at, "detail": ""})
        insert("insight_message", messages)
        insert("points_signin", signins)
        insert("core_outbox", outbox)
        insert("sop_delivery", deliveries)
    rules = [("link", "链接"), ("qrcode", "二维码"), ("contact", "联系方式"), ("flood", "刷屏")]
    guard = []
    for n in range(rooms * 5):
        i, (rule, label) = rng.randrange(rooms), rng.choice(rules)
        guard.append({"room_id": f"r{i}", "member_id": f"r{i}m{rng.randrange(per_room)}", "event_id": f"e{n}",
                      "rule": rule, "label": label, "evidence_hash": f"{n:064x}",
                      "action": rng.choice(["warn", "warn", "remove"]), "strike": 1, "actor_id": None,
                      "revoked": False, "created_at": NOW - timedelta(minutes=rng.randint(0, days * 1440))})
    insert("guard_record", guard)
    # A settled database: statistics for the planner, and on PostgreSQL the visibility map that autovacuum keeps
    # for insert-only tables (without it every index-only count also reads the table).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
    return counts


def run(rooms: int = 1_000, members: int = 50_000, weeks: int = 4, repeat: int = 3, db: str | None = None,
        ) -> dict[str, Any]:
    """Build the fleet in `db` (an empty database; default a new SQLite file) and time every page."""
    from bot._config import load_config
    from bot._db import make_engine
    from bot.dashboard import build_app

    folder = Path(tempfile.mkdtemp(prefix="qunbot-bench-dashboard-"))
    url = db or f"sqlite:///{folder}/dashboard.db"
    env = {"QUNBOT_DASHBOARD_PASSWORD": "pw"}
    build_app(REPO, load_config(REPO), db_url=url, now=lambda: NOW, environ=env)  # creates every table
    started = time.perf_counter()
    engine = make_engine(url)
    counts = populate(engine, rooms, members, weeks)
    built = time.perf_counter() - started
    client = TestClient(build_app(REPO, load_config(REPO), db_url=url, now=lambda: NOW, environ=env))
    client.post("/login", data={"password": "pw"})
    pages: dict[str, dict[str, float]] = {}
    for path in PAGES:
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - began)
            assert response.status_code == 200 and "<main>" in response.text, path
        pages[path] = {"first_s": round(times[0], 3), "median_s": round(statistics.median(times), 3)}
    worst = max(p["median_s"] for p in pages.values())
    size = (folder / "dashboard.db").stat().st_size / 2**20 if db is None else None
    return {"name": "dashboard", "machine": machine(), "database": engine.dialect.name, "rows": counts,
            "build_s": round(built, 1), "database_mb": None if size is None else round(size, 1),
            "pages": pages, "target": {"every page median_s": f"<= {LIMIT_S}", "worst": worst, "met": worst <= LIMIT_S},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, help="rooms members weeks (default 1000 50000 4)")
    parser.add_argument("--db", help="an empty database to build in (e.g. a PostgreSQL URL); default a new SQLite file")
    args = parser.parse_args()
    print(json.dumps(run(*args.sizes, db=args.db), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
