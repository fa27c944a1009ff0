"""Who is in which room: the runtime records joins, leaves, renames and speakers.

Plugins read these facts (joined_at, inviter, group nickname, admins) instead of
tracking them again. Hot lookups (admins, display names) are cached in memory
and written through to the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot._config import ProjectConfig
from bot._context import MemberInfo, RoomInfo
from bot._db import session_scope
from bot._events import (
    DirectMessage,
    Event,
    MemberRef,
    MemberRenamed,
    MembersJoined,
    MembersLeft,
    RoomMessage,
    RoomSnapshot,
    RoomTopicChanged,
)
from bot._models import Member, Membership, Room

_SPOKE_WRITE_EVERY = timedelta(minutes=10)
_MEMBERSHIP = Membership.__table__.c  # type: ignore[attr-defined]
_TOUCH_SPEAKER = (update(Membership.__table__)  # type: ignore[arg-type]
                  .where(_MEMBERSHIP.room_id == bindparam("room"), _MEMBERSHIP.member_id == bindparam("member"))
                  .values(last_spoke_at=bindparam("at")))


class Members:
    """Room and member facts for one process, backed by the core tables."""

    def __init__(self, engine: Engine, config: ProjectConfig, now: Callable[[], datetime]) -> None:
        self._engine = engine
        self._config = config
        self._now = now
        self._rooms: dict[str, RoomInfo] = {}
        self._admins: dict[str, set[str]] = {}
        self._names: dict[str, str] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self._spoke_written: dict[tuple[str, str], datetime] = {}

    def load(self) -> None:
        """Warm the caches from the database after a restart."""
        with Session(self._engine) as session:
            for room in session.exec(select(Room)):
                self._rooms[room.id] = self._room_info(room.id, room.topic)
            for member in session.exec(select(Member)):
                self._names[member.id] = member.name
            for ms in session.exec(select(Membership)):
                if ms.alias:
                    self._aliases[(ms.room_id, ms.member_id)] = ms.alias
                if ms.is_admin:
                    self._admins.setdefault(ms.room_id, set()).add(ms.member_id)

    # --- lookups ----------------------------------------------------------------

    def room_info(self, room_id: str) -> RoomInfo:
        return self._rooms.get(room_id) or self._room_info(room_id, "")

    def rooms(self) -> list[RoomInfo]:
        return list(self._rooms.values())

    def member_info(self, member_id: str, room_id: str | None = None) -> MemberInfo:
        alias = self._aliases.get((room_id, member_id)) if room_id else None
        return MemberInfo(member_id, self._names.get(member_id, member_id), alias)

    def display_name(self, member_id: str, room_id: str | None) -> str:
        return self.member_info(member_id, room_id).display

    def is_admin(self, room_id: str, member_id: str) -> bool:
        if member_id in self._config.room(room_id).admins:
            return True
        return member_id in self._admins.get(room_id, ())

    def with_mentions(self, text: str, mentions: Iterable[str], room_id: str | None) -> str:
        """Prepend `@name ` for each mentioned member whose @-name the text does not show yet."""
        missing = [f"@{self.display_name(m, room_id)}" for m in mentions]
        missing = [tag for tag in missing if tag not in text]
        return f"{' '.join(missing)} {text}" if missing else text

    def _room_info(self, room_id: str, topic: str) -> RoomInfo:
        return RoomInfo(room_id, topic, self._config.room(room_id).tags)

    # --- recording --------------------------------------------------------------

    def sync_rooms(self, account: str, snapshots: Iterable[RoomSnapshot]) -> None:
        """Record what the adapter reports at connect time (rooms, members, admins, nicknames)."""
        now = self._now()
        with session_scope(self._engine) as session:
            for snap in snapshots:
                self._upsert_room(session, account, snap.id, snap.topic, snap.owner_id, now)
                admins = set(snap.admin_ids) | ({snap.owner_id} if snap.owner_id else set())
                self._admins[snap.id] = admins
                for ref in snap.members:
                    ms = self._upsert_membership(session, snap.id, ref)
                    ms.is_admin = ref.id in admins
                    ms.left_at = None
                    alias = snap.aliases.get(ref.id)
                    if alias:
                        ms.alias = alias
                        self._aliases[(snap.id, ref.id)] = alias

    def record(self, event: Event) -> None:
        """Apply one incoming event to the room and member tables before plugins see it."""
        if isinstance(event, RoomMessage):
            self._record_speaker(event)
        elif isinstance(event, DirectMessage):
            self._remember_name(event.sender)
        elif isinstance(event, MembersJoined):
            with session_scope(self._engine) as session:
                self._ensure_room(session, event.account, event.room_id)
                for ref in event.members:
                    ms = self._upsert_membership(session, event.room_id, ref)
                    ms.joined_at, ms.inviter_id, ms.left_at = event.time, event.inviter_id, None
        elif isinstance(event, MembersLeft):
            with session_scope(self._engine) as session:
                for member_id in event.member_ids:
                    ms = session.get(Membership, (event.room_id, member_id))
                    if ms is not None:
                        ms.left_at = event.time
        elif isinstance(event, MemberRenamed):
            self._aliases[(event.room_id, event.member_id)] = event.alias
            with session_scope(self._engine) as session:
                ms = self._upsert_membership(session, event.room_id, MemberRef(event.member_id, ""))
                ms.alias = event.alias
        elif isinstance(event, RoomTopicChanged):
            with session_scope(self._engine) as session:
                self._upsert_room(session, event.account, event.room_id, event.topic, None, event.time)

    def _record_speaker(self, event: RoomMessage) -> None:
        key = (event.room_id, event.sender.id)
        last = self._spoke_written.get(key)
        known = self._names.get(event.sender.id) == event.sender.name
        if known and event.room_id in self._rooms:
            if last and event.time - last < _SPOKE_WRITE_EVERY:
                return  # chatter: no write per message
            if self._touch_speaker(event):
                self._spoke_written[key] = event.time
                return
        self._spoke_written[key] = event.time
        with session_scope(self._engine) as session:
            self._ensure_room(session, event.account, event.room_id)
            ms = self._upsert_membership(session, event.room_id, event.sender)
            ms.last_spoke_at = event.time

    def _touch_speaker(self, event: RoomMessage) -> bool:
        """A known speaker's membership row exists: one UPDATE, no ORM loads (busy rooms call this a lot)."""
        with self._engine.begin() as connection:
            result = connection.execute(_TOUCH_SPEAKER, {"room": event.room_id, "member": event.sender.id,
                                                         "at": event.time})
        return bool(result.rowcount)

    def _remember_name(self, ref: MemberRef) -> None:
        if self._names.get(ref.id) != ref.name and ref.name:
            with session_scope(self._engine) as session:
                self._upsert_member(session, ref)

    def _ensure_room(self, session: Session, account: str, room_id: str) -> None:
        if room_id not in self._rooms:
            self._upsert_room(session, account, room_id, None, None, self._now())

    def _upsert_room(self, session: Session, account: str, room_id: str, topic: str | None,
                     owner_id: str | None, now: datetime) -> None:
        room = session.get(Room, room_id) or Room(id=room_id, account=account)
        if topic is not None:
            room.topic = topic
        room.owner_id = owner_id or room.owner_id
        room.updated_at = now
        session.add(room)
        self._rooms[room_id] = self._room_info(room_id, room.topic)

    def _upsert_member(self, session: Session, ref: MemberRef) -> None:
        member = session.get(Member, ref.id)
        if member is None:
            session.add(Member(id=ref.id, name=ref.name))
        elif ref.name and member.name != ref.name:
            member.name = ref.name
        if ref.name:
            self._names[ref.id] = ref.name
        else:
            self._names.setdefault(ref.id, member.name if member else ref.id)

    def _upsert_membership(self, session: Session, room_id: str, ref: MemberRef) -> Membership:
        self._upsert_member(session, ref)
        ms = session.get(Membership, (room_id, ref.id))
        if ms is None:
            ms = Membership(room_id=room_id, member_id=ref.id)
            session.add(ms)
        return ms
