"""The outbox's promises, each by a test that fails when the promise is broken: one row per key, the hourly
cap across a crash, and no send from a process whose lease another process took over."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, SQLModel, select

from bot import Context, Plugin
from bot._clock import VirtualClock
from bot._config import PacingSettings
from bot._db import make_engine
from bot._lease import Lease
from bot._models import AccountLease, OutboxMessage
from bot._outbox import Outbox
from bot.testing import BotHarness

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def broadcaster(count: int) -> Plugin:
    plugin = Plugin("bc")

    @plugin.on_fullmatch("发").handle
    async def send_many(ctx: Context) -> None:
        for n in range(count):
            await ctx.say(f"第{n}条", room="g1", key=f"bc:{n}")

    return plugin


# --- one key, one message ------------------------------------------------------------------------------


def test_enqueueing_one_key_twice_is_ignored_not_an_error(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/o.db")
    SQLModel.metadata.create_all(engine)
    outbox = Outbox("a1", engine, VirtualClock(START), PacingSettings(), _no_send)
    with Session(engine) as session:
        outbox.enqueue(session, key="k", text="第一次", room_id="g1")
        outbox.enqueue(session, key="k", text="第二次", room_id="g1")   # same transaction
        session.commit()
    with Session(engine) as session:
        outbox.enqueue(session, key="k", text="第三次", room_id="g1")   # a later transaction
        session.commit()
        rows = session.exec(select(OutboxMessage)).all()
    assert [(r.key, r.text) for r in rows] == [("k", "第一次")]


async def test_a_handler_saying_one_key_twice_sends_it_once(project):
    plugin = Plugin("twice")

    @plugin.on_fullmatch("说").handle
    async def twice(ctx: Context) -> None:
        await ctx.say("只说一次", key="once")
        await ctx.say("只说一次", key="once")
        await ctx.reply("好")                          # and the handler's other work still commits

    async with BotHarness(project, plugins=[plugin]) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.say("g1", "u1", "说")
        assert [m.text for m in bot.pop()] == ["只说一次", "@A 好"]


async def _no_send(message) -> None:
    raise AssertionError(f"nothing may be sent here: {message}")


# --- pacing across a crash ------------------------------------------------------------------------------


async def test_the_hourly_cap_holds_across_a_crash_and_restart(project):
    pacing = {"min_interval": 0, "jitter": 0, "room_interval": 0, "hourly_cap": 5}
    async with BotHarness(project, plugins=[broadcaster(12)], pacing=pacing) as bot:
        bot.room("g1", members={"u1": "A"})
        await bot.say("g1", "u1", "发", drain=False)
        await bot.advance("1m")
        first = bot.now - timedelta(minutes=1)
        assert len(bot.sent) == 5
        await bot.restart(crash=True)                  # the new process must remember those 5
        await bot.advance("30m")
        assert len(bot.sent) == 5
        await bot.settle()
    assert len(bot.sent) == 12
    for message in bot.sent:
        window = [m for m in bot.sent if message.at - timedelta(hours=1) < m.at <= message.at]
        assert len(window) <= 5
    assert bot.sent[5].at >= first + timedelta(hours=1)


# --- leases at the outbox ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request, tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _queue(engine, outbox: Outbox, key: str) -> None:
    with Session(engine) as session:
        outbox.enqueue(session, key=key, text=key, room_id="g1")
        session.commit()


def _outbox(engine, lease: Lease, sent: list[tuple[str, str]]) -> Outbox:
    async def send(message) -> None:
        sent.append((lease.owner, message.text))

    pacing = PacingSettings(min_interval=0, jitter=0, room_interval=0)
    outbox = Outbox("a1", engine, VirtualClock(START), pacing, send)
    outbox.lease = lease
    return outbox


async def test_after_a_take_over_the_old_holder_sends_nothing_though_it_still_believes_it_holds(shared_db):
    engine, sent = shared_db, []
    old, new = Lease(engine, "a1", "old", ttl=600), Lease(engine, "a1", "new", ttl=600)
    assert old.acquire()
    with engine.begin() as conn:                      # the old holder's heartbeat stalled past the expiry
        conn.execute(update(AccountLease).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert new.acquire()
    assert old.held()                                 # its own clock has not run out: it believes it holds
    old_box, new_box = _outbox(engine, old, sent), _outbox(engine, new, sent)
    _queue(engine, old_box, "m1")
    assert await old_box._step() is not None          # it looks, but the database fence refuses the claim
    assert sent == []
    await new_box._step()
    assert sent == [("new", "m1")]
    with Session(engine) as session:
        assert session.exec(select(OutboxMessage.status)).one() == "sent"


async def test_a_holder_whose_own_deadline_passed_sends_nothing_even_if_the_row_still_names_it(
        shared_db, monkeypatch):
    engine, sent = shared_db, []
    lease = Lease(engine, "a1", "p1", ttl=30)
    assert lease.acquire()
    box = _outbox(engine, lease, sent)
    _queue(engine, box, "m1")
    later = time.monotonic() + 31                     # its monotonic clock says the ttl is over ...
    monkeypatch.setattr("bot._lease.time.monotonic", lambda: later)
    with engine.begin() as conn:                      # ... while the row, by a skewed clock, still looks live
        conn.execute(update(AccountLease).values(expires_at=datetime.now(UTC) + timedelta(hours=1)))
    assert not lease.held()
    await box._step()
    assert sent == []
