"""Database engine and session factory: SQLite (WAL) by default, PostgreSQL by URL.

The runtime uses synchronous SQLAlchemy sessions: SQLite commits take well under
a millisecond, and plugin authors write plain sqlmodel code with no await.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
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
        return _plain_savepoints(engine)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return _plain_savepoints(create_engine(parsed, pool_pre_ping=True))


def _plain_savepoints(engine: Engine) -> Engine:
    """SAVEPOINT / RELEASE / ROLLBACK TO as plain SQL on the same connection (its events and error handling).

    SQLAlchemy compiles each anew (every savepoint has its own name, so none is cached), and a group commit
    opens one per handler run: the two compiles cost more than a sign-in's own INSERTs."""
    dialect, quote = engine.dialect, engine.dialect.identifier_preparer.quote
    dialect.do_savepoint = lambda conn, name: conn.exec_driver_sql(f"SAVEPOINT {quote(name)}")  # type: ignore[method-assign]
    dialect.do_release_savepoint = (  # type: ignore[method-assign]
        lambda conn, name: conn.exec_driver_sql(f"RELEASE SAVEPOINT {quote(name)}"))
    dialect.do_rollback_to_savepoint = (  # type: ignore[method-assign]
        lambda conn, name: conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {quote(name)}"))
    return engine


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


def _connection(target: Session | Connection) -> Connection:
    """The connection to run on; a session first flushes its pending ORM changes, as `session.execute` does."""
    if isinstance(target, Connection):
        return target
    if target.autoflush:
        target.flush()
    return target.connection()


class Prepared:
    """A hot Core statement compiled once per database and run straight on the DBAPI cursor.

    SQLAlchemy's own work per execution (cache key, parameter and result set-up) is ~9 µs, four times what
    SQLite takes for a small INSERT, and a sign-in runs eight such statements. Values still go through the
    type processors SQLAlchemy would apply, results through its result processors, and a driver error comes
    out as SQLAlchemy's (a dropped connection invalidates it). While anything listens to the engine's
    statements (tests inject faults that way) it runs the ordinary way. `keys`: the INSERT's columns.
    Run it in a session (pending ORM changes are flushed first, as `session.execute` does), or on
    `session.connection()` fetched once for several (that lookup costs too; nothing is flushed then).
    """

    def __init__(self, statement: Any, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._keys = list(keys) if keys is not None else None
        self._by_dialect: dict[str, _Compiled | None] = {}

    def first(self, session: Session | Connection, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row (a tuple), or None."""
        conn = _connection(session)
        compiled = self._compiled(conn)
        if compiled is None:
            return conn.execute(self.statement, params).first()
        return compiled.run(conn, params, fetch="one")

    def all(self, session: Session | Connection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        conn = _connection(session)
        compiled = self._compiled(conn)
        if compiled is None:
            return list(conn.execute(self.statement, params).all())
        return compiled.run(conn, params, fetch="all")

    def rowcount(self, session: Session | Connection, params: Mapping[str, Any]) -> int:
        conn = _connection(session)
        compiled = self._compiled(conn)
        if compiled is None:
            return int(conn.execute(self.statement, params).rowcount)  # type: ignore[attr-defined]
        return compiled.run(conn, params, fetch=None)

    def _compiled(self, conn: Connection) -> _Compiled | None:
        if (conn._has_events or conn.engine._has_events) and _listened(conn):  # a flag stays set: ask the lists
            return None
        name = conn.dialect.name
        if name not in self._by_dialect:
            self._by_dialect[name] = _Compiled.of(self.statement, conn.dialect, self._keys)
        return self._by_dialect[name]


def _listened(conn: Connection) -> bool:
    events = conn.dispatch
    return bool(events.before_execute or events.after_execute or events.before_cursor_execute
                or events.after_cursor_execute)


class _Compiled:
    def __init__(self, compiled: Any, dialect: Any, columns: Sequence[Any]) -> None:
        self._compiled = compiled
        self._sql = compiled.string
        self._positional = bool(dialect.positional)
        positions = list(compiled.positiontup or ()) if dialect.positional else []
        self._pick = (itemgetter(*positions) if len(positions) > 1
                      else (lambda values: (values[positions[0]],)) if positions else (lambda values: ()))
        processors = ((compiled.escaped_bind_names.get(key, key), bind.type.dialect_impl(dialect).bind_processor(
            dialect)) for key, bind in compiled.binds.items())
        self._binds = [(name, process) for name, process in processors if process is not None]
        self._results = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        self._converts = any(self._results)

    @classmethod
    def of(cls, statement: Any, dialect: Any, keys: list[str] | None) -> _Compiled | None:
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        if compiled.insert_prefetch or compiled.update_prefetch or compiled.literal_execute_params \
                or compiled.post_compile_params:
            return None  # values SQLAlchemy computes or expands per execution: the ordinary way
        columns = list(statement.exported_columns) if hasattr(statement, "exported_columns") else []
        return cls(compiled, dialect, columns)

    def run(self, conn: Connection, params: Mapping[str, Any], *, fetch: str | None) -> Any:
        values = self._compiled.construct_params(params)
        for name, process in self._binds:
            values[name] = process(values[name])
        args = self._pick(values) if self._positional else values
        cursor = None
        try:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(self._sql, args)
            if fetch is None:
                return cursor.rowcount
            rows = [] if not cursor.description else cursor.fetchall() if fetch == "all" else [cursor.fetchone()]
        except Exception as err:
            conn._handle_dbapi_exception(err, self._sql, args, cursor, None)
        finally:
            if cursor is not None:
                with suppress(Exception):
                    cursor.close()
        if self._converts:
            rows = [row if row is None else self._convert(row) for row in rows]
        return rows if fetch == "all" else rows[0] if rows else None

    def _convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(value if process is None else process(value)
                     for value, process in zip(row, self._results, strict=False))


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
