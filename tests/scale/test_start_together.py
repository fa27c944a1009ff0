"""Processes started together on an empty PostgreSQL database migrate one after the other."""

from __future__ import annotations

import threading

from sqlalchemy import inspect

import bot.sop._models  # noqa: F401  (the SOP ledger is one of the tables created)
from bot._db import make_engine
from bot._migrations import current_version, upgrade

RACERS = 6


def test_several_processes_creating_the_schema_at_once_do_not_collide(pg_url):
    engines = [make_engine(pg_url) for _ in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    errors: list[str] = []

    def start(engine) -> None:
        barrier.wait()
        try:
            upgrade(engine, {"core": []})
        except Exception as err:  # the outcome under test
            errors.append(repr(err))

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert {"core_outbox", "core_account_lease", "sop_delivery"} <= set(inspect(engines[0]).get_table_names())
    assert current_version(engines[0], "core") == 1
    for engine in engines:
        engine.dispose()
