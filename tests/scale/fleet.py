"""The fleet scenario with real processes: 40 accounts, 4 processes, one killed, one added, one drained.

Shared by `test_fleet.py` (which asserts) and `python -m bench --only fleet` (which reports). Every
account fans out to its rooms at a slow pace the whole time, so hand-overs happen mid-queue. The
lease table is sampled all along; what reached "WeChat" is read from the file `FileWeChat` appends to.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from botproc import BotProcess, make_project, outbox_statuses, read_sent, wait_until
from sqlalchemy import func, select

from bot._db import make_engine
from bot._migrations import upgrade
from bot._models import AccountLease, ClusterNode


@dataclass
class Sample:
    at: float
    owners: dict[str, str]
    """Account -> process name (p1 …) of its live lease."""
    epochs: dict[str, int]


@dataclass
class FleetRun:
    accounts: int
    rooms: int
    figures: dict[str, float | int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    settled: dict[str, Counter[str]] = field(default_factory=dict)
    """Phase -> accounts per process once balanced."""
    sent: list[dict] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    drained_exit: int | None = None
    lapses: int = 0
    """Log lines saying a process lost or let lapse a lease (a machine starved past lease_ttl)."""


class Watcher:
    """Samples the lease table; waits for a condition on it without fixed sleeps."""

    def __init__(self, db_url: str, run: FleetRun, procs: list[BotProcess]) -> None:
        self.engine = make_engine(db_url)
        upgrade(self.engine, {"core": []})  # as the processes do, so the tables are there to watch from the start
        self.run = run
        self.procs = procs

    def sample(self) -> Sample:
        with self.engine.connect() as conn:
            now = conn.execute(select(func.clock_timestamp())).scalar_one()
            rows = conn.execute(select(AccountLease.account, AccountLease.owner, AccountLease.epoch,
                                       AccountLease.expires_at)).all()
        sample = Sample(time.monotonic(), {a: o.split("/")[0] for a, o, _, until in rows if until > now},
                        {a: e for a, _, e, _ in rows})
        self.run.samples.append(sample)
        return sample

    def live_nodes(self) -> set[str]:
        with self.engine.connect() as conn:
            now = conn.execute(select(func.clock_timestamp())).scalar_one()
            return {n.split("/")[0] for n in conn.execute(select(ClusterNode.node).where(
                ClusterNode.expires_at > now, ClusterNode.draining.is_(False))).scalars()}

    def balanced(self, names: set[str], timeout: float, what: str) -> tuple[float, Sample]:
        """Wait until every account is held, each by one of `names`, floor or ceil of accounts / len(names)."""
        began = time.monotonic()
        low, high = self.run.accounts // len(names), -(-self.run.accounts // len(names))
        while True:
            sample = self.sample()
            counts = Counter(sample.owners.values())
            if (len(sample.owners) == self.run.accounts and set(counts) == names
                    and all(low <= c <= high for c in counts.values())):
                self.run.settled[what] = counts
                return time.monotonic() - began, sample
            if time.monotonic() - began > timeout:
                logs = "\n".join(f"--- {p.name} ---\n{p.log()[-3000:]}" for p in self.procs)
                raise AssertionError(f"not balanced after {timeout}s ({what}): {dict(counts)}, "
                                     f"{len(sample.owners)} held\n{logs}")
            time.sleep(0.1)


def longest_unheld(samples: list[Sample], accounts: int) -> float:
    """The longest time any account went without a live lease, from the first fully held sample on."""
    ids = [f"a{n:02d}" for n in range(accounts)]
    start = next(i for i, s in enumerate(samples) if len(s.owners) == accounts)
    longest, since = 0.0, dict.fromkeys(ids, None)
    for sample in samples[start:]:
        for account in ids:
            if account not in sample.owners:
                since[account] = since[account] or sample.at
            elif since[account] is not None:
                longest = max(longest, sample.at - since[account])
                since[account] = None
    return longest


def moved(before: Sample, after: Sample) -> int:
    """Hand-overs between two samples: every take-over bumps the account's epoch once."""
    return sum(after.epochs.get(a, 0) - before.epochs.get(a, 0) for a in after.epochs)


def run_fleet(root: Path, db_url: str, *, accounts: int = 40, rooms: int = 30, lease_ttl: float = 8.0,
              heartbeat: float = 1.0, min_interval: float = 1.0, drain: bool = True) -> FleetRun:
    """Start 4, balance; kill -9 one, rebalance; add one, rebalance; drain one (SIGUSR1); wait for every send."""
    ids = tuple(f"a{n:02d}" for n in range(accounts))
    project = make_project(root / "proj", db_url, accounts=ids, rooms=rooms, lease_ttl=lease_ttl,
                           heartbeat=heartbeat, min_interval=min_interval)
    sent = root / "wechat.jsonl"
    run = FleetRun(accounts, rooms)
    procs: list[BotProcess] = []
    watch = Watcher(db_url, run, procs)
    zero = Sample(0.0, {}, {})
    try:
        procs += [BotProcess(project, f"p{n}", sent_file=sent).start() for n in range(1, 5)]
        launched = time.monotonic()
        wait_until(lambda: watch.live_nodes() == {"p1", "p2", "p3", "p4"}, timeout=60, what="4 processes up",
                   procs=tuple(procs))
        up = time.monotonic() - launched
        took, settled = watch.balanced({"p1", "p2", "p3", "p4"}, 60, "start")
        run.figures["start: seconds until all 4 are in the fleet (Python start-up)"] = round(up, 2)
        run.figures["start: seconds to balance after that"] = round(took, 2)
        run.figures["start: accounts moved while balancing"] = moved(zero, settled) - accounts
        wait_until(lambda: len(read_sent(sent)) >= accounts, timeout=30, what="the fan-outs to be under way",
                   procs=tuple(procs))
        first_send = min(s["at"] for s in read_sent(sent))
        marks = {"kill": len(read_sent(sent))}

        victim = procs[3]
        victim.kill9()
        took, after_kill = watch.balanced({"p1", "p2", "p3"}, 30, "kill")
        run.figures["kill -9: seconds to balance"] = round(took, 2)
        run.figures["kill -9: accounts moved"] = moved(settled, after_kill)

        marks["add"] = len(read_sent(sent))
        procs.append(BotProcess(project, "p5", sent_file=sent).start())
        launched = time.monotonic()
        wait_until(lambda: "p5" in watch.live_nodes(), timeout=60, what="p5 up", procs=tuple(procs))
        up = time.monotonic() - launched
        took, after_add = watch.balanced({"p1", "p2", "p3", "p5"}, 30, "add")
        run.figures["add: seconds until it is in the fleet (Python start-up)"] = round(up, 2)
        run.figures["add: seconds to balance after that"] = round(took, 2)
        run.figures["add: accounts moved"] = moved(after_kill, after_add)

        if drain:
            drained = procs[0]
            assert drained.proc is not None
            marks["drain"] = len(read_sent(sent))
            signalled = time.monotonic()
            drained.proc.send_signal(signal.SIGUSR1)
            took, after_drain = watch.balanced({"p2", "p3", "p5"}, 30, "drain")
            run.drained_exit = drained.proc.wait(timeout=30)
            run.figures["drain (SIGUSR1): seconds to balance"] = round(took, 2)
            run.figures["drain (SIGUSR1): seconds until the process exited"] = round(time.monotonic() - signalled, 2)
            run.figures["drain (SIGUSR1): accounts moved"] = moved(after_add, after_drain)

        total = accounts * rooms
        deadline = time.monotonic() + 90
        while (statuses := outbox_statuses(db_url)) != {"sent": total}:
            watch.sample()
            if time.monotonic() > deadline:
                raise AssertionError(f"not every message was sent: {statuses}")
            time.sleep(0.2)
        run.statuses = statuses
        run.sent = read_sent(sent)
        for phase, count in marks.items():
            run.figures[f"{phase}: messages sent before it"] = count
        run.figures["fan-out: seconds from first to last send"] = round(max(s["at"] for s in run.sent) - first_send, 2)
        run.figures["longest time an account had no holder (s)"] = round(longest_unheld(run.samples, accounts), 2)
        keys = Counter((s["account"], s["room"]) for s in run.sent)
        run.figures["messages sent"] = len(run.sent)
        run.figures["duplicates"] = sum(n - 1 for n in keys.values())
        run.figures["lost"] = total - len(keys)
        return run
    finally:
        for proc in procs:
            if proc.alive():
                proc.stop()
        run.lapses = sum(p.log().count("lease lost") + p.log().count("after a lapse") for p in procs)
        watch.engine.dispose()
