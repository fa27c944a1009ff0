"""Real processes on real PostgreSQL: kill -9 during a 200-room fan-out, and the database dropping connections.

Every room must get the post exactly once. The "WeChat" is a file outside the bot process
(`botproc.FileWeChat`), so what went out survives the kill.
"""

from __future__ import annotations

import psycopg
from botproc import BotProcess, make_project, outbox_statuses, read_sent, rooms_count, wait_until


def test_kill_9_during_a_200_room_fan_out_then_restart_posts_to_every_room_exactly_once(tmp_path, pg_url):
    project = make_project(tmp_path / "proj", pg_url, lease_ttl=4.0, heartbeat=1.0)
    sent = tmp_path / "wechat.jsonl"
    # Sends take a little while (request and acknowledgement), so the kill can land mid-send.
    first = BotProcess(project, "first", sent_file=sent, latency=0.01).start()
    procs: tuple[BotProcess, ...] = (first,)
    try:
        wait_until(lambda: sum(rooms_count(sent).values()) >= 60, timeout=90, what="60 rooms posted", procs=procs)
        first.kill9()
        before = sum(rooms_count(sent).values())
        assert before < 200, "the fan-out finished before the kill; nothing was tested"
        left = outbox_statuses(pg_url)
        assert left.get("pending", 0) > 0

        again = BotProcess(project, "again", sent_file=sent, latency=0.01).start()
        procs = (first, again)
        wait_until(lambda: outbox_statuses(pg_url) == {"sent": 200}, timeout=90, what="all 200 rooms", procs=procs)
        counts = rooms_count(sent)
        assert len(counts) == 200 and set(counts.values()) == {1}, counts.most_common(3)
        assert {s["pid"] for s in read_sent(sent)} == {first.pid, again.pid}
        assert again.stop() == 0
    finally:
        for proc in procs:
            if proc.alive():
                proc.kill9()


def _terminate_backends(db_url: str) -> int:
    """What a database restart does to the bot: every connection it holds is cut."""
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(db_url.rsplit("/", 1)[0] + "/test", autocommit=True) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                             "AND pid <> pg_backend_pid()", (name,)).fetchall()
    return len(rows)


def test_the_database_cutting_every_connection_mid_run_loses_and_doubles_nothing(tmp_path, pg_url):
    project = make_project(tmp_path / "proj", pg_url, rooms=100, lease_ttl=10.0, heartbeat=1.0)
    sent = tmp_path / "wechat.jsonl"
    bot = BotProcess(project, "bot", sent_file=sent, latency=0.005).start()
    try:
        terminated = 0
        for threshold in (20, 45, 70):
            wait_until(lambda t=threshold: sum(rooms_count(sent).values()) >= t, timeout=90,
                       what=f"{threshold} rooms posted", procs=(bot,))
            terminated += _terminate_backends(pg_url)
            assert bot.alive()
        assert terminated >= 3  # the bot did hold connections each time
        wait_until(lambda: outbox_statuses(pg_url) == {"sent": 100}, timeout=90, what="all 100 rooms", procs=(bot,))
        counts = rooms_count(sent)
        assert len(counts) == 100 and set(counts.values()) == {1}, counts.most_common(3)
        assert bot.alive()
        assert bot.stop() == 0
    finally:
        if bot.alive():
            bot.kill9()
