"""Forgiving answer matching, the way people type on phones.

`Ａ`, `a`, `选A`, `答案A`, `答案是 a。`, `(A)`, `A.` all mean choice A; free answers ignore width, case,
spaces and punctuation. NFKC folds full-width letters and digits to their half-width forms.
"""

from __future__ import annotations

import re
import string
import unicodedata

_PREFIX = re.compile(r"^(?:我选|我猜|选择|选|答案是|答案|答)+")
_LETTER = re.compile(r"[\(\[（【]?([a-z])[\)\]）】]?")


def normalize_answer(text: str) -> str:
    """NFKC, lower case, and every space and punctuation or symbol character removed."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in folded if not unicodedata.category(ch).startswith(("Z", "P", "S", "C")))


def _strip_prefix(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).lower().strip()
    folded = _PREFIX.sub("", folded).strip(" :：")
    return folded


def choice_index(text: str, choices: list[str]) -> int | None:
    """The 0-based choice a reply names (letter or the choice's own text), or None."""
    stripped = _strip_prefix(text)
    letter = _LETTER.fullmatch(stripped.rstrip(".。、,，!！ "))
    if letter:
        index = string.ascii_lowercase.index(letter[1])
        return index if index < len(choices) else None
    wanted = normalize_answer(stripped)
    for index, option in enumerate(choices):
        if wanted and wanted == normalize_answer(option):
            return index
    return None


def is_correct(text: str, *, choices: list[str] | None, right: int | None, accepted: list[str]) -> bool:
    if choices is not None:
        return choice_index(text, choices) == right
    said = {normalize_answer(text), normalize_answer(_strip_prefix(text))} - {""}
    return any(normalize_answer(a) in said for a in accepted)


def looks_like_answer(text: str, *, choices: list[str] | None, max_length: int) -> bool:
    """Whether a message is an attempt (it then uses up the member's one answer to this question)."""
    if choices is not None:
        return choice_index(text, choices) is not None
    return 0 < len(normalize_answer(text)) <= max_length
