"""Fault tests: `pg_url` (a throwaway PostgreSQL database) comes from tests/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

# The real-process helpers live beside the scale-out tests; the fault tests drive the same processes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scale"))
