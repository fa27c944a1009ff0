"""The dashboard at a big fleet: every page timed over HTTP (Starlette's TestClient, in process).

Built directly in SQLite with a fixed seed: `rooms` rooms (完子会员0…, two accounts) of `members` members
in all, `weeks` weeks of member messages (a tenth of the rooms falling silent in the last week), sign-ins,
three bot posts a day per room (one of them the `daily.noon_topic` variant step, with its SOP delivery),
and guard records. Target: every page under 1 s.

    python -m bench.bench_dashboard [rooms members weeks]     # default 1000 50000 4
"""

from __future__ import annotations

import json
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from bench._common import machine

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.fromisoformat("2026-11-23T20:00:00+08:00")
LIMIT_S = 1.0
PAGES = ("/", "/?page=10", "/?sort=-messages", "/?q=完子会员1*", "/?account=a2&sort=change", "/?quiet=1",
         "/rooms/r1", "/variants", "/guard", "/guard?room=r5&rule=link", "/draws", "/sop")


def _t(at: datetime) -> str:
    """A time as SQLAlchemy stores it in SQLite: naive UTC text."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def populate(path: Path, rooms: int, members: int, weeks: int, seed: int = 1) -> dict[str, int]:
    """Fill the (already created) tables; returns the row counts."""
    rng = random.Random(seed)
    tz = NOW.tzinfo
    days = weeks * 7
    today = NOW.date()
    per_room = max(1, members // rooms)
    db = sqlite3.connect(path)
    counts: dict[str, int] = {}

    def insert(table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns.split(",")))
        db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        counts[table] = counts.get(table, 0) + len(rows)

    insert("core_room", "id, account, topic", [(f"r{i}", f"a{i % 2 + 1}", f"完子会员{i}") for i in range(rooms)])
    insert("core_member", "id, name", [(f"r{i}m{m}", f"成员{i}-{m}") for i in range(rooms) for m in range(per_room)])
    memberships = []
    for i in range(rooms):
        for m in range(per_room):
            joined = NOW - timedelta(days=rng.randint(0, 120), minutes=rng.randint(0, 1440))
            left = joined + timedelta(days=rng.randint(1, 30)) if rng.random() < 0.05 else None
            memberships.append((f"r{i}", f"r{i}m{m}", 0, _t(joined), None if left is None or left > NOW else _t(left)))
    insert("core_membership", "room_id, member_id, is_admin, joined_at, left_at", memberships)
    for d in range(days):
        day = today - timedelta(days=d)
        messages, signins, outbox, deliveries = [], [], [], []
        for i in range(rooms):
            falling = i % 10 == 0 and d < 7
            for _ in range(rng.randint(0, 4) if falling else rng.randint(10, 40)):
                at = datetime.combine(day, datetime.min.time(), tz) + timedelta(minutes=rng.randint(7 * 60, 23 * 60))
                if at < NOW:
                    messages.append((f"r{i}", f"r{i}m{rng.randrange(per_room)}", _t(at)))
            for m in rng.sample(range(per_room), k=per_room // 5):
                at = datetime.combine(day, datetime.min.time(), tz) + timedelta(hours=8, seconds=m)
                signins.append((f"r{i}", f"r{i}m{m}", day.isoformat(), 1, 10, _t(at)))
            for post, hour in (("morning", 8), ("noon_topic", 12), ("evening", 20)):
                at = datetime.combine(day, datetime.min.time(), tz) + timedelta(hours=hour, minutes=30)
                if at >= NOW:
                    continue
                key = f"sop:daily:{post}:r{i}:{day.isoformat()}"
                account = f"a{i % 2 + 1}"
                outbox.append((account, key, f"r{i}", "早安", "[]", "sop:daily", "sent", 1, _t(at), _t(at), _t(at)))
                if post == "noon_topic":
                    deliveries.append((account, key, "daily", post, f"r{i}", _t(at), "done", _t(at), ""))
        insert("insight_message", "room_id, member_id, at", messages)
        insert("points_signin", "room_id, member_id, day, streak, points, signed_at", signins)
        insert("core_outbox", "account, key, room_id, text, mentions, source, status, attempts, created_at, "
               "not_before, sent_at", outbox)
        insert("sop_delivery", "account, key, file, step, room_id, due_at, status, sent_at, detail", deliveries)
    rules = [("link", "链接"), ("qrcode", "二维码"), ("contact", "联系方式"), ("flood", "刷屏")]
    guard = []
    for n in range(rooms * 5):
        i, (rule, label) = rng.randrange(rooms), rng.choice(rules)
        at = NOW - timedelta(minutes=rng.randint(0, days * 1440))
        guard.append((f"r{i}", f"r{i}m{rng.randrange(per_room)}", f"e{n}", rule, label, f"{n:064x}",
                      rng.choice(["warn", "warn", "remove"]), 1, None, 0, _t(at)))
    insert("guard_record", "room_id, member_id, event_id, rule, label, evidence_hash, action, strike, actor_id, "
           "revoked, created_at", guard)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return counts


def run(rooms: int = 1_000, members: int = 50_000, weeks: int = 4, repeat: int = 3) -> dict[str, Any]:
    from bot._config import load_config
    from bot.dashboard import build_app

    folder = Path(tempfile.mkdtemp(prefix="qunbot-bench-dashboard-"))
    url = f"sqlite:///{folder}/dashboard.db"
    env = {"QUNBOT_DASHBOARD_PASSWORD": "pw"}
    build_app(REPO, load_config(REPO), db_url=url, now=lambda: NOW, environ=env)  # creates every table
    started = time.perf_counter()
    counts = populate(folder / "dashboard.db", rooms, members, weeks)
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
    return {"name": "dashboard", "machine": machine(), "rows": counts,
            "build_s": round(built, 1), "database_mb": round((folder / "dashboard.db").stat().st_size / 2**20, 1),
            "pages": pages, "target": {"every page median_s": f"<= {LIMIT_S}", "worst": worst, "met": worst <= LIMIT_S},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


if __name__ == "__main__":
    print(json.dumps(run(*(int(a) for a in sys.argv[1:])), ensure_ascii=False, indent=1))
