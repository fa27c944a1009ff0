"""The `qunbot run` node in-process: leases per account, sharing them, the survivor taking every account over."""

from __future__ import annotations

import asyncio
import textwrap
import time

import pytest

from bot._clock import RealClock
from bot._config import ConfigError, load_config, parse_config
from bot._events import MemberRef
from bot._runtime import Runtime
from bot._serve import Node
from bot.adapters.simulated import SimulatedAdapter


def node(project, name: str) -> Node:
    config = load_config(project)
    clock = RealClock(config.bot.tz)
    adapters = {}
    for account in config.accounts:
        adapter = SimulatedAdapter(account.id, clock, bot=MemberRef(f"bot-{account.id}", "小完子"))
        adapter.add_room(f"room-{account.id}", members=[MemberRef("u1", "Alice")])
        adapters[account.id] = adapter
    return Node(Runtime(project, config, clock=clock, adapters=adapters), owner=name)


async def eventually(condition, what: str, timeout: float = 20.0) -> float:
    """Wait for another node's heartbeat to act (it runs on real time); returns the seconds it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def test_two_nodes_share_the_accounts_and_the_survivor_takes_every_account_when_one_stops(tmp_path):
    (tmp_path / "scripts_templates").mkdir()
    (tmp_path / "qunbot.toml").write_text(textwrap.dedent(f"""
        [database]
        url = "sqlite:///{tmp_path}/bot.db"
        [cluster]
        lease_ttl = 2
        heartbeat = 0.2
        [[accounts]]
        id = "a1"
        [[accounts]]
        id = "a2"
        [[accounts]]
        id = "a3"
    """), encoding="utf-8")
    first, second = node(tmp_path, "first"), node(tmp_path, "second")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    await first.start()
    await second.start()
    serving = [asyncio.create_task(first.serve(stop_first)), asyncio.create_task(second.serve(stop_second))]
    try:
        assert first.rt.active == {"a1", "a2", "a3"} and second.rt.active == set()  # alone at its start
        await eventually(lambda: len(first.rt.active) == 2 and len(second.rt.active) == 1, "a fair share each")
        assert first.rt.active.isdisjoint(second.rt.active)
        stop_first.set()
        await serving[0]
        await first.stop()
        took = await eventually(lambda: second.rt.active == {"a1", "a2", "a3"}, "the take-over")
        assert took < 2.0  # released on a clean stop: no waiting out the 2 s lease
        assert {lease.holder()[0] for lease in second.leases.values()} == {"second"}
    finally:
        stop_second.set()
        await asyncio.gather(*serving, return_exceptions=True)
        await second.stop()


def test_a_heartbeat_too_slow_for_the_lease_is_a_config_error():
    with pytest.raises(ConfigError, match=r"cluster: heartbeat（20.0 秒）最多是 lease_ttl（30.0 秒）的一半"):
        parse_config({"cluster": {"lease_ttl": 30, "heartbeat": 20}})
