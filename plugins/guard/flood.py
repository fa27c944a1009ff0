"""Flood detection: too many messages from one member in a short window, or the same text again and again.

In memory on purpose: a flood is about the last seconds, and a restart forgetting it costs nothing. Every
window is bounded (deques with a maximum length, rooms and members evicted when quiet), so a flood of
distinct senders cannot grow memory without limit.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta

from .rules import Finding, fold

_MAX_TRACKED = 20_000
"""Members tracked at once across rooms; the least recently active are forgotten first."""


class FloodWatch:
    """Counts each member's recent messages per room; `see` returns a Finding when a limit is crossed."""

    def __init__(self, *, messages: int, seconds: float, repeats: int, repeat_seconds: float) -> None:
        self.messages = messages
        self.window = timedelta(seconds=seconds)
        self.repeats = repeats
        self.repeat_window = timedelta(seconds=repeat_seconds)
        self._seen: OrderedDict[tuple[str, str], deque[tuple[datetime, str]]] = OrderedDict()
        self._room: dict[str, deque[datetime]] = {}

    def see(self, room_id: str, member_id: str, text: str, at: datetime) -> Finding | None:
        key = (room_id, member_id)
        recent = self._seen.pop(key, None) or deque(maxlen=max(self.messages, self.repeats) + 1)
        self._seen[key] = recent
        while len(self._seen) > _MAX_TRACKED:
            self._seen.popitem(last=False)
        horizon = at - max(self.window, self.repeat_window)
        while recent and recent[0][0] < horizon:
            recent.popleft()
        normal = fold(text).strip()
        recent.append((at, normal))
        room = self._room.setdefault(room_id, deque(maxlen=200))
        room.append(at)
        in_window = sum(1 for when, _ in recent if when >= at - self.window)
        if self.messages and in_window >= self.messages:
            return Finding("flood", "刷屏", f"{in_window} 条 / {int(self.window.total_seconds())} 秒")
        if normal and self.repeats:
            same = sum(1 for when, seen in recent if seen == normal and when >= at - self.repeat_window)
            if same >= self.repeats:
                return Finding("flood", "重复刷屏", normal[:200])
        return None

    def room_busy(self, room_id: str, at: datetime, *, messages: int = 10, seconds: float = 10) -> bool:
        """Is the room itself in a flood right now (many messages from anyone)? The FAQ keeps quiet then."""
        room = self._room.get(room_id)
        if not room:
            return False
        since = at - timedelta(seconds=seconds)
        return sum(1 for when in room if when >= since) >= messages

    def forget(self, room_id: str, member_id: str) -> None:
        self._seen.pop((room_id, member_id), None)
