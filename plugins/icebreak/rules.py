"""What counts as a nickname in the room's format, and what looks like a self-introduction.

Pure functions, so an admin's format and keywords can be tried without a bot running.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

SEPARATORS = "-_|/·~+ "
"""Characters that separate the fields of a readable format such as 城市-昵称-职业."""


def normalize(text: str) -> str:
    """Full-width letters and dashes to half-width (WeChat keyboards mix both), trimmed."""
    return unicodedata.normalize("NFKC", text).strip()


def pattern_from_format(readable: str) -> str:
    """`城市-昵称-职业` → a regex: three non-empty fields joined by `-` (spaces around it allowed).

    A field may hold any character but the separators this format uses, so `上海-安娜·卡列尼娜-设计师`
    and `上海-Anna Lee-设计师` fit; with a space as separator, fields hold no spaces.
    """
    text = normalize(readable)
    seps = re.findall(f"[{re.escape(SEPARATORS)}]+", text)
    fields = [f for f in re.split(f"[{re.escape(SEPARATORS)}]+", text) if f]
    if len(fields) < 2 or not seps:
        raise ValueError(f"nickname_format {readable!r} 至少要两段，用 {' '.join(SEPARATORS.strip())} 或空格"
                         "连起来（如 城市-昵称-职业）")
    used = set("".join(seps))
    other = re.escape("".join(sorted(used - {" "})))
    # Inner spaces allowed, none at the ends (they belong to the separator) — unless a space separates.
    field = f"[^{other}\\s]+" if " " in used else f"[^{other}\\s](?:[^{other}]*[^{other}\\s])?"
    parts = [field]
    for sep in seps:
        parts.append(rf"\s*{re.escape(sep.strip())}\s*" if sep.strip() else r"\s+")
        parts.append(field)
    return "".join(parts)


def nickname_fits(alias: str | None, pattern: str) -> bool:
    return bool(alias) and re.fullmatch(pattern, normalize(alias or "")) is not None


def looks_like_intro(text: str, *, min_length: int, keywords: Iterable[str]) -> bool:
    """Long enough and says something about oneself (我是 / 来自 / 坐标 …) — chatter like 「大家好」 is not."""
    cleaned = normalize(text).lower()
    length = len("".join(cleaned.split()))
    return length >= min_length and any(normalize(word).lower() in cleaned for word in keywords)
