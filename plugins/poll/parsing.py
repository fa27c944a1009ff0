"""How members and admins write polls and votes in chat, forgiving the way people type."""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[|｜\n]")
_NUMBER = re.compile(r"(?:第\s*)?(\d{1,2})\s*(?:号|个|项)?")
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_TRIM = " \t.。,，!！?？~～:：、"


def normalize(text: str) -> str:
    """Full-width to half-width (NFKC), lower case, outer spaces and punctuation dropped."""
    return unicodedata.normalize("NFKC", text).lower().strip(_TRIM)


def parse_poll(args: str) -> tuple[str, list[str], str | None]:
    """`下期上新选哪款？|玫瑰口红|保湿面膜|时长=1d` (or one per line) → title, options, duration.

    Title and options keep what the admin typed (a full-width ？ stays ？); only the separators and the
    `时长=` keyword are read width-blind."""
    parts = [p.strip() for p in _SEPARATORS.split(args) if p.strip()]
    duration = None
    if parts and unicodedata.normalize("NFKC", parts[-1]).startswith("时长="):
        duration = unicodedata.normalize("NFKC", parts.pop()).removeprefix("时长=").strip()
    if len(parts) < 3:
        raise ValueError("需要一个标题和至少两个选项，用 | 或换行分隔")
    return parts[0], parts[1:], duration


def choice(text: str, options: list[str]) -> int | None:
    """The 0-based option a vote text names: `2`, `２号`, `第二个`, or the option's own text."""
    cleaned = normalize(text)
    if match := _NUMBER.fullmatch(cleaned):
        number = int(match[1])
    elif cleaned.removeprefix("第").removesuffix("个").removesuffix("号") in _NUMERALS:
        number = _NUMERALS[cleaned.removeprefix("第").removesuffix("个").removesuffix("号")]
    else:
        wanted = [i for i, option in enumerate(options) if normalize(option) == cleaned]
        return wanted[0] if wanted else None
    return number - 1 if 1 <= number <= len(options) else None
