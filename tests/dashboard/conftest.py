"""One simulated week shared by the dashboard tests (it takes a few seconds to run)."""

from __future__ import annotations

import asyncio

import pytest
from week_data import REPO, Week, simulate_week


@pytest.fixture(scope="session")
def week_db(tmp_path_factory) -> tuple[str, Week]:
    url = f"sqlite:///{tmp_path_factory.mktemp('week')}/week.db"
    return url, asyncio.run(simulate_week(REPO, url))
