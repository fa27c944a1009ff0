"""A balanced fleet of real processes on real PostgreSQL: 40 accounts over 4 processes, one killed with
kill -9, one added and one drained (SIGUSR1) while every account is sending; nothing sent twice or lost."""

from __future__ import annotations

from collections import Counter
from itertools import groupby

from fleet import run_fleet


def test_forty_accounts_stay_balanced_over_a_kill_an_addition_and_a_drain_with_every_message_sent_once(
        tmp_path, pg_url):
    run = run_fleet(tmp_path, pg_url, accounts=40, rooms=30)
    print(run.figures)  # shown with the output of a failing test
    sent_before = [run.figures[f"{phase}: messages sent before it"] for phase in ("kill", "add", "drain")]
    assert 0 < sent_before[0] < sent_before[1] < sent_before[2] < 40 * 30, "every hand-over happened mid-queue"

    assert sorted(run.settled["start"].values()) == [10, 10, 10, 10]
    assert sorted(run.settled["kill"].values()) == [13, 13, 14]
    assert sorted(run.settled["add"].values()) == [10, 10, 10, 10]
    assert sorted(run.settled["drain"].values()) == [13, 13, 14]
    assert run.drained_exit == 0
    moves = [run.figures[f"{step}: accounts moved"] for step in ("kill -9", "add", "drain (SIGUSR1)")]
    if run.lapses == 0:  # only the dead one's, the newcomer's share, the drained one's
        assert moves == [10, 10, 10]
    else:  # a process starved past lease_ttl lost leases to the others: more moved, safety below still holds
        assert all(m >= 10 for m in moves), moves

    # exactly once: every (account, room) reached WeChat once, and every outbox row is sent
    keys = Counter((s["account"], s["room"]) for s in run.sent)
    assert len(keys) == 40 * 30 and set(keys.values()) == {1}, keys.most_common(3)
    assert run.statuses == {"sent": 40 * 30}

    # one sender at a time: per account, the sends fall into runs by process, and a new run needs a new
    # lease epoch (a take-over); two processes sending side by side would interleave into more runs
    final = run.samples[-1].epochs
    for account in {s["account"] for s in run.sent}:
        sends = sorted((s for s in run.sent if s["account"] == account), key=lambda s: s["at"])
        runs = [pid for pid, _ in groupby(s["pid"] for s in sends)]
        assert len(runs) <= final[account], (account, runs, final[account])
    assert sum(len(s.owners) > 0 for s in run.samples) > 50  # the table was watched all along
    # a released or expired lease is claimed again soon: no account goes long without a holder
    assert run.figures["longest time an account had no holder (s)"] < 8.0  # lease_ttl, with room for a loaded machine
