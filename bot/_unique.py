"""Insert a row unless a unique constraint says it exists: the "once per member" invariants plugins need.

The database decides, not a read-then-write in Python, so two handlers racing cannot both insert;
a conflict leaves the caller's transaction usable (no IntegrityError to roll back).
"Was it inserted?" is asked with RETURNING, not `rowcount`: on PostgreSQL, SQLAlchemy adds an implicit
RETURNING for serial keys and `rowcount` is then -1 whether or not a row went in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import literal_column
from sqlmodel import Session, SQLModel

from bot._db import Prepared, dialect_insert

_STATEMENTS: dict[tuple[str, Any, tuple[str, ...]], Prepared] = {}


def insert_unique(session: Session, model: type[SQLModel], **values: Any) -> bool:
    """INSERT … ON CONFLICT DO NOTHING in the caller's transaction; True if the row was inserted."""
    dialect = session.get_bind().dialect.name
    table = model.__table__  # type: ignore[attr-defined]
    keys = tuple(values)
    statement = _STATEMENTS.get((dialect, table, keys))
    if statement is None:  # one statement per table and columns, values as parameters: compiled once, not per row
        insert = dialect_insert(dialect)
        statement = _STATEMENTS[(dialect, table, keys)] = Prepared(
            insert(table).on_conflict_do_nothing().returning(literal_column("1")), keys)
    return statement.first(session, values) is not None
