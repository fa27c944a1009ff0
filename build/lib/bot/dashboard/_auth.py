"""Login for the dashboard: one password from the environment, then a signed session cookie.

The cookie carries its expiry and an HMAC of it under a key made fresh at each start, so a restart
logs everyone out and nothing secret is stored. There is no way to run the pages without a password.
Wrong passwords are throttled: after `MAX_FAILURES` in `FAILURE_WINDOW` seconds, attempts are refused
until the oldest failure leaves the window, so the password cannot be guessed at machine speed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

COOKIE = "qunbot_dashboard"
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0


class Auth:
    def __init__(self, password: str, *, session_seconds: float) -> None:
        if not password:
            raise ValueError("the dashboard needs a password")
        self._password = password.encode()
        self._key = secrets.token_bytes(32)
        self.session_seconds = session_seconds
        self._failures: list[float] = []

    def locked(self, now: float | None = None) -> bool:
        """Too many wrong passwords lately: refuse attempts (even a right one) for now."""
        now = now if now is not None else time.monotonic()
        self._failures = [t for t in self._failures if now - t < FAILURE_WINDOW]
        return len(self._failures) >= MAX_FAILURES

    def check_password(self, given: str, now: float | None = None) -> bool:
        now = now if now is not None else time.monotonic()
        if self.locked(now):
            return False
        if hmac.compare_digest(given.encode(), self._password):
            return True
        self._failures.append(now)
        return False

    def new_session(self, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.session_seconds)
        return f"{expires}.{self._sign(str(expires))}"

    def valid(self, cookie: str | None, now: float | None = None) -> bool:
        if not cookie or "." not in cookie:
            return False
        expires, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature, self._sign(expires)):
            return False
        return expires.isdigit() and int(expires) > (now if now is not None else time.time())

    def _sign(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
