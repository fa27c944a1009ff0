"""The verifiable draw: a committed secret seed and a deterministic shuffle anyone can redo by hand.

Kept free of the bot and the database so `qunbot lottery verify`, the tests and a member with a
calculator all run the same few lines. docs/lottery.md describes the same steps in prose.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Iterator

SPACE = 1 << 256
"""HMAC-SHA256 outputs read as big-endian integers are uniform in [0, 2^256)."""


def new_seed() -> str:
    """A fresh secret: 32 random bytes as 64 lowercase hex characters."""
    return secrets.token_hex(32)


def commitment(seed: str) -> str:
    """SHA-256 of the seed's text (UTF-8), in hex: `printf %s SEED | sha256sum`."""
    return hashlib.sha256(seed.encode()).hexdigest()


def mixed_seed(seed: str, public_value: str | None) -> str:
    """The seed the draw uses: the secret seed alone, or SHA-256 of "SEED:PUBLIC" (hex) when a public value
    unknown at the close is mixed in: `printf %s "SEED:PUBLIC" | sha256sum`."""
    if public_value is None:
        return seed
    return hashlib.sha256(f"{seed}:{public_value}".encode()).hexdigest()


def fingerprint(entrants: list[str]) -> str:
    """16 hex characters of SHA-256 over the canonical entrant ids, one per line: posted at the close."""
    return hashlib.sha256("\n".join(entrants).encode()).hexdigest()[:16]


def canonical_entrants(member_ids: Iterable[str]) -> list[str]:
    """Distinct member ids sorted by Unicode code point (the byte order of their UTF-8)."""
    return sorted(set(member_ids))


def _stream(seed: str) -> Iterator[int]:
    """R(c) = HMAC-SHA256(key=seed text, message=decimal text of c) as an integer, c = 0, 1, 2, ..."""
    key = seed.encode()
    counter = 0
    while True:
        yield int.from_bytes(hmac.new(key, str(counter).encode(), hashlib.sha256).digest(), "big")
        counter += 1


def _uniform(stream: Iterator[int], n: int) -> int:
    """A uniform integer in [0, n): reject values at or above the largest multiple of n (no modulo bias)."""
    limit = SPACE - SPACE % n
    for value in stream:
        if value < limit:
            return value % n
    raise AssertionError("unreachable: the stream is infinite")


def draw_winners(seed: str, member_ids: Iterable[str], count: int) -> list[str]:
    """Winners in draw order: a partial Fisher–Yates shuffle of the sorted entrants.

    For i = 0 .. min(count, n) - 1: j = i + uniform(n - i); swap positions i and j; position i wins.
    """
    pool = canonical_entrants(member_ids)
    stream = _stream(seed)
    for i in range(min(count, len(pool))):
        j = i + _uniform(stream, len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:min(count, len(pool))]
