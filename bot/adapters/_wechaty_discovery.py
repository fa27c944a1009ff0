"""Find a Wechaty token's puppet service through a discovery authority (`/v0/hosties/<token>`).

Providers may hand out only a token; Wechaty clients then ask the authority where its service
runs. python-wechaty does that with a blocking `requests.get`; this asks with httpx, retries with
back-off, and tells an unknown or expired token (`{"ip": "0.0.0.0", "port": 0}`) apart from an
authority that is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

import httpx

from bot.adapters import _wechaty_compat as compat
from bot.adapters._base import AdapterError

log = logging.getLogger("qunbot.wechaty")

DEFAULT_AUTHORITY = "api.chatie.io"
"""Wechaty's community authority: python-wechaty-puppet-service 0.8.10 (`puppet.py`) and wechaty-token 1.x
(`DEFAULT_AUTHORITY`) both use it."""
AUTHORITY_ENV = "WECHATY_PUPPET_SERVICE_AUTHORITY"
ATTEMPTS = 6
"""Tries at start before giving up (with the default 2 s back-off: about a minute)."""


class UnknownToken(AdapterError):
    """The authority answered: no service for this token (unknown, or expired)."""


class DiscoveryUnavailable(AdapterError):
    """The authority could not be asked (down, unreachable, or an answer that is not an address)."""


def discovery_base(authority: str) -> str:
    """`host[:port]` means https; a full `http(s)://host:port` is kept (private deployments, tests)."""
    authority = authority.strip().rstrip("/")
    if not authority.startswith(("http://", "https://")):
        authority = f"https://{authority}"
    parts = urlsplit(authority)
    if not parts.hostname or parts.path not in ("", "/"):
        raise AdapterError(f"discovery authority {authority!r} is not host[:port] or http(s)://host:port")
    return authority


def discovery_url(authority: str, token: str) -> str:
    return f"{discovery_base(authority)}/v0/hosties/{quote(token, safe='')}"


async def discover(token: str, authority: str, *, attempts: int = ATTEMPTS, delays: tuple[float, float] = (2.0, 60.0),
                   timeout: float = 10.0, account: str = "",
                   sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> str:
    """The service's `host:port` for `token`. UnknownToken at once; DiscoveryUnavailable after `attempts` tries.

    Between tries it waits `delays[0]` seconds, doubling up to `delays[1]`.
    """
    base = discovery_base(authority)
    url = discovery_url(authority, token)
    compat.mask_in_logs(token, "httpx", "httpcore")  # httpx logs each request's URL, which holds the token
    compat.mask_in_logs(quote(token, safe=""), "httpx", "httpcore")
    delay, max_delay = delays
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            return await _ask(url, base, timeout)
        except UnknownToken:
            raise
        except DiscoveryUnavailable as err:
            reason = str(err)
        if attempt < attempts:
            log.warning("account %s: token discovery at %s failed (%s); try %d of %d in %g s", account, base, reason,
                        attempt + 1, attempts, delay)
            await sleep(delay)
            delay = min(delay * 2, max_delay)
    raise DiscoveryUnavailable(f"could not ask the discovery service {base} where the token's puppet service runs "
                               f"({reason}; {attempts} tries)")


async def _ask(url: str, base: str, timeout: float) -> str:
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
            response = await client.get(url)
    except httpx.HTTPError as err:
        raise DiscoveryUnavailable(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__) from None
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        # wechaty-token 1.x: "4XX Not Found: Token service discovery fail: not exist"
        raise UnknownToken(_unknown(base, f"HTTP {response.status_code}"))
    if response.status_code != 200:
        raise DiscoveryUnavailable(f"HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        raise DiscoveryUnavailable(f"the answer is not JSON: {response.text[:80]!r}") from None
    if not isinstance(data, dict):
        raise DiscoveryUnavailable(f"the answer is not an address: {response.text[:80]!r}")
    host = str(data.get("ip") or data.get("host") or "")  # python-wechaty reads ip, wechaty-token 1.x host
    port = data.get("port")
    if host in ("", "0.0.0.0") or not port:
        raise UnknownToken(_unknown(base, response.text.strip()[:80]))
    if not isinstance(port, int) and not (isinstance(port, str) and port.isdigit()):
        raise DiscoveryUnavailable(f"the answer has no usable port: {response.text[:80]!r}")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unknown(base: str, answer: str) -> str:
    return (f"the discovery service {base} knows no puppet service for this token (it answered {answer}): "
            "the token is unknown or has expired")
