"""Fixtures for the WeCom tests: the mock server API on 127.0.0.1."""

from __future__ import annotations

import pytest
from wecom_mock import MockServer, WecomMock


@pytest.fixture
def wecom():
    """A running mock with two customer groups; `.mock` is its state, `.url` the API base."""
    mock = WecomMock()
    mock.add_group("wrGroupA", "完子研究所1群", "owner_a")
    mock.add_group("wrGroupB", "完子研究所2群", "owner_b")
    with MockServer(mock) as server:
        yield server
