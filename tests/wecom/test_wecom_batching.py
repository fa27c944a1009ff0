"""One group-message task per owner per post: the outbox hands rooms over one by one, the adapter makes one
`add_msg_template` per owner (split at 2,000 groups), and each group's outbox row still settles on its own.

The real outbox and the real adapter on a virtual clock, against the WeCom mock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, SQLModel, select

from bot._clock import VirtualClock
from bot._config import PacingSettings, WecomSettings
from bot._db import make_engine
from bot._events import Outgoing, RoomSnapshot
from bot._models import OutboxMessage
from bot._outbox import Outbox
from bot.adapters._base import Capabilities, Receipt
from bot.adapters._profiles import PROFILES
from bot.adapters.wecom import MsgCrypt, WecomAdapter, WecomClient, WecomTask
from bot.adapters.wecom._report import post_counts

TZ = ZoneInfo("Asia/Shanghai")
KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
START = datetime(2026, 12, 1, 8, 0, tzinfo=TZ)
OWNER_A = [f"wrA{i}" for i in range(5)]
OWNER_B = ["wrB0", "wrB1"]


class Account:
    """What `qunbot run` builds for one WeCom account: the adapter bound to the outbox's `settle`."""

    def __init__(self, wecom, engine, clock, tmp_path, pacing: PacingSettings | None = None) -> None:
        self.client = WecomClient(wecom.mock.corp_id, wecom.mock.secret, base_url=wecom.url)
        self.adapter = WecomAdapter("corp", clock, client=self.client, crypt=MsgCrypt("t", KEY, wecom.mock.corp_id),
                                    settings=WecomSettings(), project=tmp_path)
        self.outbox = Outbox("corp", engine, clock, pacing or PacingSettings(), self.adapter.send,
                             capabilities=lambda: self.adapter.capabilities)
        self.adapter.bind(engine, self.outbox.settle)

    async def start(self) -> None:
        await self.adapter.sync_rooms()
        await self.outbox.reconcile(self.adapter.was_sent)
        self.outbox.start()

    def stop(self) -> None:
        self.outbox.stop()


@pytest.fixture
def world(wecom, tmp_path):
    for i, room in enumerate(OWNER_A):
        wecom.mock.add_group(room, f"A 的 {i} 群", "owner_a")
    for i, room in enumerate(OWNER_B):
        wecom.mock.add_group(room, f"B 的 {i} 群", "owner_b")
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    SQLModel.metadata.create_all(engine)
    return wecom, engine, VirtualClock(START)


def enqueue(account: Account, rooms, *, step="早安", grace=timedelta(hours=2), text="早安") -> None:
    now = account.adapter.clock.now()
    with Session(account.outbox._engine) as session:
        for room in rooms:
            account.outbox.enqueue(session, key=f"sop:daily:{step}:{room}:2026-12-01", text=text, room_id=room,
                                   source=f"sop:daily:{step}", not_before=now, expires_at=now + grace)
        session.commit()
    account.outbox.wake()


def statuses(engine) -> dict[str, str]:
    with Session(engine) as session:
        return {row.room_id: row.status for row in session.exec(select(OutboxMessage)).all()}


def tasks_of(mock, owner: str):
    return [t for t in mock.tasks.values() if t.sender == owner]


async def test_five_groups_of_one_owner_and_two_of_another_are_two_tasks_settled_per_group(world, tmp_path):
    wecom, engine, clock = world
    mock = wecom.mock
    account = Account(wecom, engine, clock, tmp_path)
    await account.start()
    enqueue(account, [*OWNER_A, *OWNER_B])
    await clock.advance(timedelta(seconds=1))
    assert set(statuses(engine).values()) == {"awaiting_confirmation"}  # handed over, quota counted
    assert mock.tasks == {}  # the window is not over: more rooms of the post may come
    await clock.advance(account.adapter.tasks.window)
    await account.adapter.tasks.poll()
    [task_a], [task_b] = tasks_of(mock, "owner_a"), tasks_of(mock, "owner_b")
    assert sorted(task_a.chat_ids) == OWNER_A and sorted(task_b.chat_ids) == OWNER_B
    assert len(mock.called("externalcontact/add_msg_template")) == 2

    mock.confirm(task_a.msgid, except_for={"wrA3": 3})  # owner A confirms; one of A's groups cannot get it
    await clock.advance(timedelta(minutes=10))
    await account.adapter.tasks.poll()
    assert statuses(engine) == {**dict.fromkeys(OWNER_A, "sent"), "wrA3": "failed",
                                **dict.fromkeys(OWNER_B, "awaiting_confirmation")}
    assert not task_b.cancelled and task_b.reminders == 0

    await clock.advance(timedelta(hours=1))
    await account.adapter.tasks.poll()
    assert task_b.reminders == 1  # one reminder per task, not per group
    await clock.advance(timedelta(hours=1))  # past the grace: owner B never confirmed in time
    await account.adapter.tasks.poll()
    assert task_b.cancelled
    mock.confirm(task_b.msgid)  # confirmed late: nothing changes any more
    await account.adapter.tasks.poll()
    assert statuses(engine) == {**dict.fromkeys(OWNER_A, "sent"), "wrA3": "failed",
                                **dict.fromkeys(OWNER_B, "cancelled")}
    with Session(engine) as session:
        error = session.exec(select(OutboxMessage.last_error).where(OutboxMessage.room_id == "wrA3")).one()
    assert "已经收到过" in error

    [counts] = post_counts(engine)
    assert (counts.post, counts.tasks, counts.groups, counts.confirmed, counts.sent, counts.failed,
            counts.cancelled, counts.waiting) == ("sop:daily:早安:2026-12-01", 2, 7, 5, 4, 1, 2, 0)
    assert "2 个群发任务，7 个群：已确认 5，送达 4，失败 1，未确认取消 2，等群主确认 0" in counts.line()
    with Session(engine) as session:
        done = {t.sender: (t.status, t.groups, t.confirmed, t.sent, t.failed, t.cancelled)
                for t in session.exec(select(WecomTask)).all()}
    assert done == {"owner_a": ("done", 5, 5, 4, 1, 0), "owner_b": ("done", 2, 0, 0, 0, 2)}
    account.stop()
    await account.client.aclose()


async def test_different_content_or_another_step_is_another_task(world, tmp_path):
    wecom, engine, clock = world
    account = Account(wecom, engine, clock, tmp_path)
    await account.start()
    enqueue(account, OWNER_A[:3])
    enqueue(account, OWNER_A[3:], text="早安（第二版）")  # a variant: other content, so another task
    enqueue(account, OWNER_A[:2], step="晚安", text="晚安")
    await clock.advance(timedelta(seconds=1) + account.adapter.tasks.window)
    await account.adapter.tasks.poll()
    made = sorted((t.text, sorted(t.chat_ids)) for t in wecom.mock.tasks.values())
    assert made == [("早安", OWNER_A[:3]), ("早安（第二版）", OWNER_A[3:]), ("晚安", OWNER_A[:2])]
    assert len(post_counts(engine)) == 2  # two posts: 早安 (two tasks) and 晚安
    account.stop()
    await account.client.aclose()


async def test_a_restart_makes_the_task_of_rooms_handed_over_and_never_sends_a_room_twice(world, tmp_path):
    wecom, engine, clock = world
    mock = wecom.mock
    first = Account(wecom, engine, clock, tmp_path)
    await first.start()
    enqueue(first, [*OWNER_A, *OWNER_B])
    await clock.advance(timedelta(seconds=1))  # every room handed over, no task made yet ...
    with Session(engine) as session:  # ... and one row caught mid-send by the crash
        row = session.exec(select(OutboxMessage).where(OutboxMessage.room_id == "wrB1")).one()
        row.status = "sending"
        session.add(row)
        session.commit()
    first.stop()  # the process dies
    await first.client.aclose()
    assert mock.tasks == {}

    await clock.advance(timedelta(minutes=5))
    second = Account(wecom, engine, clock, tmp_path)
    await second.start()
    await clock.advance(timedelta(seconds=1))
    assert statuses(engine)["wrB1"] == "uncertain"  # was_sent: the adapter took it, its task settles it
    await second.adapter.tasks.poll()  # the first round after a start makes what was queued
    [task_a], [task_b] = tasks_of(mock, "owner_a"), tasks_of(mock, "owner_b")
    assert sorted(task_a.chat_ids) == OWNER_A and sorted(task_b.chat_ids) == OWNER_B

    third = Account(wecom, engine, clock, tmp_path)  # another restart, now with the tasks made
    second.stop()
    await third.start()
    mock.confirm(task_a.msgid)
    mock.confirm(task_b.msgid)
    await clock.advance(timedelta(minutes=1))
    await third.adapter.tasks.poll()
    assert set(statuses(engine).values()) == {"sent"}
    assert len(mock.called("externalcontact/add_msg_template")) == 2  # nothing sent twice
    await second.client.aclose()
    await third.client.aclose()


async def test_a_room_handed_over_after_the_grace_ran_out_is_skipped_not_sent(world, tmp_path):
    wecom, engine, clock = world
    account = Account(wecom, engine, clock, tmp_path)
    await account.start()
    enqueue(account, OWNER_B, grace=timedelta(minutes=10))
    await clock.advance(timedelta(seconds=1))
    wecom.mock.rate_limited = 10**6  # WeCom refuses every call until the grace has run out
    account.client._retries = 0
    for _ in range(3):
        await clock.advance(timedelta(minutes=5))
        await account.adapter.tasks.poll()
        if wecom.mock.rate_limited:  # refused: tried again at the regular poll, not in a tight loop
            assert account.adapter.tasks.next_due() is None
    assert len(wecom.mock.called("externalcontact/add_msg_template")) == 1  # later rounds were past the grace
    assert wecom.mock.tasks == {}
    assert set(statuses(engine).values()) == {"skipped"}
    with Session(engine) as session:
        assert all("宽限" in row.last_error and "45009" in row.last_error
                   for row in session.exec(select(OutboxMessage)).all())
    account.stop()
    await account.client.aclose()


async def test_a_fan_out_to_2500_groups_of_one_owner_is_two_tasks(wecom, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    SQLModel.metadata.create_all(engine)
    clock = VirtualClock(START)
    client = WecomClient(wecom.mock.corp_id, wecom.mock.secret, base_url=wecom.url)
    adapter = WecomAdapter("corp", clock, client=client, crypt=MsgCrypt("t", KEY, wecom.mock.corp_id),
                           settings=WecomSettings(), project=tmp_path)
    settled: list[tuple[str, str]] = []
    adapter.bind(engine, lambda key, status, detail: settled.append((key, status)))
    rooms = [f"wrBig{i:04}" for i in range(2500)]
    for room in rooms:
        wecom.mock.add_group(room, room, "owner_a")
        adapter._rooms[room] = RoomSnapshot(room, room, (), (), "owner_a")  # as sync_rooms leaves them
    for room in rooms:
        receipt = await adapter.send(Outgoing(account="corp", text="双十二", room_id=room,
                                              key=f"sop:big:开售:{room}:1", expires_at=START + timedelta(hours=3)))
        assert isinstance(receipt, Receipt)
    await adapter.tasks.flush()  # a full task's worth is made at once, the rest waits for the window
    assert [len(t.chat_ids) for t in wecom.mock.tasks.values()] == [2000]
    await clock.advance(adapter.tasks.window)
    await adapter.tasks.flush()
    made = list(wecom.mock.tasks.values())
    assert [len(t.chat_ids) for t in made] == [2000, 500]
    assert sorted(c for t in made for c in t.chat_ids) == rooms
    for task in made:
        wecom.mock.confirm(task.msgid)
    await adapter.tasks.poll()
    assert len(settled) == 2500 and {status for _, status in settled} == {"sent"}
    [counts] = post_counts(engine)
    assert (counts.tasks, counts.groups, counts.sent) == (2, 2500, 2500)
    await client.aclose()


async def test_an_account_whose_posts_are_tasks_is_not_paced_like_a_chat(world, tmp_path):
    """500 groups: default chat pacing (2 s + jitter per send, at most 400 an hour) would take over an hour."""
    _, engine, clock = world
    sent: list[datetime] = []

    async def send(message: Outgoing) -> Receipt:
        sent.append(clock.now())
        return Receipt("t")

    for caps, expect_all in ((PROFILES["wecom"], True), (Capabilities(), False)):
        sent.clear()
        outbox = Outbox(f"acct{expect_all}", engine, clock, PacingSettings(), send, capabilities=caps)
        with Session(engine) as session:
            for i in range(500):
                outbox.enqueue(session, key=f"k{i}", text="早安", room_id=f"wr{i}", not_before=clock.now())
            session.commit()
        outbox.start()
        began = clock.now()
        await clock.advance(timedelta(minutes=1))
        outbox.stop()
        if expect_all:
            assert len(sent) == 500 and max(sent) == began  # no gaps, no hourly cap
        else:
            assert 0 < len(sent) <= 30  # the control: a chat account gets one send per 2 s and more
