"""What an adapter reports at connect time lands in the core tables and the caches (`Members.sync_rooms`).

The sync runs in bulk; these tests pin the row-by-row semantics it replaced: inserts and renames,
admins from the owner and the admin list, nicknames kept unless reported, left members back in,
a missing owner keeping the known one, empty names never clobbering known ones.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from bot._config import ProjectConfig
from bot._db import make_engine
from bot._events import MemberRef, RoomSnapshot
from bot._members import Members
from bot._migrations import upgrade
from bot._models import Member, Membership, Room

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def make_members(url: str, now: list[datetime]) -> Members:
    engine = make_engine(url)
    upgrade(engine, {"core": []})
    return Members(engine, ProjectConfig(), lambda: now[0])


def table(members: Members) -> tuple[dict, dict, dict]:
    with Session(members._engine) as session:
        rooms = {r.id: (r.account, r.topic, r.owner_id, r.updated_at) for r in session.exec(select(Room))}
        people = {m.id: m.name for m in session.exec(select(Member))}
        ships = {(m.room_id, m.member_id): (m.alias, m.is_admin, m.left_at) for m in session.exec(select(Membership))}
    return rooms, people, ships


def check_sync(url: str) -> None:
    now = [T0]
    members = make_members(url, now)
    members.sync_rooms("acc", [
        RoomSnapshot("g1", "一群", (MemberRef("o", "群主"), MemberRef("a", "Alice"), MemberRef("b", "")),
                     admin_ids=("a",), owner_id="o", aliases={"a": "上海-Alice"}),
        RoomSnapshot("g2", "二群", (MemberRef("a", "Alice2"), MemberRef("c", "Carol"))),
    ])
    rooms, people, ships = table(members)
    assert rooms == {"g1": ("acc", "一群", "o", T0), "g2": ("acc", "二群", None, T0)}
    assert people == {"o": "群主", "a": "Alice2", "b": "", "c": "Carol"}  # the later report of a name wins
    assert ships == {("g1", "o"): (None, True, None), ("g1", "a"): ("上海-Alice", True, None),
                     ("g1", "b"): (None, False, None), ("g2", "a"): (None, False, None),
                     ("g2", "c"): (None, False, None)}
    assert members.display_name("a", "g1") == "上海-Alice"
    assert members.display_name("a", "g2") == "Alice2"
    assert members.display_name("b", "g1") == "b"  # no name known: the id
    assert members.is_admin("g1", "o") and members.is_admin("g1", "a") and not members.is_admin("g2", "a")
    assert members.room_info("g2").topic == "二群"

    # b leaves; later the bot reconnects: b is back, Alice lost admin, names and topic changed
    with Session(members._engine) as session:
        row = session.get(Membership, ("g1", "b"))
        assert row is not None
        row.left_at = T0
        session.add(row)
        session.commit()
    now[0] = T1
    members.sync_rooms("other", [
        RoomSnapshot("g1", "一群改名", (MemberRef("o", ""), MemberRef("a", "Alice"), MemberRef("b", "Bob")),
                     owner_id=None),
        RoomSnapshot("g3", "三群", (MemberRef("d", ""),)),
    ])
    rooms, people, ships = table(members)
    assert rooms["g1"] == ("acc", "一群改名", "o", T1)  # account kept, owner kept when not reported
    assert rooms["g2"] == ("acc", "二群", None, T0)
    assert rooms["g3"] == ("other", "三群", None, T1)
    assert people == {"o": "群主", "a": "Alice", "b": "Bob", "c": "Carol", "d": ""}
    assert ships[("g1", "a")] == ("上海-Alice", False, None)  # nickname kept, admin gone
    assert ships[("g1", "b")] == (None, False, None)  # back in the room
    assert ships[("g1", "o")] == (None, False, None)  # no owner reported this time: not an admin
    assert ships[("g3", "d")] == (None, False, None)
    assert members.display_name("o", "g1") == "群主"  # an empty name does not clobber the known one
    assert members.display_name("b", "g1") == "Bob"
    assert members.display_name("d", "g3") == "d"
    assert not members.is_admin("g1", "a")
    assert members.room_info("g1").topic == "一群改名"
    members._engine.dispose()


def test_sync_rooms_sqlite(tmp_path) -> None:
    check_sync(f"sqlite:///{tmp_path}/x.db")


def test_sync_rooms_postgres(postgres_url) -> None:
    pytest.importorskip("psycopg")
    check_sync(postgres_url)


def test_sync_of_many_members_in_chunks(tmp_path) -> None:
    """More rooms and members than one IN-list chunk; a second sync finds them all present."""
    members = make_members(f"sqlite:///{tmp_path}/x.db", [T0])
    snaps = [RoomSnapshot(f"g{r}", f"群{r}", tuple(MemberRef(f"u{r}_{m}", f"成员{m}") for m in range(300)))
             for r in range(4)]
    members.sync_rooms("acc", snaps)
    members.sync_rooms("acc", snaps)
    rooms, people, ships = table(members)
    assert len(rooms) == 4 and len(people) == 1200 and len(ships) == 1200
    assert members.display_name("u3_299", "g3") == "成员299"
    members._engine.dispose()
