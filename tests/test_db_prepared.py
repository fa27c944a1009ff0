"""Prepared statements (bot/_db.py): the same rows, values and errors as SQLAlchemy's own path, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, event, literal_column, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from bot._db import Prepared, dialect_insert, make_engine
from bot._migrations import upgrade
from bot._models import OutboxMessage

_T = OutboxMessage.__table__  # type: ignore[attr-defined]
_KEYS = ("account", "key", "room_id", "text", "mentions", "created_at", "not_before", "parts", "source", "status",
         "attempts", "priority")
SHANGHAI = timezone(timedelta(hours=8))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path}/p.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine, {"core": []})
    yield engine
    engine.dispose()


def _insert(engine) -> Prepared:
    return Prepared(dialect_insert(engine.dialect.name)(_T).on_conflict_do_nothing(index_elements=["account", "key"])
                    .returning(_T.c.id), _KEYS)


def _row(key: str, at: datetime) -> dict:
    return {"account": "a", "key": key, "room_id": "g1", "text": "你好", "mentions": ["u1"], "created_at": at,
            "not_before": at, "parts": [{"member": {"id": "u1"}, "points": 10}], "source": "t", "status": "pending",
            "attempts": 0, "priority": 0}


def _prepared(statement: Prepared, engine) -> bool:
    """Whether it ran on the DBAPI cursor (not SQLAlchemy's ordinary path)."""
    return statement._by_dialect.get(engine.dialect.name) is not None


def test_values_go_in_and_come_out_as_through_sqlalchemy(engine):
    at = datetime(2026, 11, 29, 8, 0, 0, 123456, tzinfo=SHANGHAI)
    newest = Prepared(select(_T.c.id, _T.c.parts, _T.c.created_at).where(_T.c.key == bindparam("key")))
    insert = _insert(engine)
    with Session(engine) as session:
        assert insert.first(session, _row("k1", at)) is not None
        assert insert.first(session, _row("k1", at)) is None  # the conflict: nothing returned
        session.commit()
        row_id, parts, created = newest.first(session, {"key": "k1"})
        assert newest.all(session, {"key": "k1"}) == [(row_id, parts, created)]
        assert newest.all(session, {"key": "none"}) == [] and newest.first(session, {"key": "none"}) is None
        stored = session.get(OutboxMessage, row_id)
    assert parts == stored.parts == [{"member": {"id": "u1"}, "points": 10}]
    assert created == stored.created_at == at.astimezone(UTC)
    assert stored.mentions == ["u1"] and stored.text == "你好"
    assert _prepared(insert, engine) and _prepared(newest, engine)


def test_rowcount_and_a_driver_error_come_out_as_sqlalchemy_reports_them(engine):
    at = datetime(2026, 11, 29, tzinfo=UTC)
    touch = Prepared(update(_T).where(_T.c.key == bindparam("k")).values(attempts=_T.c.attempts + 1))
    plain = Prepared(_T.insert().returning(literal_column("1")), _KEYS)
    with Session(engine) as session:
        plain.first(session, _row("k1", at))
        assert touch.rowcount(session, {"k": "k1"}) == 1
        assert touch.rowcount(session, {"k": "nope"}) == 0
        with pytest.raises(IntegrityError):  # what `database_unreachable` and the handlers' error paths expect
            plain.first(session, _row("k1", at))
    assert _prepared(touch, engine) and _prepared(plain, engine)


def test_with_an_engine_listener_it_runs_the_ordinary_way(engine):
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: seen.append(statement))
    with Session(engine) as session:
        _insert(engine).first(session, _row("k1", datetime(2026, 11, 29, tzinfo=UTC)))
    assert any(statement.startswith("INSERT INTO core_outbox") for statement in seen)


def test_a_cut_connection_is_reported_as_such_and_the_next_session_gets_a_fresh_one(postgres_url):
    import psycopg

    from bot._db import database_unreachable

    engine = make_engine(postgres_url)
    upgrade(engine, {"core": []})
    at = datetime(2026, 11, 29, tzinfo=UTC)
    insert = _insert(engine)
    try:
        with Session(engine) as session:
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()  # in a transaction
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(DBAPIError) as cut:
                insert.first(session, _row("k2", at))
        assert cut.value.connection_invalidated and database_unreachable(cut.value) and _prepared(insert, engine)
        with Session(engine) as session:
            assert insert.first(session, _row("k2", at)) is not None
            session.commit()
    finally:
        engine.dispose()


def test_it_sees_what_the_session_added_but_has_not_flushed(engine):
    """Like `session.execute`, a prepared statement run on a session flushes pending ORM changes first, so
    a plugin that adds a row and then reads it with a prepared statement finds it."""
    at = datetime(2026, 11, 29, 8, 0, tzinfo=SHANGHAI)
    count = Prepared(select(_T.c.id).where(_T.c.key == bindparam("key")))
    with Session(engine) as session:
        session.add(OutboxMessage(**_row("added", at)))
        assert count.first(session, {"key": "added"}) is not None
