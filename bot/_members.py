"""Who is in which room: the runtime records joins, leaves, renames and speakers.

Plugins read these facts (joined_at, inviter, group nickname, admins) instead of
tracking them again. Hot lookups (admins, display names) are cached in memory
and written through to the database.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot._config import ProjectConfig
from bot._context import MemberInfo, RoomInfo
from bot._db import dialect_insert, session_scope
from bot._events import (
    DirectMessage,
    Event,
    MemberRef,
    MemberRenamed,
    MembersJoined,
    MembersLeft,
    RoomCreated,
    RoomDismissed,
    RoomMessage,
    RoomOwnerChanged,
    RoomSnapshot,
    RoomTopicChanged,
)
from bot._models import Member, Membership, Room

log = logging.getLogger("qunbot.members")

_RECORDED = (MembersJoined, MembersLeft, MemberRenamed, RoomTopicChanged, RoomCreated, RoomOwnerChanged, RoomDismissed)
"""Events recorded in one transaction with their redelivery mark (a redelivered one changes nothing)."""
_SPOKE_WRITE_EVERY = timedelta(minutes=10)
_SPOKE_BATCH = 500
SPEAKERS_FLUSH_AFTER = timedelta(seconds=1)
"""How long speakers' `last_spoke_at` values wait to be written together (see `Members.flush_speakers`)."""
_ROOM = Room.__table__.c  # type: ignore[attr-defined]
_MEMBER = Member.__table__.c  # type: ignore[attr-defined]
_MEMBERSHIP = Membership.__table__.c  # type: ignore[attr-defined]
_IN_CHUNK = 500
_UPDATE_ROOM = (update(Room.__table__).where(_ROOM.id == bindparam("rid"))  # type: ignore[arg-type]
                .values(topic=bindparam("topic"), owner_id=bindparam("owner"), updated_at=bindparam("at")))
_RENAME_MEMBER = (update(Member.__table__).where(_MEMBER.id == bindparam("mid"))  # type: ignore[arg-type]
                  .values(name=bindparam("name")))
_MEMBERSHIP_KEY = (_MEMBERSHIP.room_id == bindparam("rid")) & (_MEMBERSHIP.member_id == bindparam("mid"))
_UPDATE_MEMBERSHIP = (update(Membership.__table__).where(_MEMBERSHIP_KEY)  # type: ignore[arg-type]
                      .values(is_admin=bindparam("admin"), left_at=None))
_UPDATE_MEMBERSHIP_ALIAS = (update(Membership.__table__).where(_MEMBERSHIP_KEY)  # type: ignore[arg-type]
                            .values(is_admin=bindparam("admin"), left_at=None, alias=bindparam("alias")))

class Members:
    """Room and member facts for one process, backed by the core tables."""

    def __init__(self, engine: Engine, config: ProjectConfig, now: Callable[[], datetime],
                 defer: Callable[[Callable[[], Awaitable[None]]], object] | None = None,
                 claim: Callable[[Session, Event], bool] | None = None) -> None:
        self._engine = engine
        self._claim = claim
        """Marks a membership event recorded in the recording transaction; False if it was (a redelivery)."""
        self._config = config
        self._now = now
        self._defer = defer
        """Runs a callback a little later (the clock's `SPEAKERS_FLUSH_AFTER`); None writes speakers at once."""
        self._spoke_pending: dict[tuple[str, str], datetime] = {}
        self._flush_armed = False
        insert_ = dialect_insert(engine.dialect.name)
        upsert = insert_(Membership.__table__)  # type: ignore[arg-type]
        self._upsert_speaker = upsert.on_conflict_do_update(
            index_elements=["room_id", "member_id"], set_={"last_spoke_at": upsert.excluded.last_spoke_at})
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
                if ms.is_admin and ms.left_at is None:
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

    def admins(self, room_id: str) -> list[str]:
        """The room's admins as WeChat reports them (owner included) plus those named in qunbot.toml."""
        return sorted(set(self._admins.get(room_id, ())) | set(self._config.room(room_id).admins))

    def with_mentions(self, text: str, mentions: Iterable[str], room_id: str | None) -> str:
        """Prepend `@name ` for each mentioned member whose @-name the text does not show yet."""
        missing = [f"@{self.display_name(m, room_id)}" for m in mentions]
        missing = [tag for tag in missing if tag not in text]
        return f"{' '.join(missing)} {text}" if missing else text

    def _room_info(self, room_id: str, topic: str) -> RoomInfo:
        return RoomInfo(room_id, topic, self._config.room(room_id).tags)

    # --- recording --------------------------------------------------------------

    def sync_rooms(self, account: str, snapshots: Iterable[RoomSnapshot]) -> None:
        """Record what the adapter reports at connect time (rooms, members, admins, nicknames).

        In bulk: one read per table and executemany writes, so an account with 20 rooms of 500
        members connects in well under a second (row by row it took seconds).
        """
        now = self._now()
        snaps = {snap.id: snap for snap in snapshots}
        if not snaps:
            return
        with session_scope(self._engine) as session:
            owners = dict(_select_in(session, select(_ROOM.id, _ROOM.owner_id), _ROOM.id, snaps))
            _many(session, insert(Room.__table__), [  # type: ignore[arg-type]
                {"id": s.id, "account": account, "topic": s.topic, "owner_id": s.owner_id, "updated_at": now}
                for s in snaps.values() if s.id not in owners])
            _many(session, _UPDATE_ROOM, [
                {"rid": s.id, "topic": s.topic, "owner": s.owner_id or owners[s.id], "at": now}
                for s in snaps.values() if s.id in owners])
            for snap in snaps.values():
                self._rooms[snap.id] = self._room_info(snap.id, snap.topic)
            self._sync_members(session, snaps)
            present = set(_select_in(session, select(_MEMBERSHIP.room_id, _MEMBERSHIP.member_id),
                                     _MEMBERSHIP.room_id, snaps))
            rows: dict[tuple[str, str], dict[str, object]] = {}
            for snap in snaps.values():
                admins = set(snap.admin_ids) | ({snap.owner_id} if snap.owner_id else set())
                self._admins[snap.id] = admins
                for ref in snap.members:
                    alias = snap.aliases.get(ref.id)
                    if alias:
                        self._aliases[(snap.id, ref.id)] = alias
                    rows[(snap.id, ref.id)] = {"rid": snap.id, "mid": ref.id, "admin": ref.id in admins,
                                               "alias": alias or None}
            new = [row for key, row in rows.items() if key not in present]
            _many(session, insert(Membership.__table__), [  # type: ignore[arg-type]
                {"room_id": r["rid"], "member_id": r["mid"], "alias": r["alias"], "is_admin": r["admin"]}
                for r in new])
            old = [row for key, row in rows.items() if key in present]
            _many(session, _UPDATE_MEMBERSHIP_ALIAS, [r for r in old if r["alias"]])
            _many(session, _UPDATE_MEMBERSHIP, [{"rid": r["rid"], "mid": r["mid"], "admin": r["admin"]}
                                                for r in old if not r["alias"]])

    def refresh_roles(self, roles: Mapping[str, set[str]]) -> None:
        """Take rooms' admins (room id -> admins and owner) from a fresh look at WeChat (who is in the room is
        left to join/leave events)."""
        with session_scope(self._engine) as session:
            for room_id, admins in roles.items():
                if admins == self._admins.get(room_id, set()):
                    continue
                room = _MEMBERSHIP.room_id == room_id
                session.execute(update(Membership.__table__).where(  # type: ignore[arg-type]
                    room & _MEMBERSHIP.is_admin & _MEMBERSHIP.member_id.not_in(admins)).values(is_admin=False))
                session.execute(update(Membership.__table__).where(  # type: ignore[arg-type]
                    room & _MEMBERSHIP.member_id.in_(admins) & _MEMBERSHIP.left_at.is_(None)).values(is_admin=True))
                self._admins[room_id] = admins

    def _sync_members(self, session: Session, snaps: dict[str, RoomSnapshot]) -> None:
        """Insert unknown members and rename known ones, as `_upsert_member` would one by one."""
        ids = {ref.id for snap in snaps.values() for ref in snap.members}
        names: dict[str, str] = dict(_select_in(session, select(_MEMBER.id, _MEMBER.name), _MEMBER.id, ids))
        added: dict[str, str] = {}
        renamed: dict[str, str] = {}
        for snap in snaps.values():
            for ref in snap.members:
                known = ref.id in names
                if not known:
                    names[ref.id] = added[ref.id] = ref.name
                elif ref.name and names[ref.id] != ref.name:
                    names[ref.id] = ref.name
                    (added if ref.id in added else renamed)[ref.id] = ref.name
                if ref.name:
                    self._names[ref.id] = ref.name
                else:
                    self._names.setdefault(ref.id, names[ref.id] if known else ref.id)
        _many(session, insert(Member.__table__),  # type: ignore[arg-type]
                        [{"id": k, "name": v} for k, v in added.items()])
        _many(session, _RENAME_MEMBER, [{"mid": k, "name": v} for k, v in renamed.items()])

    def record(self, event: Event) -> None:
        """Apply one incoming event to the room and member tables before plugins see it.

        If the write fails, the caches forget what they learnt from the event, so recording it again
        (the runtime does, after a database outage) writes it rather than taking it as known."""
        room_id: str | None = getattr(event, "room_id", None)
        room = self._rooms.get(room_id) if room_id else None
        refs = (event.sender,) if isinstance(event, RoomMessage | DirectMessage) else \
            event.members if isinstance(event, MembersJoined) else ()
        names = {ref.id: self._names.get(ref.id) for ref in refs}
        spoke = (room_id, event.sender.id) if isinstance(event, RoomMessage) else None
        written = self._spoke_written.get(spoke) if spoke else None
        try:
            self._record(event)
        except Exception:
            if room_id is not None:
                self._put(self._rooms, room_id, room)
            for member_id, name in names.items():
                self._put(self._names, member_id, name)
            if spoke is not None:
                self._put(self._spoke_written, spoke, written)
            raise

    @staticmethod
    def _put(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if value is None:
            cache.pop(key, None)
        else:
            cache[key] = value

    def _record(self, event: Event) -> None:
        if isinstance(event, RoomMessage):
            self._record_speaker(event)
        elif isinstance(event, DirectMessage):
            self._remember_name(event.sender)
        elif isinstance(event, _RECORDED):
            with session_scope(self._engine) as session:
                if self._claim is not None and not self._claim(session, event):
                    log.info("event %s was recorded already (redelivered); ignored", event.id)
                    return
                self._record_membership(session, event)

    def _record_membership(self, session: Session, event: Event) -> None:
        if isinstance(event, MembersJoined):
            self._ensure_room(session, event.account, event.room_id)
            for ref in event.members:
                ms = self._upsert_membership(session, event.room_id, ref)
                ms.joined_at, ms.inviter_id, ms.left_at = event.time, event.inviter_id, None
                ms.is_admin = False  # a newcomer has no role until WeChat says so (the next role refresh)
                self._admins.get(event.room_id, set()).discard(ref.id)
        elif isinstance(event, MembersLeft):
            for member_id in event.member_ids:
                ms = session.get(Membership, (event.room_id, member_id))
                if ms is not None:
                    ms.left_at, ms.is_admin = event.time, False
                self._admins.get(event.room_id, set()).discard(member_id)  # a role does not outlive leaving
        elif isinstance(event, MemberRenamed):
            self._aliases[(event.room_id, event.member_id)] = event.alias
            ms = self._upsert_membership(session, event.room_id, MemberRef(event.member_id, ""))
            ms.alias = event.alias
        elif isinstance(event, RoomTopicChanged):
            self._upsert_room(session, event.account, event.room_id, event.topic, None, event.time)
        elif isinstance(event, RoomCreated | RoomOwnerChanged):
            self._upsert_room(session, event.account, event.room_id, getattr(event, "topic", None) or None,
                              event.owner_id, event.time)
            if event.owner_id:
                self._admins.setdefault(event.room_id, set()).add(event.owner_id)
        elif isinstance(event, RoomDismissed):
            session.execute(update(Membership).where(Membership.room_id == event.room_id,
                                                     col(Membership.left_at).is_(None))
                            .values(left_at=event.time, is_admin=False))
            self._admins.pop(event.room_id, None)

    def _record_speaker(self, event: RoomMessage) -> None:
        key = (event.room_id, event.sender.id)
        last = self._spoke_written.get(key)
        known = self._names.get(event.sender.id) == event.sender.name and event.room_id in self._rooms
        if known and last and event.time - last < _SPOKE_WRITE_EVERY:
            return  # chatter: no write per message
        self._spoke_written[key] = event.time
        if known:
            # Member and room rows exist: batch the membership upserts (write-behind, see flush_speakers).
            self._spoke_pending[key] = event.time
            if len(self._spoke_pending) >= _SPOKE_BATCH or self._defer is None:
                self.flush_speakers()
            elif not self._flush_armed:
                self._flush_armed = True
                self._defer(self._flush_later)
            return
        with session_scope(self._engine) as session:
            self._ensure_room(session, event.account, event.room_id)
            ms = self._upsert_membership(session, event.room_id, event.sender)
            ms.last_spoke_at = event.time

    async def _flush_later(self) -> None:
        self._flush_armed = False
        self.flush_speakers()

    def flush_speakers(self) -> None:
        """Write the batched `last_spoke_at` values in one transaction.

        Runs a second after the first unwritten value (or every few hundred speakers under load), so busy
        chatter costs one commit a second for its speakers rather than one per event-loop turn (half of
        dispatch's time, bench/README.md §1). A crash loses at most that second's values, in a field that
        is only written every 10 minutes anyway; a clean stop and `drain` write them first.
        """
        if not self._spoke_pending:
            return
        rows = [{"room_id": room, "member_id": member, "last_spoke_at": at}
                for (room, member), at in self._spoke_pending.items()]
        self._spoke_pending.clear()
        try:
            with self._engine.begin() as connection:
                connection.execute(self._upsert_speaker, rows)
        except Exception:
            log.warning("could not record %d speakers' last message time; will retry", len(rows), exc_info=True)
            for row in rows:
                self._spoke_pending.setdefault((row["room_id"], row["member_id"]), row["last_spoke_at"])

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


def _select_in(session: Session, query: Any, column: Any, values: Iterable[str]) -> list[Any]:
    """Rows of `query` whose `column` is one of `values`, asked in chunks (bounded statement size)."""
    values = list(values)
    rows: list[Any] = []
    for start in range(0, len(values), _IN_CHUNK):
        rows.extend(session.execute(query.where(column.in_(values[start:start + _IN_CHUNK]))).all())
    return rows


def _many(session: Session, statement: Any, rows: list[dict[str, Any]]) -> None:
    """executemany, or nothing for no rows (an INSERT with no rows must not insert a default row)."""
    if rows:
        session.execute(statement, rows)
