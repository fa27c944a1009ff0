"""Durations as admins type them in chat commands: `10m`, `1h30m`, `90s`, `2d`, `30分钟`, `2小时`."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

_UNITS = {"d": 86400, "天": 86400, "h": 3600, "小时": 3600, "时": 3600, "m": 60, "min": 60, "分钟": 60, "分": 60,
          "s": 1, "秒": 1}
# Matched only at the current position (never searched), with bounded runs: linear in the text's length.
_PART = re.compile(r"\s{0,8}(\d{1,9})\s{0,8}(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + ")")
MAX_DURATION = timedelta(days=3660)
"""Ten years: beyond this a duration is a typo (and soon beyond what a datetime holds)."""


def parse_duration(text: str) -> timedelta:
    """Parse a positive duration; raise ValueError with an example when it is not one."""
    cleaned = unicodedata.normalize("NFKC", text).strip().lower()
    total, pos = 0, 0
    while pos < len(cleaned) and (match := _PART.match(cleaned, pos)) is not None:
        total += int(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if pos == 0 or cleaned[pos:].strip() or total <= 0:
        raise ValueError(f"时长 {text!r} 看不懂：写成 30s、10m、1h30m、2d 或 30分钟")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"时长 {text!r} 太长：最多 {MAX_DURATION.days} 天")
    return timedelta(seconds=total)
