"""A throwaway PostgreSQL database per test (the service at 127.0.0.1:5432, trust auth), dropped afterwards."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url():
    psycopg = pytest.importorskip("psycopg", reason="PostgreSQL tests need the postgres extra (psycopg)")
    name = f"qunbot_faults_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (database test) is unreachable: {err}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The real-process helpers live beside the scale-out tests; the fault tests drive the same processes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scale"))
