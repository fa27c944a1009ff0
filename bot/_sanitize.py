"""Text from WeChat is cleaned once, where it enters the runtime, so no adapter has to remember to.

PostgreSQL refuses NUL characters in text, and no database takes a lone surrogate (not valid UTF-8):
one such nickname made every later statement touching it fail, from 排行榜 to a lottery draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from bot._events import Event, MemberRef, RoomSnapshot

T = TypeVar("T")


def clean_text(text: str) -> str:
    """`text` without NUL characters, lone surrogates replaced: storable on SQLite and PostgreSQL alike."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, MemberRef):
        return MemberRef(clean_text(value.id), clean_text(value.name))
    if isinstance(value, tuple):
        return tuple(_clean(item) for item in value)
    if isinstance(value, dict):
        return {_clean(key): _clean(item) for key, item in value.items()}
    return value


def clean(value: T) -> T:
    """A copy of an event or room snapshot (frozen dataclasses) with every text in it cleaned."""
    changes = {}
    for field in dataclasses.fields(value):  # type: ignore[arg-type]
        old = getattr(value, field.name)
        new = _clean(old)
        if new != old:
            changes[field.name] = new
    return dataclasses.replace(value, **changes) if changes else value  # type: ignore[type-var]


def clean_event(event: Event) -> Event:
    return clean(event)


def clean_snapshots(snapshots: Iterable[RoomSnapshot]) -> list[RoomSnapshot]:
    return [clean(snapshot) for snapshot in snapshots]
