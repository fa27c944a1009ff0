"""Account leases on real PostgreSQL: one holder at a time, take-over only after expiry, fenced sends."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import SQLModel

from bot._db import make_engine
from bot._lease import Lease
from bot._models import AccountLease


def expire(engine, account: str) -> None:
    """What the passing of `lease_ttl` without a heartbeat does to the row."""
    with engine.begin() as conn:
        conn.execute(update(AccountLease).where(AccountLease.account == account)
                     .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_only_one_of_many_racing_processes_gets_the_lease(pg_url):
    engine = make_engine(pg_url)
    SQLModel.metadata.create_all(engine)
    leases = [Lease(make_engine(pg_url), "a1", f"p{i}", ttl=30) for i in range(8)]
    barrier = threading.Barrier(len(leases))
    won: list[str] = []

    def race(lease: Lease) -> None:
        barrier.wait()
        if lease.acquire():
            won.append(lease.owner)

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 1
    owner, epoch, _ = leases[0].holder()
    assert owner == won[0] and epoch == 1


def test_a_live_lease_is_kept_an_expired_one_is_taken_over_and_the_old_holder_learns_it(pg_url):
    engine = make_engine(pg_url)
    SQLModel.metadata.create_all(engine)
    first, second = Lease(engine, "a1", "p1", ttl=30), Lease(engine, "a1", "p2", ttl=30)
    assert first.acquire() and first.held()
    assert not second.acquire()
    assert first.renew()
    expire(engine, "a1")
    assert second.acquire() and second.epoch == 2
    assert not first.renew()  # the old holder must stop the account
    assert not first.held() and first.epoch is None
    assert second.renew() and second.holder()[:2] == ("p2", 2)


def test_a_clean_release_lets_a_standby_in_at_once(pg_url):
    engine = make_engine(pg_url)
    SQLModel.metadata.create_all(engine)
    first, second = Lease(engine, "a1", "p1", ttl=300), Lease(engine, "a1", "p2", ttl=300)
    assert first.acquire()
    first.release()
    assert not first.held()
    assert second.acquire()


def test_the_fence_admits_only_the_current_holder(pg_url):
    engine = make_engine(pg_url)
    SQLModel.metadata.create_all(engine)
    first, second = Lease(engine, "a1", "p1", ttl=30), Lease(engine, "a1", "p2", ttl=30)
    assert first.acquire()
    with engine.connect() as conn:
        assert conn.execute(select(first.fence())).scalar_one() is True
        expire(engine, "a1")
        assert conn.execute(select(first.fence())).scalar_one() is False  # expired: even before anyone takes it
        assert second.acquire()
        assert conn.execute(select(second.fence())).scalar_one() is True
        assert conn.execute(select(first.fence())).scalar_one() is False


def test_leases_work_on_sqlite_too(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/bot.db")
    SQLModel.metadata.create_all(engine)
    first, second = Lease(engine, "a1", "p1", ttl=30), Lease(engine, "a1", "p2", ttl=30)
    assert first.acquire() and not second.acquire()
    expire(engine, "a1")
    assert second.acquire() and not first.renew()
    with engine.connect() as conn:
        assert conn.execute(select(second.fence())).scalar_one() == 1
        assert conn.execute(select(first.fence())).scalar_one() == 0
