"""A message WeChat delivers twice (same transport id) is handled once: before and after a restart,
on SQLite and PostgreSQL, for members' redemptions and admins' commands alike."""

from __future__ import annotations

import json
import threading
from io import StringIO
from pathlib import Path

from sqlmodel import Session, select

from bot._events import MemberRef, MembersJoined, MembersLeft, RoomMessage
from bot._models import InboundMark, Membership
from bot._redelivery import RETENTION, Redelivery
from bot._simulate import run_scenario
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parent.parent
MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob"}


def _points(bot: BotHarness):
    return bot.runtime.plugins["points"].service


def _models(bot: BotHarness):
    import sys
    return sys.modules[type(_points(bot)).__module__.replace(".service", ".models")]


def _settings(tmp_path: Path, stock: int = 500) -> dict:
    path = tmp_path / "catalog.yaml"
    path.write_text(f"items:\n  - name: 帆布袋\n    cost: 100\n    stock: {stock}\n", encoding="utf-8")
    return {"plugins": {"points": {"catalog": str(path)}}}


def _grant(bot: BotHarness, member: str, amount: int) -> None:
    with bot.db() as db:
        _points(bot).grant(db, room_id="g1", member_id=member, amount=amount, reason="t", source="t", at=bot.now)
        db.commit()


def _redemptions(bot: BotHarness) -> int:
    with bot.db() as db:
        return len(db.exec(select(_models(bot).PointsRedemption)).all())


def _balance(bot: BotHarness, member: str) -> int:
    with bot.db() as db:
        return _points(bot).balance(db, "g1", member)


async def _both_ways(bot: BotHarness, tmp_path: Path) -> None:
    bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
    _grant(bot, "u1", 250)
    await bot.say("g1", "u1", "兑换 帆布袋", id="wx-1")
    first = bot.pop_text()
    await bot.say("g1", "u1", "兑换 帆布袋", id="wx-1")          # the same message, delivered again
    assert "兑换成功" in first and "剩余 150 积分" in first
    assert bot.pop_text() == ""                                  # no second answer, and no stale balance
    assert _redemptions(bot) == 1 and _balance(bot, "u1") == 150
    await bot.say("g1", "owner1", "调整积分 @Alice +50 线下活动", mentions=["u1"], id="wx-2")
    await bot.say("g1", "owner1", "调整积分 @Alice +50 线下活动", mentions=["u1"], id="wx-2")
    assert bot.pop_text().count("已为 Alice 增加 50 积分") == 1
    assert _balance(bot, "u1") == 200
    await bot.say("g1", "u1", "兑换 帆布袋", id="wx-3")          # a new message with the same words counts
    assert _redemptions(bot) == 2 and _balance(bot, "u1") == 100


async def test_a_redelivered_redemption_and_adjustment_count_once(tmp_path):
    async with BotHarness(REPO, plugins=["points"], settings=_settings(tmp_path)) as bot:
        await _both_ways(bot, tmp_path)


async def test_a_redelivered_redemption_counts_once_on_postgres(tmp_path, postgres_url):
    async with BotHarness(REPO, plugins=["points"], settings=_settings(tmp_path), db_url=postgres_url) as bot:
        await _both_ways(bot, tmp_path)


async def test_after_a_crash_and_restart_redelivered_redemptions_count_once(tmp_path):
    # botproc.py's platforms replay recent messages at reconnect; 150 members each redeemed before the crash.
    async with BotHarness(REPO, plugins=["points"], settings=_settings(tmp_path)) as bot:
        members = {f"m{n}": f"会员{n}" for n in range(150)}
        bot.room("g1", "群", members=members)
        for member in members:
            _grant(bot, member, 200)
        for member in members:
            await bot.say("g1", member, "兑换 帆布袋", id=f"wx-{member}", drain=False)
        await bot.drain()
        await bot.restart(crash=True)
        for member in members:
            await bot.say("g1", member, "兑换 帆布袋", id=f"wx-{member}", drain=False)
        await bot.drain()
        assert _redemptions(bot) == 150
        assert all(_balance(bot, member) == 100 for member in members)


async def test_admin_fulfilment_and_a_member_leaving_are_idempotent_by_message_id(tmp_path):
    async with BotHarness(REPO, plugins=["points"], settings=_settings(tmp_path)) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["owner1"])
        _grant(bot, "u1", 100)
        await bot.say("g1", "u1", "兑换 帆布袋", id="m1")
        await bot.say("g1", "owner1", "已发放 1", id="m2")
        await bot.say("g1", "owner1", "已发放 1", id="m2")
        assert bot.pop_text().count("已发放") == 1
        # A leave, a rejoin, then the old leave delivered again: she is still in the room.
        leave = MembersLeft(account=bot.sim.account, id="leave-1", time=bot.now, room_id="g1", member_ids=("u2",))
        await bot.runtime.dispatch(leave)
        await bot.runtime.dispatch(MembersJoined(account=bot.sim.account, id="join-2", time=bot.now, room_id="g1",
                                                 members=(MemberRef("u2", "Bob"),)))
        await bot.runtime.dispatch(leave)
        with bot.db() as db:
            assert db.get(Membership, ("g1", "u2")).left_at is None


def test_scenario_say_and_private_take_an_id_and_one_id_twice_is_one_message(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("""\
start: 2026-11-23T08:00:00+08:00
bot: {id: bot, name: 小完子}
rooms:
  - {id: g1, topic: 群, members: [{id: u1, name: Alice}]}
events:
  - say: {room: g1, from: u1, text: 签到, id: m-1}
  - at: +1d
    say: {room: g1, from: u1, text: 签到, id: m-1}
  - say: {room: g1, from: u1, text: 积分, id: m-2}
""", encoding="utf-8")
    import asyncio
    out = StringIO()
    asyncio.run(run_scenario(scenario, REPO, out=out))
    texts = [json.loads(line)["text"] for line in out.getvalue().splitlines() if "积分" in json.loads(line)["text"]]
    # the sign-in delivered again a day later is the same message: no second day of points
    assert len(texts) == 2 and "签到成功" in texts[0] and "你的积分：10" in texts[1]


def test_two_sessions_claiming_one_message_on_postgres_one_wins(postgres_url):
    """The database decides, not a read in Python: a claim racing an uncommitted one waits, then loses."""
    from bot._db import make_engine
    from bot._migrations import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine, {"core": []})
    marks = Redelivery(engine)
    event = RoomMessage(account="a", id="wx-9", time=_now(), room_id="g1", sender=MemberRef("u1", "A"), text="x")
    results: list[bool] = []
    with Session(engine) as first:
        assert marks.claim(first, event, "points.redeem_item", _now())

        def second() -> None:
            with Session(engine) as other:
                results.append(marks.claim(other, event, "points.redeem_item", _now()))
                other.commit()

        racer = threading.Thread(target=second)
        racer.start()
        first.commit()
    racer.join(timeout=30)
    assert results == [False]
    engine.dispose()


def test_marks_are_forgotten_after_the_retention_window(tmp_path):
    from bot._db import make_engine
    from bot._migrations import upgrade

    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine, {"core": []})
    marks = Redelivery(engine)
    event = RoomMessage(account="a", id="wx-1", time=_now(), room_id="g1", sender=MemberRef("u1", "A"), text="x")
    with Session(engine) as session:
        assert marks.claim(session, event, "p.h", _now())
        session.commit()
    assert marks.handled(event) == {"p.h"}
    assert marks.prune(_now() + RETENTION / 2) == 0
    assert marks.prune(_now() + RETENTION * 2) == 1
    assert marks.handled(event) == frozenset()
    with Session(engine) as session:
        assert session.exec(select(InboundMark)).all() == []


def _now():
    from datetime import UTC, datetime
    return datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
