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


def _dirty(value: Any) -> bool:
    """Whether `value` holds a text `clean_text` would change (cheap: nearly every event is clean)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        if value.isascii():
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, MemberRef):
        return _dirty(value.id) or _dirty(value.name)
    if isinstance(value, tuple):
        return any(_dirty(item) for item in value)
    if isinstance(value, dict):
        return any(_dirty(key) or _dirty(item) for key, item in value.items())
    return False


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


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return names


def clean(value: T) -> T:
    """A copy of an event or room snapshot (frozen dataclasses) with every text in it cleaned."""
    changes = {}
    for name in _fields(type(value)):
        old = getattr(value, name)
        if _dirty(old):
            changes[name] = _clean(old)
    return dataclasses.replace(value, **changes) if changes else value  # type: ignore[type-var]


def clean_event(event: Event) -> Event:
    return clean(event)


def clean_snapshots(snapshots: Iterable[RoomSnapshot]) -> list[RoomSnapshot]:
    return [clean(snapshot) for snapshot in snapshots]


def room_roles(snapshots: Iterable[RoomSnapshot]) -> dict[str, set[str]]:
    """Each room's admins and owner, cleaned: all a role refresh reads. (Cleaning whole snapshots, every
    member's name in every room every 10 minutes, grew with the rooms: bench/README.md, the soak.)"""
    return {clean_text(snap.id): {clean_text(member) for member in
                                  (*snap.admin_ids, *((snap.owner_id,) if snap.owner_id else ()))}
            for snap in snapshots}
