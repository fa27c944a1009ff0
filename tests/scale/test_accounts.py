"""Several accounts in one process: each its own adapter, outbox, pacing, cool-down and timers."""

from __future__ import annotations

import textwrap
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import Session, select

from bot import Context, Plugin
from bot._clock import VirtualClock
from bot._config import load_config
from bot._events import MemberRef
from bot._models import OutboxMessage
from bot._runtime import Runtime
from bot._simulation import build_components
from bot.adapters import RateLimited
from bot.adapters.simulated import SimulatedAdapter

START = datetime.fromisoformat("2026-11-23T09:00:00+08:00")


def echo_plugin() -> Plugin:
    plugin = Plugin("echo")

    @plugin.on_command("复述").handle
    async def echo(ctx: Context) -> None:
        for n in range(3):
            await ctx.say(f"{ctx.account}:{ctx.args}:{n}")

    @plugin.on_command("稍后").handle
    async def later(ctx: Context) -> None:
        ctx.schedule("remind", delay=timedelta(minutes=5), key=f"remind:{ctx.room_id}")

    @plugin.timer("remind")
    async def remind(ctx: Context) -> None:
        await ctx.say(f"{ctx.account}:提醒")

    return plugin


@asynccontextmanager
async def accounts_bot(project: Path, rooms: dict[str, list[str]], *, plugins=None, components: bool = False):
    """A runtime over `qunbot.toml`'s accounts, one simulated adapter each, rooms per account."""
    config = load_config(project)
    clock = VirtualClock(START)
    adapters = {}
    for account in config.accounts:
        adapter = SimulatedAdapter(account.id, clock, bot=MemberRef(f"bot-{account.id}", "小完子"))
        for room in rooms.get(account.id, []):
            adapter.add_room(room, f"完子会员-{room}", members=[MemberRef("u1", "Alice")])
        adapters[account.id] = adapter
    runtime = Runtime(project, config, clock=clock, adapters=adapters, db_url=f"sqlite:///{project}/bot.db",
                      plugins=plugins)
    await runtime.start()
    started = build_components(runtime) if components else []
    for component in started:
        await component.start(runtime)
    try:
        yield runtime, clock, adapters
    finally:
        for component in reversed(started):
            await component.stop()
        await runtime.stop()


def write_project(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "scripts_templates").mkdir(exist_ok=True)
    (tmp_path / "qunbot.toml").write_text(textwrap.dedent(toml), encoding="utf-8")
    return tmp_path


TWO_ACCOUNTS = """
    [pacing]
    min_interval = 0
    jitter = 0
    room_interval = 0

    [[accounts]]
    id = "slow"
    [accounts.pacing]
    min_interval = 10
    jitter = 0
    room_interval = 0

    [[accounts]]
    id = "fast"
"""


async def test_each_account_answers_through_its_own_adapter_with_its_own_pacing(tmp_path):
    project = write_project(tmp_path, TWO_ACCOUNTS)
    async with accounts_bot(project, {"slow": ["s1"], "fast": ["f1"]}, plugins=[echo_plugin()]) as (rt, clock, ad):
        assert rt.active == {"slow", "fast"}
        await ad["slow"].say("s1", "u1", "复述 你好")
        await ad["fast"].say("f1", "u1", "复述 hi")
        await clock.advance(timedelta(minutes=1))
    assert [m.text for m in ad["fast"].sent] == ["fast:hi:0", "fast:hi:1", "fast:hi:2"]
    assert [m.text for m in ad["slow"].sent] == ["slow:你好:0", "slow:你好:1", "slow:你好:2"]
    assert {m.room_id for m in ad["fast"].sent} == {"f1"} and {m.room_id for m in ad["slow"].sent} == {"s1"}
    fast_times = [m.at for m in ad["fast"].sent]
    slow_gaps = [(b.at - a.at).total_seconds() for a, b in zip(ad["slow"].sent, ad["slow"].sent[1:], strict=False)]
    assert fast_times == [START] * 3  # the slow account's 10 s gaps do not hold the fast one back
    assert slow_gaps == [10.0, 10.0]


async def test_one_account_cooling_down_does_not_pause_the_other(tmp_path):
    project = write_project(tmp_path, TWO_ACCOUNTS.replace("min_interval = 10", "min_interval = 0"))
    async with accounts_bot(project, {"slow": ["s1"], "fast": ["f1"]}, plugins=[echo_plugin()]) as (_rt, clock, ad):
        ad["slow"].fail_next_sends(RateLimited("发送消息过于频繁"))
        await ad["slow"].say("s1", "u1", "复述 a")
        await ad["fast"].say("f1", "u1", "复述 b")
        await clock.advance(timedelta(minutes=1))
        assert len(ad["fast"].sent) == 3
        assert ad["slow"].sent == []  # cooling down for 30 minutes
        await clock.advance(timedelta(minutes=31))
        assert len(ad["slow"].sent) == 3


async def test_timers_and_rows_belong_to_their_account(tmp_path):
    project = write_project(tmp_path, TWO_ACCOUNTS)
    async with accounts_bot(project, {"slow": ["s1"], "fast": ["f1"]}, plugins=[echo_plugin()]) as (rt, clock, ad):
        await ad["slow"].say("s1", "u1", "稍后")
        await ad["fast"].say("f1", "u1", "稍后")
        await rt.stop_account("slow")  # e.g. its lease went elsewhere: its timer stays in the database
        await clock.advance(timedelta(minutes=10))
        assert [m.text for m in ad["fast"].sent] == ["fast:提醒"]
        assert ad["slow"].sent == []
        await rt.start_account("slow")  # taken back: the overdue timer fires late, once
        await clock.advance(timedelta(minutes=1))
        assert [m.text for m in ad["slow"].sent] == ["slow:提醒"]
        with Session(rt.engine) as session:
            rows = session.exec(select(OutboxMessage.account, OutboxMessage.room_id)).all()
    assert sorted(set(rows)) == [("fast", "f1"), ("slow", "s1")]


async def test_an_sop_post_goes_to_each_room_through_the_account_that_is_in_it(tmp_path):
    project = write_project(tmp_path, TWO_ACCOUNTS)
    (project / "sop").mkdir()
    (project / "sop" / "daily.yaml").write_text(textwrap.dedent("""
        name: 每日
        targets:
          topics: ["完子会员*"]
        steps:
          - id: morning
            at: "09:30"
            text: 早上好
    """), encoding="utf-8")
    rooms = {"slow": ["s1", "s2"], "fast": ["f1", "f2", "f3"]}
    async with accounts_bot(project, rooms, components=True) as (_rt, clock, ad):
        await clock.advance(timedelta(hours=1))
    for account, room_ids in rooms.items():
        assert sorted(m.room_id for m in ad[account].sent) == room_ids
        assert {m.text for m in ad[account].sent} == {"早上好"}
