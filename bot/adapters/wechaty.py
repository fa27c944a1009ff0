"""Real WeChat through a Wechaty puppet service (python-wechaty's gRPC client).

One `WechatyAdapter` is one account: it connects to the endpoint named by the
account's `endpoint_env` with the token in `token_env` (with only a token, it asks
the discovery authority for the endpoint on every connect: `_wechaty_discovery`),
turns puppet events into qunbot events, and sends what the outbox hands it. The event stream runs
as a supervised task: when it drops, it is re-opened with back-off (`[pacing]`
reconnect_min doubling to reconnect_max) and each attempt is logged. A send
while the connection is down raises `Disconnected`, so the outbox holds its
queue. Everything version-specific lives in `_wechaty_compat`; this module
only speaks qunbot's events. Operator guide: docs/wechaty.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bot._events import (
    DirectMessage,
    Event,
    MemberRef,
    MemberRenamed,
    MembersJoined,
    MembersLeft,
    Outgoing,
    RoomMessage,
    RoomSnapshot,
    RoomTopicChanged,
)
from bot._files import FilePolicy, FileRefused, file_policy
from bot.adapters import _wechaty_compat as compat
from bot.adapters import _wechaty_discovery as discovery
from bot.adapters._base import (
    Adapter,
    AdapterError,
    Capabilities,
    Disconnected,
    EventSink,
    RateLimited,
    SendError,
)

if TYPE_CHECKING:
    from bot._clock import Clock
    from bot._config import AccountSettings, ProjectConfig

log = logging.getLogger("qunbot.wechaty")

_EVENTS = ("login", "logout", "scan", "message", "room-join", "room-leave", "room-topic", "error", "heartbeat")
_MEDIA = {"MESSAGE_TYPE_IMAGE": "image", "MESSAGE_TYPE_ATTACHMENT": "file", "MESSAGE_TYPE_VIDEO": "video",
          "MESSAGE_TYPE_AUDIO": "voice", "MESSAGE_TYPE_EMOTICON": "sticker"}
_SHARES = {"MESSAGE_TYPE_URL": "link", "MESSAGE_TYPE_MINI_PROGRAM": "mini_program",
           "MESSAGE_TYPE_CONTACT": "contact_card", "MESSAGE_TYPE_CHANNEL": "channel"}
_CALL_TIMEOUT = 30.0
MAX_INBOUND_IMAGE = 10 * 1024 * 1024
"""Received images larger than this are not saved for checks (a QR poster is a few hundred KB)."""


class WechatyAdapter(Adapter):
    """One WeChat account behind a Wechaty puppet service."""

    capabilities = Capabilities(read_room_messages=True, reply_at_will=True, mention=True, send_files=True,
                                remove_members=True, set_topic=True, direct_messages=True,
                                posts_need_confirmation=False, welcome_by_template=False, room_quota=None,
                                label="Wechaty 账号")
    """Measured on both service lines (docs/wechaty.md). Per instance, a service that answers UNIMPLEMENTED to a
    room action or a file send loses that capability (and the send fails loudly)."""

    def __init__(self, account: str, clock: Clock, *, endpoint: str, token: str, project: Path, bot_name: str,
                 data_dir: Path, connect_timeout: float = 20.0, login_timeout: float | None = None,
                 authority: str | None = None, token_env: str = "") -> None:
        super().__init__(account)
        self.clock = clock
        self.endpoint = endpoint
        """`host:port`; with `authority` set, filled in by discovery on every connect."""
        self.authority = authority
        """The discovery authority for a token-only account (None: the endpoint is configured)."""
        self.discovery_attempts = discovery.ATTEMPTS
        self.token_env = token_env
        self.project = project
        self.bot_name = bot_name
        self.cache_dir = data_dir / ".wechaty"
        self.files = FilePolicy(project)
        """Where files it sends may come from; `from_settings` applies `[limits]`."""
        self.connect_timeout = connect_timeout
        self.login_timeout = login_timeout
        self.self_id: str | None = None
        self.self_name: str | None = None
        self._token = token
        self._sink: EventSink | None = None
        self._puppet: Any = None
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._logged_in = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._aliases: dict[tuple[str, str], str] = {}
        self.reconnect_delay = (1.0, 60.0)
        """Seconds before the first reconnect attempt, doubling up to the second number."""

    @classmethod
    def from_settings(cls, settings: AccountSettings, *, clock: Clock, project: Path,
                      config: ProjectConfig) -> WechatyAdapter:
        """Read token and endpoint from the environment variables the account names.

        Without an endpoint, the token is looked up at the discovery authority (its own variable, else
        Wechaty's default) when the adapter connects.
        """
        endpoint = os.environ.get(settings.endpoint_env, "").strip()
        token = os.environ.get(settings.token_env, "").strip()
        if not token:
            raise AdapterError(f"account {settings.id}: set {settings.token_env} (the token from your puppet "
                               f"provider or gateway; and {settings.endpoint_env}, the service's host:port, "
                               "unless the token is found through discovery)")
        authority = None
        if endpoint:
            compat.split_endpoint(endpoint)
        else:
            authority = os.environ.get(settings.authority_env, "").strip() or discovery.DEFAULT_AUTHORITY
            try:
                discovery.discovery_base(authority)
            except AdapterError as err:
                raise AdapterError(f"account {settings.id}: ${settings.authority_env}: {err}") from None
        adapter = cls(settings.id, clock, endpoint=endpoint, token=token, project=project, bot_name=config.bot.name,
                      data_dir=project / config.data_dir, authority=authority, token_env=settings.token_env)
        adapter.files = file_policy(project, config.limits)
        pacing = config.pacing_for(settings.id)
        adapter.reconnect_delay = (pacing.reconnect_min, pacing.reconnect_max)
        return adapter

    # --- life cycle ---------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        """Connect, then wait until the account is logged in (a QR code to scan is logged meanwhile)."""
        self._sink = sink
        self._stopping = asyncio.Event()  # start() may follow stop(): the runtime reconnects that way too
        self._logged_in.clear()
        runner = await self._connect()
        self._tasks = [asyncio.create_task(self._pump(), name=f"wechaty-events-{self.account}"), runner]
        login = asyncio.ensure_future(self._logged_in.wait())
        await asyncio.wait({login, runner}, timeout=self.login_timeout, return_when=asyncio.FIRST_COMPLETED)
        if login.done():
            # supervised only once logged in: a failed start is reported once, not retried in the background
            self._tasks.append(asyncio.create_task(self._supervise(runner), name=f"wechaty-{self.account}"))
            return
        login.cancel()
        ended = runner.done()
        error = runner.exception() if ended and not runner.cancelled() else None
        await self.stop()
        if ended:
            reason = compat.explain(error) if error else "the stream ended"
            raise AdapterError(f"account {self.account}: the puppet service at {self.endpoint} closed the event "
                               f"stream before the account logged in ({reason}){compat.hint(error)}")
        raise AdapterError(f"account {self.account}: connected to {self.endpoint}, but the account did not "
                           f"log in within {self.login_timeout:.0f} s (scan the QR code the service shows)")

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._close()

    async def resolve_endpoint(self, attempts: int | None = None) -> str:
        """The configured endpoint, or the one the discovery authority gives for the token (asked anew each
        time: a provider may move the service). UnknownToken / DiscoveryUnavailable (AdapterErrors) if not."""
        if self.authority is None:
            return self.endpoint
        try:
            endpoint = await discovery.discover(self._token, self.authority, account=self.account,
                                                attempts=attempts or self.discovery_attempts,
                                                delays=self.reconnect_delay, timeout=self.connect_timeout)
            compat.split_endpoint(endpoint)
        except AdapterError as err:
            where = f" (the token in ${self.token_env})" if self.token_env else ""
            raise type(err)(f"account {self.account}: {err}{where}") from None
        if endpoint != self.endpoint:
            log.info("account %s: the discovery service %s gives the token's puppet service at %s", self.account,
                     discovery.discovery_base(self.authority), endpoint)
        self.endpoint = endpoint
        return endpoint

    async def check_reachable(self) -> None:
        """AdapterError unless something accepts TCP connections at the endpoint."""
        try:
            await compat.reachable(self.endpoint, timeout=self.connect_timeout)
        except AdapterError as err:
            raise AdapterError(f"account {self.account}: {err}: is the gateway running and the endpoint right?"
                               ) from None

    async def _connect(self, discovery_attempts: int | None = None) -> asyncio.Task[None]:
        """Open one connection: found, reachable, authenticated, event stream flowing. AdapterError otherwise."""
        await self.resolve_endpoint(discovery_attempts)
        await self.check_reachable()
        puppet = compat.new_puppet(self.cache_dir, self.endpoint, self._token)
        for name in _EVENTS:
            puppet.on(name, self._listener(name))
        self._puppet = puppet  # before the stream starts: the login event needs it
        try:
            return await compat.open_stream(puppet, self.connect_timeout)
        except TimeoutError:
            reason = (f"no answer within {self.connect_timeout:g} s: something listens there, but not a "
                      "Wechaty puppet service")
        except Exception as err:
            reason = compat.explain(err)
            if compat.is_refusal(err):
                self._close()
                raise AdapterError(f"account {self.account}: {self.endpoint}: {reason}") from None
        self._close()
        if await compat.speaks_tls(self.endpoint, timeout=min(self.connect_timeout, 10.0)):
            reason = compat.TLS_ONLY
        raise AdapterError(f"account {self.account}: {self.endpoint}: {reason}")

    def _listener(self, name: str) -> Any:
        def listener(payload: Any) -> None:
            self._events.put_nowait((name, payload))
        return listener

    async def _supervise(self, runner: asyncio.Task[None]) -> None:
        """Keep one connection open: when the stream ends or fails, reconnect with back-off."""
        first_delay, max_delay = self.reconnect_delay
        delay = first_delay
        while not self._stopping.is_set():
            try:
                await runner
                reason = "the event stream ended"
            except Exception as err:
                reason = compat.explain(err)
            self._close()
            if self._stopping.is_set():
                return
            log.warning("account %s: lost the puppet service at %s (%s); reconnecting in %g s",
                        self.account, self.endpoint, reason, delay)
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)  # back-off, cut short by stop()
                if self._stopping.is_set():
                    return
                delay = min(delay * 2, max_delay)
                try:
                    runner = await self._connect(discovery_attempts=1)  # this loop is the back-off
                except AdapterError as err:
                    log.warning("account %s: reconnecting failed (%s); next try in %g s", self.account,
                                str(err).removeprefix(f"account {self.account}: "), delay)
                    continue
                log.info("account %s: reconnected to %s", self.account, self.endpoint)
                delay = first_delay
                break

    def _close(self) -> None:
        """Drop the channel only: the remote puppet keeps running (a `stop` call could log the account out)."""
        self._logged_in.clear()
        if self._puppet is not None:
            _close_channel(self._puppet)
            self._puppet = None

    # --- events in --------------------------------------------------------------------

    async def _pump(self) -> None:
        """Turn puppet events into qunbot events, in arrival order; one bad event never stops the pump."""
        while True:
            name, payload = await self._events.get()
            try:
                for event in await self._translate(name, payload):
                    try:
                        if self._sink is not None:
                            await self._sink(event)
                    finally:
                        if getattr(event, "content", None):
                            (self.project / event.content).unlink(missing_ok=True)  # type: ignore[attr-defined]
            except Exception:
                log.exception("account %s: could not handle Wechaty %s event %r", self.account, name, payload)

    async def _translate(self, name: str, payload: Any) -> list[Event]:
        now = self.clock.now()
        if name == "login":
            await self._on_login(payload.contact_id)
        elif name == "logout":
            log.warning("account %s: logged out (%s)", self.account, getattr(payload, "data", "") or "no reason")
            self._logged_in.clear()
        elif name == "scan":
            log.warning("account %s: waiting for login: scan the QR code %s (status %s)", self.account,
                        payload.qrcode, getattr(payload.status, "name", payload.status))
        elif name == "error":
            log.warning("account %s: the puppet service reported an error: %s", self.account, payload.data)
        elif name == "message":
            return await self._message(payload.message_id, now)
        elif name == "room-join":
            members = tuple([await self._contact(i) for i in payload.invited_ids])
            ids = ",".join(m.id for m in members)
            return [MembersJoined(account=self.account, id=f"join:{payload.room_id}:{payload.timestamp}:{ids}",
                                  time=now, room_id=payload.room_id, members=members,
                                  inviter_id=payload.inviter_id or None)]
        elif name == "room-leave":
            ids = tuple(payload.removed_ids)
            key = f"leave:{payload.room_id}:{payload.timestamp}:{','.join(ids)}"
            return [MembersLeft(account=self.account, id=key, time=now, room_id=payload.room_id, member_ids=ids)]
        elif name == "room-topic":
            return [RoomTopicChanged(account=self.account, id=f"topic:{payload.room_id}:{payload.timestamp}", time=now,
                                     room_id=payload.room_id, topic=payload.new_topic,
                                     old_topic=payload.old_topic or None, changer_id=payload.changer_id or None)]
        return []

    async def _on_login(self, contact_id: str) -> None:
        self.self_id = contact_id
        self.self_name = (await self._contact(contact_id)).name
        log.info("account %s: logged in as %s (%s)", self.account, self.self_name, contact_id)
        if self.self_name != self.bot_name:
            log.warning("account %s: the WeChat name is %r but [bot] name is %r; @-mentions are matched on both",
                        self.account, self.self_name, self.bot_name)
        self._logged_in.set()

    async def _message(self, message_id: str, now: datetime) -> list[Event]:
        payload = await self._call(self._require_puppet().message_payload(message_id))
        if payload.from_id and payload.from_id == self.self_id:
            return []  # our own message, echoed back by the service
        type_name = getattr(payload.type, "name", str(payload.type))
        kind = _MEDIA.get(type_name)
        text = payload.text or ""
        file = await self._file_name(message_id, kind, payload) if kind else None
        content = await self._save_image(message_id) if kind == "image" and payload.room_id else None
        if kind is not None and text.lstrip().startswith("<"):
            text = ""  # media messages carry the puppet's XML, not words
        if payload.room_id:
            sender, renamed = await self._room_member(payload.room_id, payload.from_id, now, message_id)
            mentions = tuple(payload.mention_ids or ())
            own_alias = self._aliases.get((payload.room_id, self.self_id or ""))
            names = {n for n in (self.self_name, self.bot_name, own_alias) if n}
            mentions_bot = (self.self_id in mentions) or any(f"@{n}" in text for n in names)
            return [*renamed, RoomMessage(account=self.account, id=message_id, time=now, room_id=payload.room_id,
                                          sender=sender, text=text, mentions=mentions, mentions_bot=mentions_bot,
                                          file=file, kind=kind or _SHARES.get(type_name, "text"), content=content)]
        sender = await self._contact(payload.from_id)
        return [DirectMessage(account=self.account, id=message_id, time=now, sender=sender, text=text, file=file)]

    async def _save_image(self, message_id: str) -> str | None:
        """A received image's bytes under data/.wechaty/inbox (project-relative), or None.

        Only content the service hands over inline (a base64 file box) is saved: a URL box is not fetched from
        here. `_pump` deletes the file once the event is handled, so members' images are not kept.
        """
        try:
            response = await self._call(self._require_puppet().puppet_stub.message_file(id=message_id))
            box = json.loads(response.filebox)
        except Exception:
            log.debug("account %s: image %s: no content from the service", self.account, message_id, exc_info=True)
            return None
        data = box.get("base64") if box.get("boxType") == 1 else None
        if not isinstance(data, str) or len(data) > MAX_INBOUND_IMAGE * 4 // 3 + 4:
            return None
        suffix = Path(str(box.get("name") or "")).suffix.lower()
        suffix = suffix if suffix in (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp") else ".img"
        inbox = self.cache_dir / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        path = inbox / f"{hashlib.sha256(message_id.encode()).hexdigest()[:20]}{suffix}"
        try:
            path.write_bytes(base64.b64decode(data, validate=False))
            return path.relative_to(self.project).as_posix()
        except (OSError, ValueError):
            log.debug("account %s: image %s could not be saved", self.account, message_id, exc_info=True)
            return None

    async def _file_name(self, message_id: str, kind: str, payload: Any) -> str:
        name = getattr(payload, "filename", "") or ""
        if not name:
            with contextlib.suppress(Exception):
                name = (await self._call(self._require_puppet().message_file(message_id))).name
        return name or f"{kind}:{message_id}"

    async def _room_member(self, room_id: str, member_id: str, now: datetime,
                           message_id: str) -> tuple[MemberRef, list[Event]]:
        """The speaker, and a MemberRenamed first if their group nickname changed since we last saw it.

        Its id comes from the message that showed the change: the same if that message is delivered again,
        new for a later change (even back to an earlier nickname), so the rename is recorded once.
        """
        try:
            member = await self._call(self._require_puppet().room_member_payload(room_id, member_id))
        except Exception:
            return await self._contact(member_id), []
        alias = getattr(member, "room_alias", "") or ""
        old = self._aliases.get((room_id, member_id))
        renamed: list[Event] = []
        if alias and alias != old:
            self._aliases[(room_id, member_id)] = alias
            if old is not None:
                renamed.append(MemberRenamed(account=self.account, id=f"rename:{message_id}:{member_id}",
                                             time=now, room_id=room_id, member_id=member_id, alias=alias,
                                             old_alias=old or None))
        return MemberRef(member_id, member.name or member_id), renamed

    async def _contact(self, contact_id: str) -> MemberRef:
        try:
            contact = await self._call(self._require_puppet().contact_payload(contact_id))
        except Exception as err:
            log.warning("account %s: no contact details for %s: %s", self.account, contact_id, compat.explain(err))
            return MemberRef(contact_id, contact_id)
        return MemberRef(contact_id, contact.name or contact_id)

    # --- what the runtime asks ------------------------------------------------------------

    async def rooms(self) -> list[RoomSnapshot]:
        puppet = self._require_puppet()
        snapshots = []
        for room_id in await self._call(puppet.room_list()):
            room = await self._call(puppet.room_payload(room_id))
            members = await _gather_limited([self._snapshot_member(room_id, m) for m in room.member_ids], 8)
            aliases = {}
            for ref, alias in members:
                if alias:
                    aliases[ref.id] = self._aliases[(room_id, ref.id)] = alias
            snapshots.append(RoomSnapshot(room_id, room.topic or room_id, tuple(ref for ref, _ in members),
                                          tuple(room.admin_ids or ()), room.owner_id or None, aliases))
        return snapshots

    async def room_ids(self) -> list[str]:
        """The rooms the account is in (ids only: one call, for `qunbot doctor`)."""
        return list(await self._call(self._require_puppet().room_list()))

    async def _snapshot_member(self, room_id: str, member_id: str) -> tuple[MemberRef, str]:
        try:
            member = await self._call(self._require_puppet().room_member_payload(room_id, member_id))
        except Exception:
            return MemberRef(member_id, member_id), ""
        self._aliases.setdefault((room_id, member_id), member.room_alias or "")
        return MemberRef(member_id, member.name or member_id), member.room_alias or ""

    async def self_member(self) -> MemberRef | None:
        if self.self_id is None:
            return None
        return MemberRef(self.self_id, self.self_name or self.self_id)

    # --- sending --------------------------------------------------------------------------

    async def send(self, message: Outgoing) -> None:
        if self._puppet is None or not self._logged_in.is_set():
            raise Disconnected(f"account {self.account} is not connected and logged in")
        puppet = self._puppet
        target = message.room_id or message.to
        assert target is not None
        try:
            if message.action == "remove_member":
                if not (message.room_id and message.member_id):
                    raise SendError("remove_member needs a room and a member")
                await self._call(puppet.room_delete(message.room_id, message.member_id))
            elif message.action == "set_topic":
                if not message.room_id or not message.text:
                    raise SendError("set_topic needs a room and a topic that is not empty")
                await self._call(compat.set_room_topic(puppet, message.room_id, message.text))
            elif message.action is not None:
                raise SendError(f"the Wechaty adapter cannot {message.action}")
            else:
                if message.file:
                    try:
                        box = await compat.file_box(self.cache_dir, message.file, self.files)
                    except FileRefused as err:
                        raise SendError(f"account {self.account}: {err}") from None
                    await self._call(puppet.message_send_file(target, box))
                if message.text:
                    mentions = list(message.mentions) if message.room_id else None
                    await self._call(puppet.message_send_text(target, message.text, mention_ids=mentions))
        except SendError:
            raise
        except Exception as err:
            if compat.is_unimplemented(err):
                self._cannot(message, err)
            error = (RateLimited if compat.is_rate_limited(err) else Disconnected if compat.is_connection_lost(err)
                     else SendError)
            raise error(f"account {self.account}: {compat.explain(err)}") from err

    def _cannot(self, message: Outgoing, err: BaseException) -> NoReturn:
        """The service does not implement what this send needs: say so from now on (capabilities), fail loudly."""
        kind = (message.action if message.action else "send_file" if message.file else "send_text")
        field = {"remove_member": "remove_members", "set_topic": "set_topic", "send_file": "send_files"}.get(kind)
        if field and getattr(self.capabilities, field):
            self.capabilities = dataclasses.replace(self.capabilities, **{field: False})
            log.error("account %s: the puppet service at %s cannot %s (%s); this account no longer offers it",
                      self.account, self.endpoint, kind.replace("_", " "), compat.explain(err))
        raise SendError(f"account {self.account}: the puppet service at {self.endpoint} cannot "
                        f"{kind.replace('_', ' ')} ({compat.explain(err)})") from err

    # --- helpers --------------------------------------------------------------------------

    def _require_puppet(self) -> Any:
        if self._puppet is None:
            raise SendError(f"account {self.account} is not connected")
        return self._puppet

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        async with asyncio.timeout(_CALL_TIMEOUT):
            return await awaitable


def _close_channel(puppet: Any) -> None:
    channel = getattr(puppet, "channel", None)
    if channel is not None:
        channel.close()
        puppet.channel = None


async def _gather_limited(awaitables: Iterable[Any], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(awaitable: Any) -> Any:
        async with semaphore:
            return await awaitable

    return list(await asyncio.gather(*(one(a) for a in awaitables)))
