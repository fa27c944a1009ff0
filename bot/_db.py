"""Database engine and session factory: SQLite (WAL) by default, PostgreSQL by URL.

The runtime uses synchronous SQLAlchemy sessions: SQLite commits take well under
a millisecond, and plugin authors write plain sqlmodel code with no await.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use the bot clock's aware time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free pages (member forget)
    cursor.close()


def make_engine(url: str, *, base_dir: Path | None = None) -> Engine:
    """Create an engine; a relative SQLite path is taken relative to `base_dir`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).is_absolute() and base_dir:
            path = base_dir / database
            path.parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(path))
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")
"""SQLSTATEs of a server that is gone: connection exceptions, admin or crash shutdown, cannot connect now."""


def database_unreachable(err: BaseException) -> bool:
    """True if `err` (or what caused it) says the database server cannot be reached or cut the connection.

    A connection refused, a database not accepting connections, a connection cut mid-statement — not a
    bad statement, a constraint or a lock (SQLite's errors are never this: its file does not go away).
    """
    for _ in range(5):
        if isinstance(err, DBAPIError):
            if err.connection_invalidated:
                return True
            state = getattr(err.orig, "sqlstate", False)  # psycopg: None for a failure on the client side
            return isinstance(err, OperationalError) and (state is None or (
                isinstance(state, str) and state.startswith(_UNREACHABLE_STATES)))
        if err.__cause__ is None and err.__context__ is None:
            return False
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return False


def dialect_insert(dialect: str) -> Callable[..., Any]:
    """`insert()` with ON CONFLICT … DO NOTHING / DO UPDATE for this database ("postgresql" or "sqlite"):
    the two dialects' inserts take the same clauses, so one statement serves both."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
