"""Insert a row unless a unique constraint says it exists: the "once per member" invariants plugins need.

The database decides, not a read-then-write in Python, so two handlers racing cannot both insert;
a conflict leaves the caller's transaction usable (no IntegrityError to roll back).
"Was it inserted?" is asked with RETURNING, not `rowcount`: on PostgreSQL, SQLAlchemy adds an implicit
RETURNING for serial keys and `rowcount` is then -1 whether or not a row went in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel


def insert_unique(session: Session, model: type[SQLModel], **values: Any) -> bool:
    """INSERT … ON CONFLICT DO NOTHING in the caller's transaction; True if the row was inserted."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = model.__table__  # type: ignore[attr-defined]
    result = session.execute(insert(table).values(**values).on_conflict_do_nothing().returning(literal_column("1")))
    return result.first() is not None
