"""Messages a person confirms (WeCom group-message tasks): `awaiting_confirmation` until the adapter settles them."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, SQLModel, create_engine, select

from bot._clock import VirtualClock
from bot._config import PacingSettings
from bot._events import Outgoing
from bot._models import OutboxMessage
from bot._outbox import Outbox
from bot.adapters._base import Receipt

TZ = ZoneInfo("Asia/Shanghai")
PACING = PacingSettings(min_interval=0, jitter=0, room_interval=0)


def setup(tmp_path, sender):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    SQLModel.metadata.create_all(engine)
    clock = VirtualClock(datetime(2026, 12, 1, 8, 0, tzinfo=TZ))
    outbox = Outbox("corp", engine, clock, PACING, sender)
    with Session(engine) as session:
        outbox.enqueue(session, key="sop:f:早安:g1:2026-12-01", text="早安", room_id="g1",
                       expires_at=clock.now() + timedelta(hours=2))
        session.commit()
    outbox.start()
    return engine, clock, outbox


def status(engine) -> tuple[str, str | None]:
    with Session(engine) as session:
        row = session.exec(select(OutboxMessage)).one()
        return row.status, row.last_error


async def test_a_receipt_leaves_the_row_waiting_until_it_is_settled(tmp_path):
    seen: list[Outgoing] = []

    async def send(message: Outgoing) -> Receipt:
        seen.append(message)
        return Receipt("msg1")

    engine, clock, outbox = setup(tmp_path, send)
    await clock.advance(timedelta(seconds=1))
    assert status(engine) == ("awaiting_confirmation", None)
    assert seen[0].key == "sop:f:早安:g1:2026-12-01" and seen[0].expires_at == clock.now() - timedelta(seconds=1) \
        + timedelta(hours=2)
    assert outbox.pending_count() == 0
    await clock.advance(timedelta(minutes=5))
    assert len(seen) == 1  # never sent again while it waits
    outbox.settle("sop:f:早安:g1:2026-12-01", "cancelled", "not confirmed")
    assert status(engine) == ("cancelled", "not confirmed")
    outbox.settle("sop:f:早安:g1:2026-12-01", "sent")  # a settled row stays as it ended
    assert status(engine) == ("cancelled", "not confirmed")


async def test_a_settle_faster_than_the_outbox_is_not_overwritten(tmp_path):
    holder: list[Outbox] = []

    async def send(message: Outgoing) -> Receipt:
        holder[0].settle(message.key, "sent")  # confirmed before the outbox recorded the task
        return Receipt("msg1")

    engine, clock, outbox = setup(tmp_path, send)
    holder.append(outbox)
    await clock.advance(timedelta(seconds=1))
    assert status(engine)[0] == "sent"


async def test_a_plain_send_is_still_sent_at_once(tmp_path):
    async def send(message: Outgoing) -> None:
        return None

    engine, clock, _ = setup(tmp_path, send)
    await clock.advance(timedelta(seconds=1))
    assert status(engine)[0] == "sent"


async def test_the_sop_report_tells_confirmed_cancelled_and_waiting_apart(tmp_path, caplog):
    import logging
    import textwrap

    from bot.testing import BotHarness

    (tmp_path / "sop").mkdir()
    (tmp_path / "qunbot.toml").write_text('[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    (tmp_path / "sop" / "d.yaml").write_text(textwrap.dedent("""\
        targets: {topics: ["会员*"]}
        grace: 1h
        steps: [{id: m, at: "08:00", text: 早安}]
    """), encoding="utf-8")
    caplog.set_level(logging.INFO, "qunbot.sop")
    async with BotHarness(tmp_path, plugins=[], start="2026-11-23T07:00:00+08:00",
                          pacing={"min_interval": 0, "jitter": 0, "room_interval": 0}) as bot:
        keys: list[str] = []

        async def as_task(message: Outgoing) -> Receipt:
            keys.append(message.key)
            return Receipt(f"msg{len(keys)}")

        bot.sim.adapter.send = as_task  # every post waits for an owner, as on WeCom
        bot.runtime._outboxes[bot.sim.account]._send = as_task
        for n in range(3):
            bot.room(f"g{n}", f"会员{n}群", members={"u1": "Alice"})
        await bot.advance("1h30m")  # 08:30: every post is a task
        outbox = bot.runtime.outbox(bot.sim.account)
        outbox.settle(keys[0], "sent")
        outbox.settle(keys[1], "cancelled", "not confirmed")
        await bot.advance("1h")
    assert "SOP d.m (11-23 08:00): 1 of 3 room(s) got it" in caplog.text
    assert "1 cancelled (not confirmed in time); 1 still waiting for confirmation\n" in caplog.text
    assert "failed or not sent" not in caplog.text
