"""Soak: many simulated days of the sample project in many rooms, to see whether a year on one database
stays as fast and as small as its first days.

The repository's own project (sample SOPs, every enabled plugin, default pacing and retention) runs on a
virtual clock over SQLite. Every room is a 完子会员 group (the daily and onboarding SOPs target them); each
day a few members sign in and chat, one newcomer joins (onboarding), and the daily posts go out. Reported:
the wall time of each simulated day and the database size, early against late, and the rows kept.

    python -m bench.bench_soak                    # 90 days x 200 rooms (tens of minutes on 2 cores)
    python -m bench.bench_soak --days 20 --rooms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import Result, Target, rounded
from bot._runtime import Runtime
from bot._simulation import Simulation
from bot.adapters._profiles import account_capabilities
from bot.adapters.simulated import SimulatedAdapter

REPO = Path(__file__).resolve().parent.parent
CHATTER = ("早", "哈哈哈", "今天好冷", "这个精华用着不错", "晚上好", "收到", "谢谢群主", "周末愉快")


def _db_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6


class _Fleet(Simulation):
    """The simulation with one simulated account per `rooms_per_account` rooms, as a brand would run them:
    one account alone cannot send 200 rooms' daily posts within the pacing (it skips them as late)."""

    def __init__(self, project: Path, **kwargs: Any) -> None:
        super().__init__(project, **kwargs)
        self.adapters = {self.account: self.adapter}
        for account in self.config.accounts[1:]:
            self.adapters[account.id] = SimulatedAdapter(account.id, self.clock,
                                                         capabilities=account_capabilities(account))

    def make_runtime(self) -> Runtime:
        return Runtime(self.project, self.config, clock=self.clock, adapters=self.adapters, db_url=self.db_url,
                       plugins=self._plugins, seed=self._seed)


async def run(days: int = 90, rooms: int = 200, members: int = 30, signins: int = 3, chatter: int = 3,
              rooms_per_account: int = 20, retention: dict[str, str] | None = None,
              progress: Any = lambda _: None) -> Result:
    from sqlalchemy import func
    from sqlmodel import Session, select

    from bot._config import load_config
    from bot._events import MemberRef
    from bot._models import OutboxMessage, ScheduledTask
    from bot.sop._models import SopDelivery

    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    db = root / "soak.db"
    config = load_config(REPO)
    if retention:  # shorter windows show the plateau within a shorter run
        config = config.model_copy(update={"retention": config.retention.model_copy(update=retention)})
    accounts = [f"a{n:02d}" for n in range(max(1, math.ceil(rooms / rooms_per_account)))]
    template = config.accounts[0]
    config = config.model_copy(update={"accounts": [template.model_copy(update={"id": a}) for a in accounts]})
    start = datetime(2026, 1, 5, 0, 0, tzinfo=config.bot.tz)
    sim = _Fleet(REPO, start=start, config=config, db_url=f"sqlite:///{db}", seed=7)
    rng = random.Random(7)
    ids = [f"g{r:03d}" for r in range(rooms)]
    for n, room in enumerate(ids):
        sim.adapters[accounts[n // rooms_per_account]].add_room(
            room, f"完子会员{room}群", members=[MemberRef(f"{room}-m{m:02d}", f"成员{m}") for m in range(members)],
            admins=[f"{room}-m00"])
    logging.getLogger("qunbot").setLevel(logging.ERROR)  # late posts are counted below, not logged one by one
    await sim.start()
    per_day: list[float] = []   # wall seconds
    cpu_day: list[float] = []   # this process's CPU seconds: what the database costs, whatever else runs
    sizes: dict[int, float] = {}
    try:
        for day in range(days):
            began, began_cpu = time.perf_counter(), time.process_time()
            base = start + timedelta(days=day)
            await sim.advance_to(base + timedelta(hours=9))          # the 08:00 posts go out
            for n, room in enumerate(ids):
                adapter = sim.adapters[accounts[n // rooms_per_account]]
                for m in rng.sample(range(1, members), signins):
                    await adapter.say(room, f"{room}-m{m:02d}", "签到")
                for _ in range(chatter):
                    await adapter.say(room, f"{room}-m{rng.randrange(1, members):02d}", rng.choice(CHATTER))
                await adapter.join(room, [MemberRef(f"{room}-d{day:03d}", f"新人{day}")], inviter=f"{room}-m01")
            await sim.advance_to(base + timedelta(days=1))            # noon and night posts, timers, pruning
            per_day.append(time.perf_counter() - began)
            cpu_day.append(time.process_time() - began_cpu)
            if day in (0, days // 3, days // 2, 2 * days // 3, days - 1) or (day + 1) % 10 == 0:
                sizes[day + 1] = _db_mb(db)
                progress(f"day {day + 1}: {per_day[-1]:.2f} s ({cpu_day[-1]:.2f} s CPU), "
                         f"database {sizes[day + 1]:.1f} MB")
        assert sim.runtime is not None
        with Session(sim.runtime.engine) as session:
            kept = {name: session.exec(select(func.count()).select_from(model)).one()
                    for name, model in (("core_outbox", OutboxMessage), ("sop_delivery", SopDelivery),
                                        ("core_scheduled_task", ScheduledTask))}
            blank = session.exec(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.text == "")).one()
            statuses = dict(session.exec(select(OutboxMessage.status, func.count())
                                         .group_by(OutboxMessage.status)).all())
    finally:
        await sim.stop()
    window = max(1, min(5, days // 4))

    def early_late(values: list[float]) -> tuple[float, float]:  # day 1 also warms caches: days 2.. vs the last
        return sum(values[1:1 + window]) / window, sum(values[-window:]) / window

    early, late = early_late(per_day)
    early_cpu, late_cpu = early_late(cpu_day)
    figures = {
        "days": days, "rooms": rooms, "accounts": len(accounts), "retention": retention or "defaults",
        "seconds_per_day_early": rounded(early, 2), "seconds_per_day_late": rounded(late, 2),
        "late_over_early": rounded(late / early, 2),
        "cpu_seconds_per_day_early": rounded(early_cpu, 2), "cpu_seconds_per_day_late": rounded(late_cpu, 2),
        "cpu_late_over_early": rounded(late_cpu / early_cpu, 2),
        "cpu_seconds_per_day": [rounded(v, 2) for v in cpu_day],
        "database_mb": {str(k): rounded(v, 1) for k, v in sizes.items()},
        "rows_kept": kept, "outbox_texts_blanked": blank, "outbox_statuses_kept": statuses,
    }
    return Result("soak", figures, [
        Target("CPU time per simulated day, last days / first days", figures["cpu_late_over_early"], 1.5,
               at_most=True),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--short-retention", action="store_true",
                        help="keep finished work 8-15 days instead of the defaults, to see the database level off")
    args = parser.parse_args()
    short = {"sent_texts": "8d", "outbox": "15d", "deliveries": "15d", "tasks": "8d"} if args.short_retention else None
    result = asyncio.run(run(days=args.days, rooms=args.rooms, retention=short,
                             progress=lambda line: print(f"  soak: {line}", file=sys.stderr, flush=True)))
    print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
