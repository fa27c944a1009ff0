"""A per-member command limit: one member spamming a command gets a bounded number of answers.

Commands (full-match words, keywords, command words, regexes, @-mentions of the bot) count per
member per room over a sliding window; beyond `limit`, that member's commands are ignored quietly
(no reply, one log line per window) while plain chatter still reaches `on_message` plugins.
Memory stays bounded: a member's window holds at most `limit` times, and idle windows are dropped.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

log = logging.getLogger("qunbot.limits")

_PRUNE_EVERY = 1000


class MemberRateLimit:
    """At most `limit` commands per (room, member) in any `window` seconds; `limit` 0 means no limit."""

    def __init__(self, limit: int, window: float, now: Callable[[], datetime]) -> None:
        self.limit = limit
        self.window = timedelta(seconds=window)
        self._now = now
        self._recent: dict[tuple[str, str], deque[datetime]] = {}
        self._warned: dict[tuple[str, str], datetime] = {}
        self._calls = 0

    def allow(self, room_id: str | None, member_id: str) -> bool:
        """Count one command; False if the member is over the limit (the command is then ignored)."""
        if self.limit <= 0:
            return True
        now = self._now()
        self._calls += 1
        if self._calls % _PRUNE_EVERY == 0:
            self._prune(now)
        key = (room_id or "", member_id)
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = deque(maxlen=self.limit)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) < self.limit:
            recent.append(now)
            return True
        if key not in self._warned or self._warned[key] <= now - self.window:
            self._warned[key] = now
            log.info("member %s in %s gave more than %d commands in %.0fs; ignoring their commands quietly "
                     "until %s", member_id, room_id or "a direct chat", self.limit, self.window.total_seconds(),
                     (recent[0] + self.window).isoformat(timespec="seconds"))
        return False

    def tracked(self) -> int:
        """How many (room, member) windows are held in memory."""
        return len(self._recent)

    def _prune(self, now: datetime) -> None:
        cutoff = now - self.window
        for key in [k for k, times in self._recent.items() if not times or times[-1] <= cutoff]:
            del self._recent[key]
        for key in [k for k, at in self._warned.items() if at <= cutoff]:
            del self._warned[key]
