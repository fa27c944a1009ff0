"""A fleet of groups written straight into the tables, shared by the fleet tests and the browser test.

120 groups 完子会员0…119 (accounts a1/a2 alternating, every tenth tagged vip in the config), five members
each, the quiet-rule groups (messages in the two weeks before NOW as in WEEKS) and one whose topic is markup.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session
from week_data import REPO

from bot._config import ProjectConfig, RoomSettings, load_config
from bot._db import make_engine
from bot._models import Membership, Room
from bot.dashboard import build_app
from bot.insight import InsightMessage

NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
XSS = "</script><img src=x onerror=alert(1)>群"
# Member messages (last week, this week) per 7×24 h ending at NOW: the quiet rule's edges.
WEEKS = {"q-half": (20, 10), "q-floor": (19, 0), "q-above": (20, 11), "q-dead": (40, 0), "q-new": (0, 9)}


def fleet_config() -> ProjectConfig:
    config = load_config(REPO)
    rooms = {f"r{i}": RoomSettings(tags=("vip",)) for i in range(0, 120, 10)}
    return config.model_copy(update={"rooms": {**config.rooms, **rooms}})


def fleet_app(url: str, password: str, now: datetime = NOW):  # type: ignore[no-untyped-def]
    """The dashboard over `url` (its tables created, the guard plugin's included)."""
    return build_app(REPO, fleet_config(), db_url=url, now=lambda: now, environ={"QUNBOT_DASHBOARD_PASSWORD": password})


def build_fleet(url: str) -> None:
    """Write the fleet into the (created) tables at `url`."""
    long_ago = NOW - timedelta(days=60)
    with Session(make_engine(url)) as session:
        rooms = [Room(id=f"r{i}", account=f"a{i % 2 + 1}", topic=f"完子会员{i}") for i in range(120)]
        rooms += [Room(id=room_id, account="a1", topic=f"冷{room_id}") for room_id in WEEKS]
        rooms.append(Room(id="xss", account="a1", topic=XSS))
        session.add_all(rooms)
        for room in rooms:
            for m in range(5):
                session.add(Membership(room_id=room.id, member_id=f"{room.id}-m{m}", joined_at=long_ago))
        session.add_all([Membership(room_id="r7", member_id="new1", joined_at=NOW - timedelta(days=2)),
                         Membership(room_id="r7", member_id="gone1", joined_at=long_ago,
                                    left_at=NOW - timedelta(days=1))])
        for room_id, (last, this) in WEEKS.items():
            for n in range(last):
                session.add(InsightMessage(room_id=room_id, member_id=f"{room_id}-m0",
                                           at=NOW - timedelta(days=13, hours=n % 20)))
            for n in range(this):
                session.add(InsightMessage(room_id=room_id, member_id=f"{room_id}-m1", at=NOW - timedelta(hours=n + 1)))
        for n in range(7):  # r3 is the chattiest numbered group: 7 messages today
            session.add(InsightMessage(room_id="r3", member_id="r3-m0", at=NOW - timedelta(minutes=n + 1)))
        session.commit()
