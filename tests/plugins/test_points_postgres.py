"""points on PostgreSQL under real concurrency: threads with their own connections racing on one row."""

from __future__ import annotations

import sys
import threading
from datetime import date
from pathlib import Path

from sqlmodel import Session, select

from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
RACERS = 8


def _race(engine, work) -> list[object]:
    """Run `work(session)` in RACERS threads released together; each commits its own transaction."""
    barrier = threading.Barrier(RACERS)
    results: list[object] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        with Session(engine) as session:
            barrier.wait()
            try:
                outcome: object = work(session, index)
                session.commit()
            except Exception as err:  # the outcome under test: which racers were refused, and how
                session.rollback()
                outcome = type(err).__name__
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


async def test_concurrent_sign_ins_make_one_row_and_one_grant(postgres_url):
    async with BotHarness(REPO, plugins=["points"], db_url=postgres_url) as bot:
        service = bot.runtime.plugins["points"].service
        models = sys.modules[type(service).__module__.replace(".service", ".models")]
        day = date(2026, 11, 23)
        results = _race(bot.runtime.engine, lambda s, _: service.sign_in(
            s, room_id="g1", member_id="u1", day=day, at=bot.now, points_for_streak=lambda n: 10))
        assert sum(r is not None for r in results) == 1, results
        with bot.db() as db:
            assert len(db.exec(select(models.PointsSignIn)).all()) == 1
            assert service.balance(db, "g1", "u1") == service.ledger_balance(db, "g1", "u1") == 10


async def test_concurrent_redemptions_never_oversell_or_overdraw(postgres_url):
    async with BotHarness(REPO, plugins=["points"], db_url=postgres_url) as bot:
        service = bot.runtime.plugins["points"].service
        with bot.db() as db:
            for i in range(RACERS):
                service.grant(db, room_id="g1", member_id=f"u{i}", amount=100, reason="t", source="test", at=bot.now)
            service.grant(db, room_id="g1", member_id="rich", amount=250, reason="t", source="test", at=bot.now)
            db.commit()
        # eight members race for three items
        results = _race(bot.runtime.engine, lambda s, i: service.redeem(
            s, room_id="g1", member_id=f"u{i}", item="袋", cost=100, stock=3, at=bot.now).id)
        assert sum(isinstance(r, int) for r in results) == 3 and results.count("SoldOut") == 5, results
        # one member with points for two races eight times for a plentiful item
        rich = _race(bot.runtime.engine, lambda s, _: service.redeem(
            s, room_id="g1", member_id="rich", item="贴纸", cost=100, stock=100, at=bot.now).id)
        assert sum(isinstance(r, int) for r in rich) == 2 and rich.count("InsufficientPoints") == 6, rich
        with bot.db() as db:
            assert service.sold(db, "袋") == 3 and service.sold(db, "贴纸") == 2
            assert service.balance(db, "g1", "rich") == service.ledger_balance(db, "g1", "rich") == 50
