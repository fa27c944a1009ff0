"""Balancing accounts over processes: the fair-share rule, the batch claim, and nodes driven heartbeat by heartbeat.

The nodes here run in one process on one database with every heartbeat called by the test (no timers),
so each step of a rebalance is deterministic; `test_fleet.py` does the same with real processes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from bot._balance import Membership, fair_shares, request_drain
from bot._clock import RealClock
from bot._config import load_config
from bot._db import make_engine
from bot._events import MemberRef
from bot._lease import claim
from bot._models import AccountLease, ClusterNode
from bot._runtime import Runtime
from bot._serve import Node
from bot.adapters.simulated import SimulatedAdapter
from bot.cli import main

ACCOUNTS = [f"a{n:02d}" for n in range(40)]


def test_fair_shares_are_floor_or_ceil_and_the_extra_goes_to_who_holds_most():
    assert fair_shares(40, {"n1": 40, "n2": 0, "n3": 0, "n4": 0}) == {"n1": 10, "n2": 10, "n3": 10, "n4": 10}
    shares = fair_shares(40, {"n1": 10, "n2": 10, "n3": 10})
    assert sorted(shares.values()) == [13, 13, 14] and shares["n1"] == 14  # a tie goes by name
    assert fair_shares(40, {"n1": 13, "n2": 14, "n3": 13}) == {"n1": 13, "n2": 14, "n3": 13}  # settled: no move
    assert fair_shares(3, {"b": 0, "a": 1}) == {"a": 2, "b": 1}
    assert fair_shares(1, {"standby": 0, "holder": 1}) == {"holder": 1, "standby": 0}
    assert fair_shares(5, {}) == {}


def test_a_batch_claim_by_racing_processes_takes_each_account_once(pg_url):
    SQLModel.metadata.create_all(make_engine(pg_url))
    engines = [make_engine(pg_url) for _ in range(8)]
    barrier = threading.Barrier(len(engines))
    taken: dict[str, list[str]] = {}

    def race(n: int) -> None:
        barrier.wait()
        taken[f"p{n}"] = list(claim(engines[n], f"p{n}", ACCOUNTS, limit=7, ttl=30))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    every = [a for accounts in taken.values() for a in accounts]
    assert sorted(every) == ACCOUNTS  # 8 × 7 ≥ 40: all taken, none twice
    assert max(len(accounts) for accounts in taken.values()) <= 7  # bounded batches
    assert claim(engines[0], "late", ACCOUNTS, limit=40, ttl=30) == {}  # nothing free while the leases live
    with engines[0].connect() as conn:
        owners = dict(conn.execute(select(AccountLease.account, AccountLease.owner)).all())
    assert {a: owners[a] for a in every} == {a: p for p, accounts in taken.items() for a in accounts}


def project(tmp_path, accounts: list[str]):
    (tmp_path / "scripts_templates").mkdir(exist_ok=True)
    (tmp_path / "qunbot.toml").write_text(textwrap.dedent(f"""
        [database]
        url = "sqlite:///{tmp_path}/bot.db"
        [cluster]
        lease_ttl = 600
        heartbeat = 60
    """) + "".join(f'[[accounts]]\nid = "{a}"\n' for a in accounts), encoding="utf-8")
    return tmp_path


def node(path, name: str) -> Node:
    config = load_config(path)
    clock = RealClock(config.bot.tz)
    adapters = {a.id: SimulatedAdapter(a.id, clock, bot=MemberRef(f"bot-{a.id}", "小完子")) for a in config.accounts}
    return Node(Runtime(path, config, clock=clock, adapters=adapters), owner=name)


def holdings(engine) -> dict[str, str]:
    """Account -> owner of its live lease, as the database shows it."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        return dict(conn.execute(select(AccountLease.account, AccountLease.owner)
                                 .where(AccountLease.expires_at > now)).all())


async def settle(nodes: list[Node], rounds: int = 6) -> int:
    """Heartbeat every node in turn until nothing moves; returns how many rounds moved something."""
    for moving in range(rounds):
        before = [set(n.rt.active) for n in nodes]
        for n in nodes:
            await n.heartbeat()
            active = [a for n in nodes for a in n.rt.active]
            assert len(active) == len(set(active)), "an account runs in two nodes"
        if [set(n.rt.active) for n in nodes] == before:
            return moving
    raise AssertionError(f"still moving after {rounds} rounds: {[len(n.rt.active) for n in nodes]}")


def kill(engine, name: str) -> None:
    """What `kill -9` plus `lease_ttl` do to the database: the node's row and leases expire."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with engine.begin() as conn:
        conn.execute(update(AccountLease).where(AccountLease.owner == name).values(expires_at=past))
        conn.execute(update(ClusterNode).where(ClusterNode.node == name).values(expires_at=past))


async def test_nodes_balance_after_start_a_kill_and_an_addition_moving_only_what_they_must(tmp_path):
    path = project(tmp_path, ACCOUNTS)
    nodes = [node(path, f"n{i}") for i in range(1, 5)]
    dead: Node | None = None
    try:
        for n in nodes:
            await n.start()
        assert len(nodes[0].rt.active) == 40  # alone at its start, the first takes everything
        engine = nodes[0].rt.engine
        assert await settle(nodes) <= 2
        assert Counter(holdings(engine).values()) == {"n1": 10, "n2": 10, "n3": 10, "n4": 10}
        assert all(len(n.rt.active) == 10 for n in nodes)

        before = holdings(engine)
        dead = nodes.pop()
        for account in list(dead.rt.active):  # its process is gone: nothing of it runs any more
            await dead.rt.stop_account(account)
        kill(engine, "n4")
        assert await settle(nodes) <= 2
        after = holdings(engine)
        assert sorted(Counter(after.values()).values()) == [13, 13, 14]
        assert sum(before[a] != after[a] for a in ACCOUNTS) == 10  # only the dead node's accounts moved

        before = after
        nodes.append(node(path, "n5"))
        await nodes[-1].start()
        assert await settle(nodes) <= 2
        after = holdings(engine)
        assert Counter(after.values()) == {"n1": 10, "n2": 10, "n3": 10, "n5": 10}
        assert sum(before[a] != after[a] for a in ACCOUNTS) == 10  # 4 + 3 + 3 moved to the newcomer
        assert sorted(a for n in nodes for a in n.rt.active) == ACCOUNTS
    finally:
        for n in nodes + ([dead] if dead else []):
            await n.stop()


async def test_a_draining_node_hands_everything_over_then_says_it_is_done(tmp_path):
    path = project(tmp_path, ACCOUNTS[:6])
    nodes = [node(path, f"n{i}") for i in range(1, 4)]
    try:
        for n in nodes:
            await n.start()
        await settle(nodes)
        assert [len(n.rt.active) for n in nodes] == [2, 2, 2]
        nodes[0].drain()
        await nodes[0].heartbeat()
        assert nodes[0].rt.active == set() and not nodes[0].drained  # released; the others have not taken them yet
        for n in nodes[1:]:
            await n.heartbeat()
        assert [len(n.rt.active) for n in nodes[1:]] == [3, 3]
        await nodes[0].heartbeat()
        assert nodes[0].drained

        assert request_drain(nodes[1].rt.engine, "n2") == ["n2"]  # what `qunbot run --drain n2` does
        for n in nodes[1:]:
            await n.heartbeat()
        assert nodes[1].draining and nodes[1].rt.active == set() and len(nodes[2].rt.active) == 6
    finally:
        for n in nodes:
            await n.stop()


async def test_a_clean_stop_leaves_the_fleet_so_the_others_take_the_share_at_once(tmp_path):
    path = project(tmp_path, ACCOUNTS[:4])
    one, two = node(path, "one"), node(path, "two")
    await one.start()
    await two.start()
    try:
        await settle([one, two])
        assert len(one.rt.active) == len(two.rt.active) == 2
        await one.stop()
        assert Membership(two.rt.engine, "two", 600).beat().nodes == {"two": 2}
        await two.heartbeat()
        assert len(two.rt.active) == 4
    finally:
        await two.stop()


async def test_an_account_that_cannot_start_is_released_and_the_heartbeat_goes_on(tmp_path, monkeypatch):
    path = project(tmp_path, ACCOUNTS[:8])
    one = node(path, "one")
    start_account = one.rt.start_account

    async def flaky(account: str) -> None:
        if account == "a03":
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        await start_account(account)

    monkeypatch.setattr(one.rt, "start_account", flaky)
    try:
        await one.start()  # one heartbeat: a03 fails, its lease goes back, the others of its batch run
        assert "a03" not in one.rt.active and one.leases["a03"].epoch is None
        await one.heartbeat()
        assert one.rt.active == set(ACCOUNTS[:8]) - {"a03"}
        assert "a03" not in holdings(one.rt.engine)
    finally:
        await one.stop()


async def test_qunbot_run_drain_asks_the_named_process_to_drain_and_waits_until_it_has_stopped(tmp_path):
    path = project(tmp_path, ACCOUNTS[:4])
    web1, web2 = node(path, "web-1/101/aaaaaa"), node(path, "web-2/202/bbbbbb")
    for n in (web1, web2):
        await n.start()
    runner = CliRunner()
    try:
        await settle([web1, web2])
        missing = runner.invoke(main, ["--project", str(path), "run", "--drain", "web-9"])
        assert missing.exit_code == 1 and "no running process whose name starts with 'web-9'" in missing.output
        asking = asyncio.ensure_future(asyncio.to_thread(
            runner.invoke, main, ["--project", str(path), "run", "--drain", "web-1"]))
        began = time.monotonic()
        while not web1.drained:  # the two nodes' heartbeats, as their serve loops would run them
            assert time.monotonic() - began < 30, "web-1 never drained"
            await web1.heartbeat()
            await web2.heartbeat()
            await asyncio.sleep(0.05)
        await web1.stop()  # what `qunbot run` does once `serve` returns
        result = await asking
        assert result.exit_code == 0, result.output
        assert "drained: web-1/101/aaaaaa" in result.output
        assert len(web2.rt.active) == 4 and web1.rt.active == set()
    finally:
        for n in (web1, web2):
            await n.stop()


def test_sigusr1_drains_qunbot_run_which_then_exits_cleanly(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "qunbot.toml").write_text('[database]\nurl = "sqlite:///data/bot.db"\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--project", str(project), "--log-json", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # blocks until the bot says it runs: no sleeping
        if json.loads(line)["message"].startswith("running"):
            break
    proc.send_signal(signal.SIGUSR1)
    rest = [json.loads(line)["message"] for line in proc.stderr.read().splitlines()]
    assert proc.wait(timeout=30) == 0
    assert any("draining: handing every account" in m for m in rest)
    assert any(m.startswith("node ") and " drained" in m for m in rest)
    assert "stopping" in rest


class GatedAdapter(SimulatedAdapter):
    """A send that does not come back until the test opens the gate (WeChat slow to acknowledge)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_send = asyncio.Event()

    async def send(self, message) -> None:
        self.in_send.set()
        await self.gate.wait()
        await super().send(message)


async def test_a_hand_over_keeps_the_lease_until_the_send_in_flight_is_recorded(tmp_path, monkeypatch):
    path = project(tmp_path, ["a0", "a1"])
    one = node(path, "one")
    slow = GatedAdapter("a1", one.rt.clock, bot=MemberRef("bot-a1", "小完子"))
    slow.add_room("r1", members=[MemberRef("u1", "Alice")])
    one.rt.adapters["a1"] = slow
    outbox = one.rt.outbox("a1")
    outbox._send = slow.send  # the outbox was built with the replaced adapter's send
    finish = outbox.finish_in_flight
    monkeypatch.setattr(outbox, "finish_in_flight", lambda timeout=15.0: finish(0.05))
    two = node(path, "two")
    await one.start()
    try:
        assert one.rt.active == {"a0", "a1"}
        slow.gate.clear()
        with one.rt.new_session() as session:
            outbox.enqueue(session, key="k1", text="周年庆开始啦", room_id="r1")
            session.commit()
        outbox.wake()
        await asyncio.wait_for(slow.in_send.wait(), 10)  # handed to WeChat, not yet acknowledged
        await two.start()  # two's share is 1: one must hand a1 over
        await one.heartbeat()
        assert one.rt.active == {"a0"} and one.leases["a1"].held()  # stopped, but the lease is kept
        await two.heartbeat()
        assert two.rt.active == set() and holdings(one.rt.engine)["a1"] == "one"
        slow.gate.set()  # WeChat acknowledges: the send is recorded
        await finish(10)  # waits for the send in flight to be recorded
        assert outbox.idle
        await one.heartbeat()  # now the lease goes
        await two.heartbeat()
        assert two.rt.active == {"a1"} and one.rt.active == {"a0"}
        await two.heartbeat()
        assert [m.text for m in slow.sent] == ["周年庆开始啦"]  # once, by the old holder
        assert two.rt.adapters["a1"].sent == []  # the new holder found it sent
    finally:
        await one.stop()
        await two.stop()
