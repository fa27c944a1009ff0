"""Everything fragile about python-wechaty, in one place.

qunbot talks to a Wechaty puppet service through python-wechaty's own client,
`wechaty_puppet_service.PuppetService` (the layer `wechaty.Wechaty` runs on),
not through the `Wechaty` class. That class is what makes python-wechaty hard
to operate: its `start()` never returns and swallows errors, stops the event
loop when the endpoint is unreachable, restarts after a fixed 60 s, serves a
web server on 0.0.0.0 when a plugin asks, and needs `urllib3<2` and a patch
to even import on Python 3.11. The puppet layer needs none of that; what it
still does wrong is fixed here:

- importing `wechaty_puppet` creates `.wechaty/` in the working directory: we
  import with the working directory set to the project's `data/.wechaty/`;
- its loggers print to stderr with their own handlers (and log the token):
  we route them through qunbot's logging, quieter, with the token masked;
- it checks the endpoint with a blocking telnet call (3 s on the event loop):
  replaced by `reachable()`, an asyncio connect;
- without an endpoint it looks the token up on the internet with a blocking
  `requests.get` (python-wechaty has no TLS either, and no authority setting):
  qunbot never starts it without an endpoint; `_wechaty_discovery` looks up;
- `FileBox.from_url` without a name blocks on `requests.get`, and URL file
  boxes do not survive the trip to 1.x services: `file_box()` downloads with
  httpx and sends the bytes;
- its `room_topic()` sends the new topic where only 0.x services read it (1.x
  services take the request for a read and answer with the old topic):
  `set_room_topic()` sends a request both lines read (`_wechaty_proto`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from bot._files import FilePolicy, read_source
from bot.adapters._base import AdapterError

_WECHATY_LOGGERS = ("PuppetService", "FileBox", "WechatyPuppet", "WechatyPuppet.Schemas.Event",
                    "WechatyPuppet.Schema.Base", "WechatyPuppetServiceConfig")
_INSTALL_HINT = "install the Wechaty extra: pip install -e '.[wechaty]' (Python 3.11 or 3.12)"

_modules: tuple[ModuleType, ModuleType] | None = None
_secrets: set[str] = set()


class _Redact(logging.Filter):
    """Mask puppet tokens in python-wechaty's own log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in _secrets):
            for secret in _secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, ()
        return True


_REDACT = _Redact()


def mask_in_logs(secret: str, *loggers: str) -> None:
    """Never let `secret` reach the log through these loggers (and python-wechaty's, once loaded)."""
    _secrets.add(secret)
    for name in loggers:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def load(cache_dir: Path) -> tuple[ModuleType, ModuleType]:
    """Import `wechaty_puppet` and `wechaty_puppet_service` once, tamed. Raises AdapterError if missing."""
    global _modules
    if _modules is not None:
        return _modules
    try:
        # wechaty_puppet.config makes `.wechaty/` in the cwd on import; telnetlib and pyee warn on import.
        with _working_directory(cache_dir), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import wechaty_puppet
            import wechaty_puppet_service
            import wechaty_puppet_service.puppet as service_module
    except ImportError as err:
        raise AdapterError(f"python-wechaty is not installed ({err.name}): {_INSTALL_HINT}") from None
    service_module.ping_endpoint = lambda _endpoint: True  # the blocking telnet check; we use reachable()
    for name in _WECHATY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True
        logger.setLevel(logging.ERROR if name == "FileBox" else logging.WARNING)
        logger.addFilter(_REDACT)
    # One line at WARNING on every start: "there are endpoint<…> and token<…>"; it says nothing useful.
    logging.getLogger("PuppetService").setLevel(logging.ERROR)
    _modules = (wechaty_puppet, wechaty_puppet_service)
    return _modules


def new_puppet(cache_dir: Path, endpoint: str, token: str) -> Any:
    """A `PuppetService` for one connection; always with an explicit endpoint (no online token lookup)."""
    wechaty_puppet, wechaty_puppet_service = load(cache_dir)
    if not endpoint:
        raise AdapterError("no puppet service endpoint given")
    _secrets.add(token)
    with warnings.catch_warnings():  # pyee: "AsyncIOEventEmitter has been moved"
        warnings.simplefilter("ignore", DeprecationWarning)
        return wechaty_puppet_service.PuppetService(wechaty_puppet.PuppetOptions(end_point=endpoint, token=token))


async def open_stream(puppet: Any, timeout: float) -> asyncio.Task[None]:
    """`PuppetService.start()` in two steps: the handshake, awaited with a timeout (a wrong token fails
    here), then the never-ending event stream as a task the adapter supervises.

    Unlike `start()` it does not call the service's `stop` first: on a real puppet that restarts the
    account's session on every reconnect.
    """
    puppet._init_puppet()  # channel and stub; its blocking telnet check is patched out in load()
    async with asyncio.timeout(timeout):
        await puppet.puppet_stub.start()
    return asyncio.create_task(puppet._listen_for_event())


async def set_room_topic(puppet: Any, room_id: str, topic: str) -> None:
    """Set a room's topic on a 0.x or 1.x service (python-wechaty's own call is a no-op on 1.x)."""
    from bot.adapters._wechaty_proto import RoomTopicAnswer, RoomTopicSet

    request = RoomTopicSet(id=room_id, topic_0x=topic, topic=topic)
    await puppet.puppet_stub._unary_unary("/wechaty.Puppet/RoomTopic", request, RoomTopicAnswer)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """`host:port` (a scheme is tolerated) → (host, port); clear error otherwise."""
    parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise AdapterError(f"endpoint {endpoint!r} is not host:port (for example 127.0.0.1:8788)")
    return parts.hostname, port


async def reachable(endpoint: str, timeout: float = 5.0) -> None:
    """Open and close a TCP connection to the endpoint, without blocking the loop. AdapterError if not."""
    host, port = split_endpoint(endpoint)
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
        raise AdapterError(f"cannot reach the puppet service at {host}:{port} ({reason})") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


TLS_ONLY = ("the service speaks only TLS, and python-wechaty's client (wechaty-puppet-service 0.8.10) speaks "
            "only plaintext gRPC: ask the provider for a plaintext endpoint, or run a TLS-opening gRPC proxy "
            "beside qunbot and set the endpoint to it (docs/wechaty.md, \"TLS\")")


async def speaks_tls(endpoint: str, timeout: float = 5.0) -> bool:
    """Does a TLS handshake (ALPN h2, as gRPC clients offer it) succeed at the endpoint? Certificate not checked:
    this only tells a TLS-only service from one that speaks plaintext gRPC or something else."""
    import ssl

    host, port = split_endpoint(endpoint)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(host, port, ssl=context)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True


def is_refusal(err: BaseException) -> bool:
    """The service answered the call (a gRPC status): it speaks the protocol, whatever it said."""
    try:
        from grpclib.exceptions import GRPCError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(err, GRPCError)


def is_unimplemented(err: BaseException) -> bool:
    """The service does not implement the call (retrying cannot help)."""
    try:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(err, GRPCError) and err.status == Status.UNIMPLEMENTED


def explain(err: BaseException) -> str:
    """A failed gRPC call in plain words (wrong token, service down, protocol mismatch)."""
    try:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError, StreamTerminatedError
    except ImportError:  # pragma: no cover - grpclib comes with wechaty-puppet-service
        return f"{type(err).__name__}: {err}"
    if isinstance(err, GRPCError):
        detail = (err.message or "").splitlines()[0] if err.message else ""
        if err.status == Status.UNAUTHENTICATED:
            return f"the service refused the token ({detail or 'unauthenticated'})"
        if err.status == Status.UNAVAILABLE:
            return f"the service is unavailable ({detail})"
        if err.status == Status.UNIMPLEMENTED:
            return f"the service does not implement this call ({detail})"
        return f"the service answered {err.status.name}: {detail}"
    if isinstance(err, StreamTerminatedError | ConnectionError):
        return f"the connection was closed ({err or type(err).__name__})"
    if isinstance(err, TimeoutError):
        return "the service did not answer in time"
    return f"{type(err).__name__}: {err}"


def hint(err: BaseException | None) -> str:
    """What to do about a failure `explain()` names, where there is something to say."""
    try:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError
    except ImportError:  # pragma: no cover
        return ""
    if isinstance(err, GRPCError) and err.status == Status.ALREADY_EXISTS:
        return (": the service serves one event stream at a time, and another client (a running `qunbot run`"
                " or another bot with this token) holds it")
    return ""


def is_connection_lost(err: BaseException) -> bool:
    """The channel is gone (not: the service refused this one call)."""
    try:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError, StreamTerminatedError
    except ImportError:  # pragma: no cover
        return isinstance(err, ConnectionError)
    if isinstance(err, GRPCError):
        return err.status == Status.UNAVAILABLE
    return isinstance(err, StreamTerminatedError | ConnectionError | OSError)


def is_rate_limited(err: BaseException) -> bool:
    """WeChat's 'you send too often' (发送消息过于频繁), as puppet services pass it on."""
    text = str(err)
    return "频繁" in text or "too frequent" in text.lower() or "rate limit" in text.lower()


async def file_box(cache_dir: Path, source: str, policy: FilePolicy) -> Any:
    """A FileBox for a file the bot sends: a path inside the project or an http(s) URL to a public address.

    Checked again here, at send time (bot._files): a file that passed `check` may since have become a
    symlink out of the project. URLs are downloaded with httpx (python-wechaty would block the loop, and
    1.x services cannot open the URL boxes it builds); files go as base64.
    """
    data, name = await read_source(source, policy)
    wechaty_puppet, _ = load(cache_dir)
    with warnings.catch_warnings():  # FileBox calls the deprecated logger.warn
        warnings.simplefilter("ignore", DeprecationWarning)
        return wechaty_puppet.FileBox.from_base64(base64.b64encode(data), name=name)
