"""Durations as admins type them in chat commands: `10m`, `1h30m`, `90s`, `2d`, `30分钟`, `2小时`."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

_UNITS = {"d": 86400, "天": 86400, "h": 3600, "小时": 3600, "时": 3600, "m": 60, "min": 60, "分钟": 60, "分": 60,
          "s": 1, "秒": 1}
_PART = re.compile(r"(\d+)\s*(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + ")")


def parse_duration(text: str) -> timedelta:
    """Parse a positive duration; raise ValueError with an example when it is not one."""
    cleaned = unicodedata.normalize("NFKC", text).strip().lower()
    total, pos = 0, 0
    for match in _PART.finditer(cleaned):
        if cleaned[pos:match.start()].strip():
            break
        total += int(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if pos == 0 or cleaned[pos:].strip() or total <= 0:
        raise ValueError(f"时长 {text!r} 看不懂：写成 30s、10m、1h30m、2d 或 30分钟")
    return timedelta(seconds=total)
