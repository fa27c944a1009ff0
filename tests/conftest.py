"""Shared fixtures: an empty bot project folder, and the repository's own project."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty bot project: built-in defaults apply."""
    (tmp_path / "scripts_templates").mkdir()
    return tmp_path


@pytest.fixture
def repo() -> Path:
    return REPO


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url():
    """A throwaway database on the local PostgreSQL (127.0.0.1:5432, trust auth), dropped afterwards."""
    import uuid

    psycopg = pytest.importorskip("psycopg", reason="PostgreSQL tests need the postgres extra (psycopg)")
    name = f"qunbot_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (database test) is unreachable: {err}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(postgres_url):
    """The same throwaway PostgreSQL database (the name the fault and scale-out tests use)."""
    return postgres_url


@pytest.fixture(autouse=True)
def admin_messages_are_chinese(monkeypatch):
    """Issue 15: every `check` / `sop check` problem any test provokes reaches the admin in Chinese, with no
    pydantic or jinja English left in it. Records what the checks return and fails the test that caused it."""
    import bot._checks
    import bot.sop._check
    import bot.sop._engine
    from bot._i18n import is_translated

    seen: list[str] = []

    def recording(function, pick):
        def wrapper(*args, **kwargs):
            result = function(*args, **kwargs)
            seen.extend(pick(result))
            return result
        return wrapper

    monkeypatch.setattr(bot.sop._check, "load_all", recording(bot.sop._check.load_all, lambda r: r[1].values()))
    monkeypatch.setattr(bot.sop._engine, "load_all", recording(bot.sop._engine.load_all, lambda r: r[1].values()))
    monkeypatch.setattr(bot.sop._check, "marketing_problems", recording(bot.sop._check.marketing_problems, list))
    monkeypatch.setattr(bot._checks, "run_checks", recording(bot._checks.run_checks, list))
    yield seen
    untranslated = [problem for problem in seen if not is_translated(problem)]
    assert not untranslated, f"admin-facing messages with pydantic/jinja English: {untranslated}"


_RECURSION_LIMIT = __import__("sys").getrecursionlimit()


@pytest.fixture(autouse=True)
def recursion_limit_is_left_alone():
    """A library that raises the interpreter's recursion limit (py_ecc sets 100 000 on import) turns a runaway
    recursion, such as a template that includes itself, into a segfault of the whole run: fail instead."""
    import sys

    assert sys.getrecursionlimit() == _RECURSION_LIMIT, (
        f"the recursion limit is {sys.getrecursionlimit()}, not {_RECURSION_LIMIT}: something imported at "
        "collection raised it (restore it after the import, as plugins/lottery/beacon.py does)")
    yield
    assert sys.getrecursionlimit() == _RECURSION_LIMIT, f"the test left the limit at {sys.getrecursionlimit()}"
