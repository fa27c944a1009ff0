"""Login for the dashboard: one password from the environment, then a random session id the server keeps.

Sessions live in this process only (a restart logs everyone out, nothing secret is stored) and logout
deletes the id, so a copied cookie dies with the session. Wrong passwords are throttled per client address:
after `MAX_FAILURES` in `FAILURE_WINDOW` seconds that address is refused until its oldest failure leaves the
window, so the password cannot be guessed at machine speed and one guesser never locks the operator out.
"""

from __future__ import annotations

import hmac
import secrets
import time

COOKIE = "qunbot_dashboard"
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
MAX_TRACKED = 10_000
"""Addresses with recent failures kept at most; past it the stalest are dropped (memory stays bounded)."""
MAX_SESSIONS = 1_000


class Auth:
    def __init__(self, password: str, *, session_seconds: float) -> None:
        if not password:
            raise ValueError("the dashboard needs a password")
        self._password = password.encode()
        self.session_seconds = session_seconds
        self._failures: dict[str, list[float]] = {}
        self._sessions: dict[str, float] = {}
        """session id -> expiry (wall-clock seconds)."""

    def locked(self, address: str = "", now: float | None = None) -> bool:
        """Too many wrong passwords lately from this address: refuse its attempts (even a right one) for now."""
        now = now if now is not None else time.monotonic()
        recent = [t for t in self._failures.get(address, ()) if now - t < FAILURE_WINDOW]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        return len(recent) >= MAX_FAILURES

    def check_password(self, given: str, address: str = "", now: float | None = None) -> bool:
        now = now if now is not None else time.monotonic()
        if self.locked(address, now):
            return False
        if hmac.compare_digest(given.encode(), self._password):
            return True
        self._failures.setdefault(address, []).append(now)
        if len(self._failures) > MAX_TRACKED:
            stalest = min(self._failures, key=lambda a: self._failures[a][-1])
            del self._failures[stalest]
        return False

    def new_session(self, now: float | None = None) -> str:
        now = now if now is not None else time.time()
        self._sessions = {sid: exp for sid, exp in self._sessions.items() if exp > now}
        if len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + self.session_seconds
        return session

    def valid(self, cookie: str | None, now: float | None = None) -> bool:
        expires = self._sessions.get(cookie or "")
        return expires is not None and expires > (now if now is not None else time.time())

    def revoke(self, cookie: str | None) -> None:
        """Logout: the id stops working at once, wherever a copy of the cookie is."""
        self._sessions.pop(cookie or "", None)
