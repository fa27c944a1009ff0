"""A clean stop lets the send WeChat is already doing finish: cutting it off would re-send it after restart."""

from __future__ import annotations

import asyncio

from sqlmodel import Session, select

from bot._clock import RealClock
from bot._config import load_config
from bot._db import make_engine
from bot._events import MemberRef, Outgoing, RoomMessage
from bot._models import OutboxMessage
from bot._runtime import Runtime
from bot.adapters._base import SendError
from bot.adapters.simulated import SimulatedAdapter


class SlowWeChat(SimulatedAdapter):
    """A send takes until the test releases it; disconnecting cuts an unfinished send off, as a socket would."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()
        self.cut = asyncio.Event()

    async def send(self, message: Outgoing) -> None:
        self.in_flight.set()
        released = asyncio.ensure_future(self.release.wait())
        cut = asyncio.ensure_future(self.cut.wait())
        await asyncio.wait({released, cut}, return_when=asyncio.FIRST_COMPLETED)
        released.cancel(), cut.cancel()
        if not self.release.is_set():
            raise SendError("connection closed while sending")
        await super().send(message)

    async def stop(self) -> None:
        self.cut.set()
        await super().stop()


async def test_stop_waits_for_the_send_in_flight_and_records_it_sent(repo, tmp_path):
    config = load_config(repo)
    clock = RealClock(config.bot.tz)
    adapter = SlowWeChat("default", clock)
    adapter.add_room("g1", "群", members=[MemberRef("u1", "Alice")])
    url = f"sqlite:///{tmp_path}/bot.db"
    runtime = Runtime(repo, config, clock=clock, adapters={"default": adapter}, db_url=url)
    await runtime.start()
    await runtime.dispatch(RoomMessage(account="default", id="e1", time=clock.now(), room_id="g1",
                                       sender=MemberRef("u1", "Alice"), text="ping"))
    await asyncio.wait_for(adapter.in_flight.wait(), 10)
    stopping = asyncio.ensure_future(runtime.stop())
    done, _ = await asyncio.wait({stopping}, timeout=0.2)
    assert not done and not adapter.cut.is_set()        # stop waits; the connection is still up
    adapter.release.set()
    await asyncio.wait_for(stopping, 10)
    await clock.aclose()
    engine = make_engine(url)
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage)).all()
    engine.dispose()
    assert [(r.text, r.status, r.attempts) for r in rows] == [("pong", "sent", 1)]
    assert [m.text for m in adapter.sent] == ["pong"]
