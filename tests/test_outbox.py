"""The paced outbox: spacing on the virtual clock, idempotency across a crash, retries, cool-down."""

from __future__ import annotations

import itertools
from datetime import timedelta

from sqlmodel import select

from bot import Context, Plugin
from bot._models import OutboxMessage
from bot.adapters import RateLimited, SendError
from bot.testing import BotHarness


def broadcaster(count: int, rooms: tuple[str, ...] = ("g1",)) -> Plugin:
    plugin = Plugin("bc")

    @plugin.on_fullmatch("发").handle
    async def send_many(ctx: Context) -> None:
        for room in rooms:
            for n in range(count):
                await ctx.say(f"{room}-{n}", room=room, key=f"bc:{room}:{n}")

    return plugin


async def test_messages_to_one_room_are_spaced_by_the_configured_limits(project):
    pacing = {"min_interval": 2.0, "jitter": 1.0, "room_interval": 5.0, "hourly_cap": 1000}
    async with BotHarness(project, plugins=[broadcaster(10)], pacing=pacing) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.say("g1", "u1", "发")
        sent = bot.pop()
    assert [m.text for m in sent] == [f"g1-{n}" for n in range(10)]
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(sent)]
    assert all(gap >= 5.0 for gap in gaps), gaps  # the room limit dominates


async def test_account_interval_and_jitter_apply_across_rooms(project):
    pacing = {"min_interval": 2.0, "jitter": 1.0, "room_interval": 0.0, "hourly_cap": 1000}
    rooms = tuple(f"r{i}" for i in range(20))
    async with BotHarness(project, plugins=[broadcaster(1, rooms)], pacing=pacing) as bot:
        for room in rooms:
            bot.room(room, members={"u1": "A"})
        await bot.say("r0", "u1", "发")
        sent = bot.pop()
    assert sorted(m.room_id for m in sent) == sorted(rooms)
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(sent)]
    assert all(2.0 <= gap <= 3.0 for gap in gaps), gaps
    assert len({round(g, 3) for g in gaps}) > 5  # jitter makes the gaps differ


async def test_hourly_cap_holds_over_a_rolling_hour(project):
    pacing = {"min_interval": 0.0, "jitter": 0.0, "room_interval": 0.0, "hourly_cap": 5}
    async with BotHarness(project, plugins=[broadcaster(12)], pacing=pacing) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.say("g1", "u1", "发")
        sent = bot.pop()
    assert len(sent) == 12
    for i, message in enumerate(sent):
        window = [m for m in sent if message.at - timedelta(hours=1) < m.at <= message.at]
        assert len(window) <= 5, i
    assert sent[5].at - sent[0].at >= timedelta(hours=1)


async def test_each_room_keeps_its_order_when_rooms_interleave(project):
    pacing = {"min_interval": 1.0, "jitter": 0.5, "room_interval": 4.0, "hourly_cap": 1000}
    async with BotHarness(project, plugins=[broadcaster(4, ("a", "b", "c"))], pacing=pacing) as bot:
        for room in "abc":
            bot.room(room, members={"u1": "A"})
        await bot.say("a", "u1", "发")
        sent = bot.pop()
    for room in "abc":
        assert [m.text for m in sent if m.room_id == room] == [f"{room}-{n}" for n in range(4)]
    assert [m.room_id for m in sent[:3]] == ["a", "b", "c"]  # rooms interleave instead of waiting


async def test_crash_and_restart_sends_every_message_exactly_once(project):
    pacing = {"min_interval": 3.0, "jitter": 0.0, "room_interval": 0.0, "hourly_cap": 1000}
    plugin = broadcaster(8, ("g1", "g2", "g3"))
    async with BotHarness(project, plugins=[plugin], pacing=pacing) as bot:
        for room in ("g1", "g2", "g3"):
            bot.room(room, members={"u1": "A"})
        await bot.say("g1", "u1", "发", drain=False)
        await bot.advance("10s")  # a few went out, most are queued
        before = len(bot.sent)
        assert 0 < before < 24
        await bot.restart(crash=True)
        # the same logical messages queued again after the restart are ignored by key
        await bot.say("g1", "u1", "发")
        await bot.settle()
        texts = [m.text for m in bot.sent]
    assert sorted(texts) == sorted(f"{r}-{n}" for r in ("g1", "g2", "g3") for n in range(8))


async def test_a_send_in_flight_at_a_crash_is_not_sent_again(project):
    async with BotHarness(project, plugins=[broadcaster(2)]) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.say("g1", "u1", "发", drain=False)
        with bot.db() as session:  # simulate dying between "sending" and "sent"
            row = session.exec(select(OutboxMessage).where(OutboxMessage.key == "bc:g1:0")).one()
            row.status = "sending"
            session.add(row)
            session.commit()
        await bot.restart(crash=True)
        await bot.settle()
        assert [m.text for m in bot.sent] == ["g1-1"]
        with bot.db() as session:
            statuses = {r.key: r.status for r in session.exec(select(OutboxMessage))}
    assert statuses == {"bc:g1:0": "uncertain", "bc:g1:1": "sent"}


async def test_failed_sends_retry_with_backoff_then_give_up(project):
    pacing = {"min_interval": 0, "jitter": 0, "room_interval": 0, "retry_base": 10, "max_attempts": 3}
    async with BotHarness(project, plugins=[broadcaster(2)], pacing=pacing) as bot:
        bot.room("g1", members={"u1": "A"})
        bot.sim.adapter.fail_next_sends(SendError("net"), SendError("net"))
        start = bot.now
        await bot.say("g1", "u1", "发")
        sent = bot.pop()
        assert [m.text for m in sent] == ["g1-0", "g1-1"]
        assert sent[0].at - start == timedelta(seconds=30)  # 10 s, then 20 s back-off
        bot.sim.adapter.fail_next_sends(*(SendError("down") for _ in range(3)))
        await bot.say("g1", "u1", "发")  # same keys: nothing new queued
        assert bot.pop() == []


async def test_rate_limit_pauses_the_account_for_the_cooldown(project):
    pacing = {"min_interval": 0, "jitter": 0, "room_interval": 0, "cooldown": 1800}
    async with BotHarness(project, plugins=[broadcaster(2)], pacing=pacing) as bot:
        bot.room("g1", members={"u1": "A"})
        bot.sim.adapter.fail_next_sends(RateLimited("发送消息过于频繁"))
        start = bot.now
        await bot.say("g1", "u1", "发")
        sent = bot.pop()
    assert [m.text for m in sent] == ["g1-0", "g1-1"]
    assert sent[0].at - start == timedelta(minutes=30)


async def test_expired_messages_are_skipped_not_sent_late(project):
    plugin = Plugin("late")

    @plugin.on_fullmatch("发").handle
    async def send(ctx: Context) -> None:
        await ctx.say("one", key="a")
        await ctx.say("stale", key="b", expires_at=ctx.now + timedelta(seconds=5))

    pacing = {"min_interval": 0, "jitter": 0, "room_interval": 60}
    async with BotHarness(project, plugins=[plugin], pacing=pacing) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.say("g1", "u1", "发")
        assert [m.text for m in bot.pop()] == ["one"]
        with bot.db() as session:
            row = session.exec(select(OutboxMessage).where(OutboxMessage.key == "b")).one()
    assert row.status == "skipped"
