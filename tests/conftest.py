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
