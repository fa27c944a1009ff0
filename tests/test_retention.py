"""Retention: finished work is blanked, counted and deleted by age; work in play and lottery posts never."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from bot._config import ConfigError, RetentionSettings, parse_config
from bot._db import make_engine
from bot._migrations import upgrade
from bot._models import OutboxMessage, ScheduledTask
from bot._retention import DailyCount, Pruner, sent_per_day
from bot.sop._models import SopDelivery
from bot.testing import BotHarness

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 29, 4, 30, tzinfo=TZ)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/r.db", base_dir=tmp_path)
    upgrade(engine, {})
    yield engine
    engine.dispose()


def _outbox(session: Session, key: str, status: str, age_days: float, source: str = "points") -> None:
    at = NOW - timedelta(days=age_days)
    session.add(OutboxMessage(account="a", key=key, room_id="g1", text=f"@Alice 签到成功 {key}", mentions=["u1"],
                              parts=[{"member": {"id": "u1", "name": "Alice"}, "points": 10}],
                              source=source, status=status, created_at=at, not_before=at,
                              sent_at=at if status == "sent" else None))


def _pruner(engine, **settings) -> Pruner:
    return Pruner(engine, RetentionSettings(**settings), TZ)


def test_texts_blanked_rows_deleted_and_counted_by_age(engine):
    with Session(engine) as session:
        for i in range(5):
            _outbox(session, f"new{i}", "sent", 3)        # recent: untouched
            _outbox(session, f"mid{i}", "sent", 40)       # text blanked, row kept
            _outbox(session, f"old{i}", "sent", 100)      # counted, then deleted
        _outbox(session, "oldfail", "failed", 100)
        session.commit()
        before = sent_per_day(session, (NOW - timedelta(days=120)).date(), TZ)
    report = _pruner(engine).run(NOW)
    assert (report.blanked, report.deleted["outbox"]) == (5, 6)
    with Session(engine) as session:
        rows = {r.key: r for r in session.exec(select(OutboxMessage))}
        assert set(rows) == {f"new{i}" for i in range(5)} | {f"mid{i}" for i in range(5)}
        assert rows["new0"].text.startswith("@Alice") and rows["new0"].mentions == ["u1"] and rows["new0"].parts
        # a merged reply's parts name its members too: they go with the text
        assert rows["mid0"].text == "" and rows["mid0"].mentions == [] and rows["mid0"].parts == []
        assert rows["mid0"].status == "sent"
        counts = {(c.status, c.count) for c in session.exec(select(DailyCount)) if c.kind == "outbox"}
        assert counts == {("sent", 5), ("failed", 1)}
        assert sent_per_day(session, (NOW - timedelta(days=120)).date(), TZ) == before   # totals survive
    assert _pruner(engine).run(NOW).deleted["outbox"] == 0                              # idempotent


def test_work_in_play_and_lottery_posts_are_never_touched(engine):
    with Session(engine) as session:
        for status in ("pending", "sending", "uncertain", "awaiting_confirmation"):
            _outbox(session, f"k-{status}", status, 400)
        _outbox(session, "lottery:1:opened", "sent", 400, source="lottery")
        session.commit()
    report = _pruner(engine).run(NOW)
    assert report.blanked == 0 and report.deleted["outbox"] == 0
    with Session(engine) as session:
        assert all(r.text for r in session.exec(select(OutboxMessage)))


def test_a_key_outlives_its_text_so_nothing_is_sent_twice(engine):
    """A blanked row keeps its key: enqueueing the same logical message again is still ignored."""
    from bot._clock import VirtualClock
    from bot._config import PacingSettings
    from bot._outbox import Outbox

    with Session(engine) as session:
        _outbox(session, "sop:daily:morning:g1:2026-10-01", "sent", 45)
        session.commit()
    _pruner(engine).run(NOW)

    async def send(message):  # pragma: no cover - nothing must be sent
        raise AssertionError(message)

    outbox = Outbox("a", engine, VirtualClock(NOW), PacingSettings(), send)
    with Session(engine) as session:
        outbox.enqueue(session, key="sop:daily:morning:g1:2026-10-01", text="早安", room_id="g1")
        session.commit()
        rows = session.exec(select(OutboxMessage)).all()
    assert len(rows) == 1 and rows[0].status == "sent" and rows[0].text == ""


def test_deliveries_and_timers_by_their_own_ages_in_small_batches(engine):
    with Session(engine) as session:
        for i in range(250):
            at = NOW - timedelta(days=200)
            session.add(SopDelivery(account="a", key=f"d{i}", file="daily", step="morning", room_id=f"g{i}",
                                    due_at=at, status="done", sent_at=at))
            session.add(ScheduledTask(account="a", plugin="quiz", name="close", key=f"t{i}", due_at=at,
                                      status="done", fired_at=at))
        session.add(SopDelivery(account="a", key="pending", file="daily", step="morning", room_id="g1",
                                due_at=NOW - timedelta(days=200), status="pending"))
        session.add(ScheduledTask(account="a", plugin="quiz", name="close", key="later",
                                  due_at=NOW + timedelta(days=1)))
        session.commit()
    report = _pruner(engine, batch=100).run(NOW)
    assert report.deleted["delivery"] == 250 and report.deleted["task"] == 250
    with Session(engine) as session:
        assert [d.key for d in session.exec(select(SopDelivery))] == ["pending"]
        assert [t.key for t in session.exec(select(ScheduledTask))] == ["later"]
        counted = {(c.kind, c.source, c.count) for c in session.exec(select(DailyCount))}
        assert counted == {("delivery", "daily", 250), ("task", "quiz", 250)}


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"sent_texts": "60d", "outbox": "30d"}, "outbox must be at least as long as sent_texts"),
    ({"tasks": "2d"}, "at least 8 days"),
    ({"at": "25:00"}, "retention"),
])
def test_unsafe_settings_are_refused(settings, fragment):
    with pytest.raises(ConfigError) as err:
        parse_config({"retention": settings})
    assert fragment in str(err.value)


async def test_runs_daily_in_a_running_bot(repo):
    async with BotHarness(repo, plugins=["points"], start="2026-01-01T09:00:00+08:00") as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "签到")
        await bot.advance("1d")
        with bot.db() as db:
            assert db.exec(select(OutboxMessage.text)).first() != ""
        await bot.advance("31d")                       # the 04:30 run after 30 days blanks the reply
        with bot.db() as db:
            assert db.exec(select(OutboxMessage.text)).first() == ""
