"""Two real processes on one PostgreSQL race for an account: one runs it; kill -9 it, the other takes over.

Nothing is posted twice: the outbox keys and statuses give exactly-once per message, the lease fences
sends, and the rows the dead process left `sending` are settled by asking WeChat (`was_sent`).
"""

from __future__ import annotations

import time

from botproc import BotProcess, make_project, outbox_statuses, read_sent, rooms_count, wait_until
from sqlmodel import Session

from bot._db import make_engine
from bot._models import AccountLease


def test_only_one_process_runs_the_account_and_the_other_takes_over_after_kill_9(tmp_path, pg_url):
    project = make_project(tmp_path / "proj", pg_url, rooms=100)
    sent = tmp_path / "wechat.jsonl"
    first = BotProcess(project, "p1", sent_file=sent).start()
    second = BotProcess(project, "p2", sent_file=sent).start()
    procs = (first, second)
    try:
        wait_until(lambda: "lease taken" in first.log() + second.log(), timeout=60, what="a lease holder",
                   procs=procs)
        wait_until(lambda: sum(rooms_count(sent).values()) >= 20, timeout=60, what="the fan-out to start",
                   procs=procs)
        holder, standby = (first, second) if "lease taken" in first.log() else (second, first)
        assert "lease taken" not in standby.log()
        assert {s["pid"] for s in read_sent(sent)} == {holder.pid}  # only the holder sends

        holder.kill9()
        killed_at, before = time.monotonic(), sum(rooms_count(sent).values())
        assert before < 100, "the fan-out finished before the kill; nothing was tested"
        wait_until(lambda: "lease taken" in standby.log(), timeout=30, what="the take-over", procs=procs)
        took_over_after = time.monotonic() - killed_at
        wait_until(lambda: outbox_statuses(pg_url) == {"sent": 100}, timeout=60, what="all 100 rooms", procs=procs)

        counts = rooms_count(sent)
        assert len(counts) == 100 and set(counts.values()) == {1}, counts.most_common(3)
        pids = {s["pid"] for s in read_sent(sent)}
        assert pids == {holder.pid, standby.pid}
        assert took_over_after < 10.0 + 1.0 + 10.0  # lease_ttl + heartbeat, with room for a loaded machine
        assert standby.stop() == 0
        engine = make_engine(pg_url)
        with Session(engine) as session:
            lease = session.get(AccountLease, "a1")
        engine.dispose()
        assert lease is not None and lease.epoch == 2 and lease.owner.startswith("p")
    finally:
        for proc in procs:
            if proc.alive():
                proc.kill9()


def test_a_clean_stop_hands_the_account_to_the_standby_at_once(tmp_path, pg_url):
    project = make_project(tmp_path / "proj", pg_url, rooms=100, lease_ttl=60, heartbeat=1.0)
    sent = tmp_path / "wechat.jsonl"
    first = BotProcess(project, "p1", sent_file=sent, latency=0.05).start()  # slow sends: still busy at the stop
    procs: tuple[BotProcess, ...] = (first,)
    try:
        wait_until(lambda: sum(rooms_count(sent).values()) >= 5, timeout=60, what="the fan-out", procs=procs)
        second = BotProcess(project, "p2", sent_file=sent, latency=0.002).start()
        procs = (first, second)
        wait_until(lambda: "standby" in second.log(), timeout=60, what="the standby to start", procs=procs)
        assert first.stop() == 0  # releases the lease: no waiting out the 60 s lease
        assert sum(rooms_count(sent).values()) < 100
        wait_until(lambda: "lease taken" in second.log(), timeout=15, what="the hand-over", procs=procs)
        wait_until(lambda: outbox_statuses(pg_url) == {"sent": 100}, timeout=60, what="all 100 rooms", procs=procs)
        counts = rooms_count(sent)
        assert len(counts) == 100 and set(counts.values()) == {1}
        assert {s["pid"] for s in read_sent(sent)} == {first.pid, second.pid}
        assert second.stop() == 0
    finally:
        for proc in procs:
            if proc.alive():
                proc.kill9()
