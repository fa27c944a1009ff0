"""A balanced fleet: 40 accounts over 4 real `qunbot run` processes on PostgreSQL, one killed with kill -9,
one added, one drained (SIGUSR1), while every account fans out. Times to balance, accounts moved, and
what reached WeChat: every message once. Needs the PostgreSQL of docs/scaling.md (default: the local
test server, where a throwaway database is created and dropped)."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._common import Result, Target

ADMIN_URL = os.environ.get("QUNBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
SCALE = Path(__file__).resolve().parents[1] / "tests" / "scale"


async def run(accounts: int = 40, rooms: int = 30, lease_ttl: float = 8.0, heartbeat: float = 1.0,
              progress: Any = lambda _: None) -> Result:
    import psycopg

    sys.path.insert(0, str(SCALE))
    from fleet import run_fleet

    name = f"qunbot_bench_{uuid.uuid4().hex[:10]}"
    base = ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            progress(f"{accounts} accounts x {rooms} rooms, 4 processes, lease {lease_ttl:g}s, "
                     f"heartbeat {heartbeat:g}s")
            fleet = run_fleet(Path(tempfile.mkdtemp(prefix="bench-fleet-")), f"{base}/{name}", accounts=accounts,
                              rooms=rooms, lease_ttl=lease_ttl, heartbeat=heartbeat)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures: dict[str, float | int | str] = dict(fleet.figures)
    for phase, counts in fleet.settled.items():
        figures[f"{phase}: accounts per process"] = " / ".join(str(c) for c in sorted(counts.values()))
    each = accounts // 4
    return Result("fleet", figures, targets=[
        Target("duplicates (messages sent twice)", fleet.figures["duplicates"], 0, at_most=True),
        Target("lost (messages never sent)", fleet.figures["lost"], 0, at_most=True),
        Target("kill -9: seconds to balance (lease_ttl + 3 heartbeats)", fleet.figures["kill -9: seconds to balance"],
               lease_ttl + 3 * heartbeat, at_most=True),
        Target("drain: seconds to balance (3 heartbeats)", fleet.figures["drain (SIGUSR1): seconds to balance"],
               3 * heartbeat, at_most=True),
        Target("kill -9: accounts moved (the dead one's)", fleet.figures["kill -9: accounts moved"], each,
               at_most=True),
        Target("add: accounts moved (the newcomer's share)", fleet.figures["add: accounts moved"], each,
               at_most=True),
    ], notes=["times to balance are from the event (kill, launch of the new process, SIGUSR1) until the lease "
              "table shows every account held and each process at floor or ceil of accounts / processes"])
