"""Insight at the size of a big community: one recompute of every member's tags and stage, and the
dashboard pages that read them.

`rooms` rooms of `members` members each, 30 days of `per_day` messages per room (member and minute
drawn with a fixed seed), a sign-in table of the same shape. Measured: one full recompute (what the
hourly schedule runs), one member's fresh tags (what an SOP step or a lottery entry asks), and the
overview and room pages rendered over HTTP in process.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session
from starlette.testclient import TestClient

import bot.insight  # noqa: F401  (insight tables)
from bot._config import ProjectConfig
from bot._db import make_engine
from bot._migrations import upgrade
from bot._models import Member, Membership, Room
from bot.dashboard._app import Dashboard, create_app
from bot.insight import InsightMessage, InsightService

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)


LIMITS = {"recompute_s": 60, "one_member_tags_ms": 500, "room_page_s": 5}
"""Targets (at most): the hourly recompute well inside its hour, eligibility checks and a page quick."""


def populate(url: str, rooms: int, members: int, per_day: int) -> Any:
    engine = make_engine(url)
    upgrade(engine, {})
    rng = random.Random(0)
    with Session(engine) as session:
        for r in range(rooms):
            room = f"r{r}"
            session.add(Room(id=room, account="default", topic=f"客户群{r:03d}"))
            ids = [f"{room}m{m}" for m in range(members)]
            session.add_all(Member(id=i, name=f"成员{i}") for i in ids)
            session.add_all(Membership(room_id=room, member_id=i, joined_at=NOW - timedelta(days=rng.randint(0, 90)),
                                       inviter_id=rng.choice(ids) if rng.random() < 0.3 else None) for i in ids)
            rows = []
            for day in range(30):
                for _ in range(per_day):
                    at = NOW - timedelta(days=day, minutes=rng.randint(0, 1439))
                    rows.append({"room_id": room, "member_id": rng.choice(ids[: members // 3]), "at": at})
            session.execute(InsightMessage.__table__.insert(), rows)
        session.commit()
    return engine


def run(rooms: int = 5, members: int = 2_000, per_day: int = 2_000) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="qunbot-bench-insight-")
    url = f"sqlite:///{folder}/insight.db"
    engine = populate(url, rooms, members, per_day)
    service = InsightService(tz=TZ)
    with Session(engine) as session:
        started = time.perf_counter()
        count = service.recompute(session, NOW)
        session.commit()
        recompute = time.perf_counter() - started
        started = time.perf_counter()
        service.current_tags(session, "r0", "r0m1", NOW)
        one = time.perf_counter() - started
    config = ProjectConfig()
    app = create_app(Dashboard(Path(folder), config, engine, {}, lambda: NOW), password="pw")
    client = TestClient(app)
    client.post("/login", data={"password": "pw"})
    pages = {}
    for path in ("/", "/rooms/r0"):
        started = time.perf_counter()
        assert client.get(path).status_code == 200
        pages[path] = time.perf_counter() - started
    figures = {
        "rooms": rooms, "members_per_room": members, "messages": rooms * 30 * per_day, "members_recomputed": count,
        "recompute_s": round(recompute, 3), "one_member_tags_ms": round(one * 1000, 1),
        "overview_page_s": round(pages["/"], 3), "room_page_s": round(pages["/rooms/r0"], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return {"name": "insight", "figures": figures,
            "targets": {name: {"limit": limit, "met": figures[name] <= limit} for name, limit in LIMITS.items()}}


if __name__ == "__main__":
    print(json.dumps(run(*(int(a) for a in sys.argv[1:])), ensure_ascii=False))
