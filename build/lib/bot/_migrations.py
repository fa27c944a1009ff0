"""Schema versions per owner (core and each plugin), so an upgrade keeps a group's data.

New tables come from `create_all`, which only ever adds. Changes to existing
tables are numbered `Migration`s an owner ships; each runs once, in order, in a
transaction, and the applied version is recorded. Alembic's single linear
history does not fit plugins that are installed and upgraded independently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, select

from bot._models import SchemaVersion

log = logging.getLogger("qunbot.db")
_MIGRATION_LOCK = 0x71756E626F74  # "qunbot"


@dataclass(frozen=True, slots=True)
class Migration:
    """Step `version` of an owner's schema: `apply` alters existing tables with plain SQL."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def current_version(engine: Engine, owner: str) -> int | None:
    with Session(engine) as session:
        row = session.get(SchemaVersion, owner)
        return None if row is None else row.version


def upgrade(engine: Engine, owners: dict[str, Sequence[Migration]]) -> dict[str, int]:
    """Create missing tables, then bring every owner to its latest version.

    On PostgreSQL an advisory lock makes processes starting together migrate one after the other
    (two `create_all` at once collide on the catalog); it is released with its connection.
    """
    with engine.connect() as guard:
        if guard.dialect.name == "postgresql":
            guard.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
        try:
            return _upgrade(engine, owners)
        finally:
            if guard.dialect.name == "postgresql":
                guard.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})


def _upgrade(engine: Engine, owners: dict[str, Sequence[Migration]]) -> dict[str, int]:
    SQLModel.metadata.create_all(engine)
    applied: dict[str, int] = {}
    for owner, migrations in owners.items():
        steps = sorted(migrations, key=lambda m: m.version)
        latest = steps[-1].version if steps else 1
        with engine.begin() as conn:
            row = conn.execute(select(SchemaVersion.version).where(SchemaVersion.owner == owner)).first()
            if row is None:
                # Fresh owner: create_all just built its tables at the latest shape.
                conn.execute(SchemaVersion.__table__.insert().values(owner=owner, version=latest))
                version = latest
            else:
                version = row[0]
            for step in steps:
                if step.version > version:
                    log.info("migrating %s to version %d: %s", owner, step.version, step.description)
                    step.apply(conn)
                    version = step.version
            conn.execute(
                SchemaVersion.__table__.update().where(SchemaVersion.owner == owner).values(version=version)
            )
        applied[owner] = version
    return applied

