"""A WeCom (企业微信) corp's customer groups (客户群) through the official API, as one qunbot account.

What the official API allows, and so what this adapter declares: it cannot read group messages, and
every post is a group-message task (`add_msg_template`) that the group owner confirms in the WeCom
app: `send` hands the room to `TaskKeeper`, which makes one task per owner of each post's rooms; the
outbox keeps each row `awaiting_confirmation` until the task settles it. Rooms come from
`groupchat/list` + `groupchat/get`; changes arrive as `change_external_chat` callbacks. docs/wecom.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot._events import (
    Event,
    MemberRef,
    MembersJoined,
    MembersLeft,
    Outgoing,
    RoomCreated,
    RoomDismissed,
    RoomOwnerChanged,
    RoomSnapshot,
    RoomTopicChanged,
)
from bot._files import FileRefused, project_file
from bot.adapters._base import (
    Adapter,
    AdapterError,
    EventSink,
    Receipt,
    SendError,
    Settle,
)
from bot.adapters._profiles import PROFILES
from bot.adapters.wecom._callback import CallbackServer
from bot.adapters.wecom._client import WecomClient
from bot.adapters.wecom._crypto import MsgCrypt
from bot.adapters.wecom._models import WecomMedia, WecomWelcome
from bot.adapters.wecom._tasks import TaskKeeper

if TYPE_CHECKING:
    from bot._clock import Clock
    from bot._config import AccountSettings, ProjectConfig, WecomSettings

log = logging.getLogger("qunbot.wecom")

MEDIA_LIFETIME = timedelta(days=3)
"""media/upload ids expire after 3 days; re-upload a little before."""
_MEDIA_MARGIN = timedelta(hours=6)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
MAX_ROOMS = 2000
"""Groups one `add_msg_template` task may name (`chat_id_list`)."""
WELCOME_ACTION = "welcome_template"
"""An `Outgoing.action` the welcome plugin queues where greetings are templates: `text` is the template."""


class WecomAdapter(Adapter):
    """Customer groups of one corp, reached with its 客户联系 secret."""

    capabilities = PROFILES["wecom"]
    """One declaration, shared with `qunbot check` and `emulate = "wecom"`; `[accounts.room_quota]` overrides the
    quota where the admin console is set to weekly or daily limits."""

    def __init__(self, account: str, clock: Clock, *, client: WecomClient, crypt: MsgCrypt,
                 settings: WecomSettings, project: Path) -> None:
        super().__init__(account)
        self.clock, self.client, self.crypt, self.settings, self.project = clock, client, crypt, settings, project
        self.callback = CallbackServer(crypt, self._received, host=settings.callback_host,
                                       port=settings.callback_port, path=settings.callback_path, account=account)
        self._rooms: dict[str, RoomSnapshot] = {}
        self._members_of: dict[str, dict[str, dict[str, Any]]] = {}
        """Per group, WeCom's member entries (join_time, join_scene, invitor) from groupchat/get."""
        self._engine: Engine | None = None
        self.tasks: TaskKeeper | None = None
        self._sink: EventSink | None = None
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        """Set by `send` and `stop`: the poller works out again when to look next."""
        self._loops: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(cls, settings: AccountSettings, *, clock: Clock, project: Path,
                      config: ProjectConfig) -> WecomAdapter:
        """Read the corp id, the secret, the callback token and the EncodingAESKey from the environment."""
        wecom = settings.wecom
        names = (wecom.corp_id_env, wecom.secret_env, wecom.callback_token_env, wecom.aes_key_env)
        values = [os.environ.get(name, "").strip() for name in names]
        missing = [name for name, value in zip(names, values, strict=True) if not value]
        if missing:
            raise AdapterError(f"account {settings.id}: set {', '.join(missing)} (企业微信 corp id, the 客户联系 "
                               "secret, and the callback Token and EncodingAESKey from the console; docs/wecom.md)")
        corp_id, secret, token, aes_key = values
        try:
            crypt = MsgCrypt(token, aes_key, corp_id, max_age=wecom.callback_max_age)
        except ValueError as err:
            raise AdapterError(f"account {settings.id}: ${wecom.aes_key_env}: {err}") from None
        client = WecomClient(corp_id, secret, base_url=wecom.api_base)
        return cls(settings.id, clock, client=client, crypt=crypt, settings=wecom, project=project)

    def bind(self, engine: Engine, settle: Settle) -> None:
        self._engine = engine
        self.tasks = TaskKeeper(self.account, self.client, engine, settle, self.clock,
                                remind_every=timedelta(seconds=self.settings.remind_every),
                                window=timedelta(seconds=self.settings.batch_window),
                                limit=lambda: min(self.capabilities.max_rooms_per_post or MAX_ROOMS, MAX_ROOMS))

    # --- life cycle ---------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        """Check the secret by reading every customer group, then open the callback endpoint and the poller."""
        self._sink = sink
        self._stopping, self._wake = asyncio.Event(), asyncio.Event()
        try:
            await self.sync_rooms()
        except SendError as err:
            raise AdapterError(f"account {self.account}: {err}") from None
        try:
            await self.callback.start()
        except OSError as err:
            raise AdapterError(f"account {self.account}: WeCom callback endpoint: {err}") from None
        self._loops = [asyncio.create_task(self._work_inbox(), name=f"wecom-events-{self.account}"),
                       asyncio.create_task(self._poll_tasks(), name=f"wecom-tasks-{self.account}")]
        log.info("account %s: WeCom corp %s, %d customer group(s)", self.account, self.client.corp_id,
                 len(self._rooms))

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        await self.callback.stop()
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops = []

    # --- rooms ------------------------------------------------------------------------

    async def sync_rooms(self) -> list[RoomSnapshot]:
        ids = await self.client.group_chat_ids()
        rooms = {}
        for chat_id in ids:
            rooms[chat_id] = await self._fetch_room(chat_id)
        self._rooms = rooms
        return list(rooms.values())

    async def rooms(self) -> list[RoomSnapshot]:
        return list(self._rooms.values())

    async def _fetch_room(self, chat_id: str) -> RoomSnapshot:
        group = await self.client.group_chat(chat_id)
        self._members_of[chat_id] = {str(m["userid"]): m for m in group.get("member_list", [])}
        members = tuple(MemberRef(uid, _name(m)) for uid, m in self._members_of[chat_id].items())
        aliases = {uid: str(m["group_nickname"]) for uid, m in self._members_of[chat_id].items()
                   if m.get("group_nickname")}
        snapshot = RoomSnapshot(chat_id, str(group.get("name") or chat_id), members,
                                tuple(str(a["userid"]) for a in group.get("admin_list", [])),
                                str(group.get("owner") or "") or None, aliases)
        self._rooms[chat_id] = snapshot
        return snapshot

    # --- callbacks in ------------------------------------------------------------------------

    async def _received(self, xml: str) -> None:
        self._inbox.put_nowait(xml)

    async def _work_inbox(self) -> None:
        """Turn callbacks into events in arrival order; one bad callback never stops the rest."""
        while True:
            xml = await self._inbox.get()
            try:
                for event in await self.translate(xml):
                    log.info("account %s: WeCom callback: %s", self.account, event)
                    if self._sink is not None:
                        await self._sink(event)
            except Exception:
                log.exception("account %s: could not handle a WeCom callback: %s", self.account, xml[:500])

    async def translate(self, xml: str) -> list[Event]:
        """One decrypted callback → typed events (change_external_chat); anything else is logged and dropped."""
        root = ElementTree.fromstring(xml)

        def field(name: str) -> str:
            return (root.findtext(name) or "").strip()

        event_name, change = field("Event"), field("ChangeType")
        if field("MsgType") != "event" or event_name != "change_external_chat":
            log.info("account %s: WeCom callback %s/%s acknowledged, not used", self.account,
                     field("MsgType") or "?", event_name or "?")
            return []
        chat_id, detail = field("ChatId"), field("UpdateDetail")
        now = self.clock.now()
        base = f"wecom:{chat_id}:{field('CreateTime')}:{change}:{detail}:{field('CurMemVer')}"
        old = self._rooms.get(chat_id)
        if change == "dismiss":
            self._rooms.pop(chat_id, None)
            return [RoomDismissed(account=self.account, id=base, time=now, room_id=chat_id)]
        if change not in ("create", "update"):
            log.info("account %s: WeCom change_external_chat %r acknowledged, not used", self.account, change)
            return []
        room = await self._fetch_room(chat_id)  # the callback carries ids only: names, inviters come from here
        if change == "create":  # the room, then everyone in it (with their inviters) as joins
            others = [ref.id for ref in room.members if ref.id != room.owner_id]
            return [RoomCreated(account=self.account, id=base, time=now, room_id=chat_id, topic=room.topic,
                                owner_id=room.owner_id), *self._joins(room, others, base, now)]
        changed = _changed_members(root)
        if detail == "add_member":
            return self._joins(room, changed, base, now)
        if detail == "del_member":
            return [MembersLeft(account=self.account, id=base, time=now, room_id=chat_id, member_ids=tuple(changed))]
        if detail == "change_name":
            return [RoomTopicChanged(account=self.account, id=base, time=now, room_id=chat_id, topic=room.topic,
                                     old_topic=old.topic if old else None)]
        if detail == "change_owner" and room.owner_id:
            return [RoomOwnerChanged(account=self.account, id=base, time=now, room_id=chat_id, owner_id=room.owner_id,
                                     old_owner_id=old.owner_id if old else None)]
        log.info("account %s: WeCom group %s: %s acknowledged, not used", self.account, chat_id, detail or change)
        return []

    def _joins(self, room: RoomSnapshot, member_ids: list[str], base: str, now: datetime) -> list[Event]:
        """One MembersJoined per inviter (groupchat/get's `invitor`), so each join is recorded with who invited."""
        by_inviter: dict[str | None, list[MemberRef]] = {}
        names = {ref.id: ref for ref in room.members}
        for uid in member_ids:
            info = self._members_of.get(room.id, {}).get(uid, {})
            inviter = str((info.get("invitor") or {}).get("userid") or "") or None
            by_inviter.setdefault(inviter, []).append(names.get(uid, MemberRef(uid, uid)))
        return [MembersJoined(account=self.account, id=f"{base}:{inviter or ''}", time=now, room_id=room.id,
                              members=tuple(refs), inviter_id=inviter) for inviter, refs in by_inviter.items()]

    # --- sending --------------------------------------------------------------------------

    async def send(self, message: Outgoing) -> Receipt | None:
        if message.action == WELCOME_ACTION:
            await self._welcome_template(message.text)
            return None
        if message.action is not None:
            raise SendError(f"企业微信官方接口不能 {message.action}（客户群只能由群主在企业微信里操作）")
        if message.room_id is None:
            raise SendError("企业微信官方接口不能给客户发私聊消息（只能发群发任务到客户群）")
        if self.tasks is None:
            raise SendError("the WeCom adapter was not bound to a database (bind) before sending")
        room = self._rooms.get(message.room_id) or await self._fetch_room(message.room_id)
        if not room.owner_id:
            raise SendError(f"WeCom group {message.room_id} has no owner to send its task")
        attachments = [await self._attachment(message.file, message.text)] if message.file else []
        deadline = message.expires_at or self.clock.now() + timedelta(seconds=self.settings.confirm_within)
        post = self.tasks.queue(message.key or f"adhoc:{uuid.uuid4().hex}", room.id, room.owner_id, message.text,
                                attachments, deadline)
        self._wake.set()
        return Receipt(f"{post} (the task of {room.owner_id})")

    async def was_sent(self, message: Outgoing) -> bool | None:
        """After a crash mid-send: a room the adapter took is made a task (if it was not yet), followed, and
        settles the row (None, "wait"); a room it never took is queued again (False)."""
        if self.tasks is None or not message.key:
            return None
        return None if self.tasks.known(message.key) else False

    async def _attachment(self, file: str, text: str) -> dict[str, Any]:
        if file.startswith(("http://", "https://")):
            title = (text.strip().splitlines() or [file])[0][:128]
            return {"msgtype": "link", "link": {"title": title, "url": file}}
        try:  # checked again at send time: it may have become a symlink out of the project since `check`
            path = project_file(self.project, file)
        except FileRefused as err:
            raise SendError(str(err)) from None
        if path.suffix.lower() not in _IMAGE_SUFFIXES:
            raise SendError(f"企业微信群发任务只能带图片或链接，{file} 不是图片")
        if not path.is_file():
            raise SendError(f"the image {file} is not under the project ({path})")
        return {"msgtype": "image", "image": {"media_id": await self._media_id(path)}}

    async def _media_id(self, path: Path) -> str:
        """Upload once; reuse the id (also after a restart) until shortly before its 3 days run out."""
        mtime_ns = path.stat().st_mtime_ns
        now = self.clock.now()
        if self._engine is not None:
            with Session(self._engine) as session:
                row = session.get(WecomMedia, (self.account, str(path), mtime_ns))
                if row is not None and now - row.uploaded_at.astimezone(now.tzinfo) < MEDIA_LIFETIME - _MEDIA_MARGIN:
                    return row.media_id
        media_id = await self.client.upload_image(path)
        if self._engine is not None:
            with Session(self._engine) as session:
                session.merge(WecomMedia(account=self.account, path=str(path), mtime_ns=mtime_ns, media_id=media_id,
                                         uploaded_at=now))
                session.commit()
        return media_id

    async def _welcome_template(self, text: str) -> None:
        if not self.settings.welcome_template:
            return
        if self._engine is None:
            raise SendError("the WeCom adapter was not bound to a database (bind)")
        with Session(self._engine) as session:
            row = session.get(WecomWelcome, self.account)
            if row is not None and row.text == text:
                return
            template_id = await self.client.welcome_template(text, row.template_id if row else None)
            row = row or WecomWelcome(account=self.account, template_id=template_id, text=text,
                                      updated_at=self.clock.now())
            row.template_id, row.text, row.updated_at = template_id, text, self.clock.now()
            session.add(row)
            session.commit()
        log.info("account %s: the 入群欢迎语 template %s now reads: %s (attach it in the console: docs/wecom.md)",
                 self.account, template_id, text)

    # --- the poller ---------------------------------------------------------------------------

    async def _poll_tasks(self) -> None:
        """Flush and poll when something is due (a batch's window, a deadline) or every `poll_interval`;
        the first round right away makes the tasks of rooms queued before a restart."""
        next_poll = self.clock.now()
        while not self._stopping.is_set():
            wait = self._poll_wait(next_poll)
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass  # the time came: look now
                else:
                    self._wake.clear()
                    continue  # a room was handed over (or stop): work out when to look again
            if self._stopping.is_set():
                break
            next_poll = self.clock.now() + timedelta(seconds=self.settings.poll_interval)
            if self.tasks is None:
                continue
            try:
                await self.tasks.poll()
            except Exception:
                log.exception("account %s: polling the WeCom tasks failed", self.account)

    def _poll_wait(self, next_poll: datetime) -> float:
        """Seconds to the next look: the regular poll, or sooner when a batch or a task's deadline is due."""
        when = next_poll
        try:
            due = self.tasks.next_due() if self.tasks is not None else None
        except Exception:  # the database is away: look again at the regular time
            due = None
        if due is not None:
            when = min(when, due + timedelta(seconds=0.05))
        return max((when - self.clock.now()).total_seconds(), 0.0)


def _changed_members(root: ElementTree.Element) -> list[str]:
    """MemChangeList: `<Item>` per member (current format) or one comma-separated text (older callbacks)."""
    node = root.find("MemChangeList")
    if node is None:
        return []
    items = [item.text.strip() for item in node.iter("Item") if item.text and item.text.strip()]
    return items or [part.strip() for part in (node.text or "").split(",") if part.strip()]


def _name(member: dict[str, Any]) -> str:
    return str(member.get("name") or member.get("group_nickname") or member.get("userid"))
