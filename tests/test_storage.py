"""Storage: UTC datetimes, schema versions that keep data across an upgrade."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlmodel import Session

from bot._db import make_engine
from bot._migrations import Migration, current_version, upgrade
from bot._models import Membership


def test_datetimes_round_trip_as_aware_utc(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    upgrade(engine, {"core": []})
    joined = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    with Session(engine) as session:
        session.add(Membership(room_id="g1", member_id="u1", joined_at=joined))
        session.commit()
    with Session(engine) as session:
        row = session.get(Membership, ("g1", "u1"))
    assert row is not None and row.joined_at == joined and row.joined_at.utcoffset().total_seconds() == 0


def test_naive_datetimes_are_refused(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    upgrade(engine, {"core": []})
    with Session(engine) as session, pytest.raises(Exception, match="naive"):
        session.add(Membership(room_id="g1", member_id="u1", joined_at=datetime(2026, 1, 1)))
        session.commit()


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_upgrade_applies_new_steps_once_and_keeps_data(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE shop_item (id INTEGER PRIMARY KEY, name TEXT)"))
        conn.execute(text("INSERT INTO shop_item (name) VALUES ('口红')"))
    assert upgrade(engine, {"shop": []}) == {"shop": 1}

    calls: list[int] = []

    def add_stock(conn) -> None:
        calls.append(2)
        conn.execute(text("ALTER TABLE shop_item ADD COLUMN stock INTEGER NOT NULL DEFAULT 0"))

    steps = [Migration(2, "add stock", add_stock)]
    assert upgrade(engine, {"shop": steps}) == {"shop": 2}
    assert upgrade(engine, {"shop": steps}) == {"shop": 2}  # not applied twice
    assert calls == [2]
    assert current_version(engine, "shop") == 2
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name, stock FROM shop_item")).all() == [("口红", 0)]


def test_relative_sqlite_path_lives_in_the_project(tmp_path):
    engine = make_engine("sqlite:///data/q.db", base_dir=tmp_path)
    upgrade(engine, {"core": []})
    assert (tmp_path / "data" / "q.db").exists()
