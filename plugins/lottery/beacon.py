"""A public randomness beacon (drand, League of Entropy): a value nobody knows before its round's time.

The draw mixes in the first round that comes at least `delay` after entries close. Its signature is a
BLS12-381 signature by the network's threshold key, which is pinned here (never taken from the server),
so a stored round can be re-checked offline: randomness = SHA-256(signature), and the signature verifies
over the round under the pinned key. drand's HTTP API: GET {url}/{chain_hash}/public/{round}.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot import parse_duration

MAX_RESPONSE = 64 * 1024


class BeaconSettings(BaseModel):
    """`[plugins.lottery.beacon]`: which drand chain, and the public key it is trusted by."""

    model_config = ConfigDict(extra="forbid")

    url: str = "https://api.drand.sh"
    chain_hash: str = "8990e7a9aaed2ffed73dbd7092123d6f289930540d7651336225dc172e51b2ce"
    public_key: str = ("868f005eb8e6e4ca0a47c8a77ceaa5309a47978a7c71bc5cce96366b5d7a569937c529eeda66c72937"
                       "84a9402801af31")
    scheme: Literal["pedersen-bls-chained", "pedersen-bls-unchained"] = "pedersen-bls-chained"
    """Signatures on G2, public key on G1 (DST ..._NUL_), what py_ecc's G2Basic verifies. drand's quicknet
    (bls-unchained-g1-rfc9380, signatures on G1) is not supported."""
    genesis_time: int = 1595431050
    period: int = Field(30, ge=1)
    delay: str = "1m"
    """The round used is the first one at least this long after entries close (time for the close post)."""
    retry_every: str = "30s"
    timeout: float = Field(5.0, gt=0, le=60)
    """Seconds per fetch; keep it under `[bot] handler_timeout` (10 s), as the draw timer's handler waits for it."""

    @field_validator("delay", "retry_every")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


@dataclass(frozen=True)
class Beacon:
    """One round as the network published it (hex strings)."""

    round: int
    randomness: str
    signature: str
    previous_signature: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"round": self.round, "randomness": self.randomness, "signature": self.signature,
                "previous_signature": self.previous_signature}


def round_time(settings: BeaconSettings, number: int) -> datetime:
    return datetime.fromtimestamp(settings.genesis_time + (number - 1) * settings.period, UTC)


def round_after(settings: BeaconSettings, moment: datetime) -> int:
    """The first round whose time is at least `delay` after `moment` (strictly later than moment + delay)."""
    after = (moment + parse_duration(settings.delay)).timestamp()
    if after < settings.genesis_time:
        return 1
    return math.floor((after - settings.genesis_time) / settings.period) + 2


class BeaconUnavailable(Exception):
    """The round is not published yet, or the beacon could not be reached or answered nonsense."""


async def fetch(settings: BeaconSettings, number: int) -> Beacon:
    """Fetch one round and check it before anyone relies on it."""
    url = f"{settings.url.rstrip('/')}/{settings.chain_hash}/public/{number}"
    try:
        async with httpx.AsyncClient(timeout=settings.timeout, follow_redirects=False) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise BeaconUnavailable(f"HTTP {response.status_code} for round {number}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE:
                    raise BeaconUnavailable("the beacon's answer is too large")
        data = json.loads(body)
        beacon = Beacon(int(data["round"]), str(data["randomness"]), str(data["signature"]),
                        str(data.get("previous_signature") or ""))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
        raise BeaconUnavailable(f"{type(err).__name__}: {err}") from err
    problems = await asyncio.to_thread(check, settings, beacon, number)  # ~0.6 s of pairing math
    if problems:
        raise BeaconUnavailable("; ".join(problems))
    return beacon


def _bls() -> Any:
    """py_ecc's BLS scheme. Importing py_ecc raises the whole interpreter's recursion limit to 100 000,
    which turns any runaway recursion in the bot (an admin's template that includes itself) into a crash of
    the process instead of a RecursionError: the limit is put back."""
    limit = sys.getrecursionlimit()
    try:
        from py_ecc.bls import G2Basic
    finally:
        sys.setrecursionlimit(limit)
    return G2Basic


def check(settings: BeaconSettings, beacon: Beacon, number: int) -> list[str]:
    """Why this is not round `number` of the pinned chain (empty: it is)."""
    G2Basic = _bls()

    problems: list[str] = []
    if beacon.round != number:
        problems.append(f"the beacon answered round {beacon.round}, not {number}")
    try:
        signature = bytes.fromhex(beacon.signature)
        previous = bytes.fromhex(beacon.previous_signature)
        public_key = bytes.fromhex(settings.public_key)
    except ValueError:
        return [*problems, "the beacon's signature is not hex"]
    if hashlib.sha256(signature).hexdigest() != beacon.randomness.lower():
        problems.append("randomness is not SHA-256 of the signature")
    prefix = previous if settings.scheme == "pedersen-bls-chained" else b""
    message = hashlib.sha256(prefix + number.to_bytes(8, "big")).digest()
    try:
        valid = G2Basic.Verify(public_key, message, signature)
    except Exception:  # py_ecc raises assorted errors on malformed points
        valid = False
    if not valid:
        problems.append(f"the BLS signature of round {number} does not verify under the pinned public key")
    return problems


def retry_delay(settings: BeaconSettings) -> timedelta:
    return parse_duration(settings.retry_every)
