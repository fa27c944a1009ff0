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

from bot._db import dialect_insert

_STATEMENTS: dict[tuple[str, Any], Any] = {}


def insert_unique(session: Session, model: type[SQLModel], **values: Any) -> bool:
    """INSERT … ON CONFLICT DO NOTHING in the caller's transaction; True if the row was inserted."""
    dialect = session.get_bind().dialect.name
    table = model.__table__  # type: ignore[attr-defined]
    statement = _STATEMENTS.get((dialect, table))
    if statement is None:  # one statement per table, values passed as parameters: compiled once, not per row
        insert = dialect_insert(dialect)
        statement = _STATEMENTS[(dialect, table)] = (
            insert(table).on_conflict_do_nothing().returning(literal_column("1")))
    return session.execute(statement, values).first() is not None
