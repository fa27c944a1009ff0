"""The WeCom adapter's parts on a virtual clock against the mock: tasks, reminders, media, callbacks → events."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, SQLModel, create_engine, select

from bot._clock import VirtualClock
from bot._config import WecomSettings
from bot._events import (
    MembersJoined,
    MembersLeft,
    Outgoing,
    RoomCreated,
    RoomDismissed,
    RoomOwnerChanged,
    RoomTopicChanged,
)
from bot.adapters._base import Receipt, SendError
from bot.adapters.wecom import WELCOME_ACTION, MsgCrypt, WecomAdapter, WecomClient, WecomTask, WecomWelcome

TZ = ZoneInfo("Asia/Shanghai")
KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


@pytest.fixture
async def adapter(wecom, tmp_path):
    clock = VirtualClock(datetime(2026, 12, 1, 8, 0, tzinfo=TZ))
    client = WecomClient(wecom.mock.corp_id, wecom.mock.secret, base_url=wecom.url)
    adapter = WecomAdapter("corp", clock, client=client, crypt=MsgCrypt("t", KEY, wecom.mock.corp_id),
                           settings=WecomSettings(remind_every=3600), project=tmp_path)
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    SQLModel.metadata.create_all(engine)
    settled: list[tuple[str, str, str | None]] = []
    adapter.bind(engine, lambda key, status, detail: settled.append((key, status, detail)))
    await adapter.sync_rooms()
    adapter.settled, adapter.engine = settled, engine  # for the tests
    yield adapter
    await client.aclose()


def post(key="sop:f:早安:wrGroupA:2026-12-01", room="wrGroupA", *, text="早安", file=None, expires=None):
    return Outgoing(account="corp", text=text, room_id=room, key=key, file=file, expires_at=expires)


async def task_of(adapter, wecom, *messages):
    """Hand the rooms over, let the batch window pass, make the task: the mock's task for the first room."""
    for message in messages or (post(),):
        assert isinstance(await adapter.send(message), Receipt)
    await adapter.clock.advance(adapter.tasks.window)
    await adapter.tasks.flush()
    room = (messages or (post(),))[0].room_id
    return next(t for t in reversed(list(wecom.mock.tasks.values())) if room in t.chat_ids)


async def test_a_post_is_a_group_task_from_the_owner(adapter, wecom):
    await adapter.send(post())
    assert wecom.mock.called("externalcontact/add_msg_template") == []  # waits for the rest of the fan-out
    await adapter.tasks.flush()
    assert wecom.mock.called("externalcontact/add_msg_template") == []
    await adapter.clock.advance(adapter.tasks.window)
    await adapter.tasks.flush()
    body = wecom.mock.called("externalcontact/add_msg_template")[-1]
    assert body == {"chat_type": "group", "sender": "owner_a", "chat_id_list": ["wrGroupA"],
                    "text": {"content": "早安"}}
    with Session(adapter.engine) as session:
        task = session.exec(select(WecomTask)).one()
    assert (task.post, task.status, task.groups) == ("sop:f:早安:2026-12-01", "waiting", 1)


async def test_the_owner_is_reminded_at_most_three_times_in_24_hours(adapter, wecom):
    clock = adapter.clock
    task = await task_of(adapter, wecom, post(expires=clock.now() + timedelta(days=3)))
    for _ in range(30):  # every 20 minutes for 10 hours
        await clock.advance(timedelta(minutes=20))
        await adapter.tasks.poll()
    assert task.reminders == 3
    await clock.advance(timedelta(hours=15))  # the first reminder is now over 24 h ago
    await adapter.tasks.poll()
    assert task.reminders == 4
    assert adapter.settled == []


async def test_unconfirmed_at_the_deadline_the_task_is_cancelled_not_sent_late(adapter, wecom):
    clock = adapter.clock
    task = await task_of(adapter, wecom, post(expires=clock.now() + timedelta(minutes=30)))
    await clock.advance(timedelta(minutes=29))
    await adapter.tasks.poll()
    assert not task.cancelled
    await clock.advance(timedelta(minutes=1))
    await adapter.tasks.poll()
    assert task.cancelled
    assert adapter.settled[0][:2] == ("sop:f:早安:wrGroupA:2026-12-01", "cancelled")
    wecom.mock.confirm(task.msgid)  # the owner taps it after all: nothing changes any more
    await adapter.tasks.poll()
    assert len(adapter.settled) == 1


async def test_a_confirmed_task_that_failed_in_its_group_is_failed(adapter, wecom):
    task = await task_of(adapter, wecom)
    wecom.mock.confirm(task.msgid, status=3)  # the group already got a group message today
    await adapter.tasks.poll()
    assert adapter.settled[0][1] == "failed" and "已经收到过" in adapter.settled[0][2]
    with Session(adapter.engine) as session:
        task = session.exec(select(WecomTask)).one()
    assert (task.status, task.confirmed, task.sent, task.failed) == ("done", 1, 0, 1)


async def test_an_image_is_uploaded_once_and_again_when_its_media_id_expires(adapter, wecom, tmp_path):
    (tmp_path / "poster.png").write_bytes(b"\x89PNG fake")
    await task_of(adapter, wecom, post(file="poster.png", key="a"))
    await task_of(adapter, wecom, post(file="poster.png", key="b"))
    assert len(wecom.mock.called("media/upload")) == 1
    await adapter.clock.advance(timedelta(days=3))
    await task_of(adapter, wecom, post(file="poster.png", key="c"))
    assert len(wecom.mock.called("media/upload")) == 2
    bodies = wecom.mock.called("externalcontact/add_msg_template")
    media = [b["attachments"][0]["image"]["media_id"] for b in bodies]
    assert media[0] == media[1] != media[2]


async def test_a_url_is_a_link_and_other_files_are_refused(adapter, wecom, tmp_path):
    await task_of(adapter, wecom, post(text="双十二攻略\n点开看", file="https://example.invalid/guide"))
    link = wecom.mock.called("externalcontact/add_msg_template")[-1]["attachments"][0]
    assert link == {"msgtype": "link", "link": {"title": "双十二攻略", "url": "https://example.invalid/guide"}}
    (tmp_path / "rules.pdf").write_bytes(b"%PDF")
    with pytest.raises(SendError, match="图片或链接"):
        await adapter.send(post(file="rules.pdf", key="pdf"))


async def test_what_wecom_cannot_do_is_refused_plainly(adapter):
    with pytest.raises(SendError, match="私聊"):
        await adapter.send(Outgoing(account="corp", text="hi", to="wmSomeone"))
    with pytest.raises(SendError, match="remove_member"):
        await adapter.send(Outgoing(account="corp", text="", room_id="wrGroupA", action="remove_member",
                                    member_id="x"))


async def test_the_welcome_greeting_becomes_the_template_and_is_edited_when_it_changes(adapter, wecom):
    await adapter.send(Outgoing(account="corp", text="欢迎 %NICKNAME% 入群", room_id="wrGroupA",
                                action=WELCOME_ACTION))
    await adapter.send(Outgoing(account="corp", text="欢迎 %NICKNAME% 入群", room_id="wrGroupA",
                                action=WELCOME_ACTION))
    assert len(wecom.mock.called("externalcontact/group_welcome_template/add")) == 1
    await adapter.send(Outgoing(account="corp", text="欢迎 %NICKNAME%，先看群公告", room_id="wrGroupA",
                                action=WELCOME_ACTION))
    assert len(wecom.mock.called("externalcontact/group_welcome_template/edit")) == 1
    assert list(wecom.mock.welcome.values()) == ["欢迎 %NICKNAME%，先看群公告"]
    with Session(adapter.engine) as session:
        assert session.get(WecomWelcome, "corp").text == "欢迎 %NICKNAME%，先看群公告"


def change(chat_id: str, change_type: str, detail: str = "", members: tuple[str, ...] = ()) -> str:
    items = "".join(f"<Item><![CDATA[{m}]]></Item>" for m in members)
    return (f"<xml><ToUserName><![CDATA[c]]></ToUserName><CreateTime>1700000000</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_chat]]></Event>"
            f"<ChatId><![CDATA[{chat_id}]]></ChatId><ChangeType><![CDATA[{change_type}]]></ChangeType>"
            f"<UpdateDetail><![CDATA[{detail}]]></UpdateDetail><MemChangeList>{items}</MemChangeList></xml>")


async def test_change_external_chat_becomes_typed_events(adapter, wecom):
    wecom.mock.add_group("wrNew", "新群", "owner_a")
    wecom.mock.add_member("wrNew", "wm0", "创始成员", invitor="owner_a")
    created, founders = await adapter.translate(change("wrNew", "create"))
    assert isinstance(created, RoomCreated) and (created.topic, created.owner_id) == ("新群", "owner_a")
    assert isinstance(founders, MembersJoined) and [m.id for m in founders.members] == ["wm0"]
    assert founders.inviter_id == "owner_a"

    wecom.mock.add_member("wrNew", "wm1", "甲", invitor="owner_a")
    wecom.mock.add_member("wrNew", "wm2", "乙", invitor="wm1")
    joined = await adapter.translate(change("wrNew", "update", "add_member", ("wm1", "wm2")))
    assert {(e.inviter_id, tuple(m.name for m in e.members)) for e in joined if isinstance(e, MembersJoined)} == \
        {("owner_a", ("甲",)), ("wm1", ("乙",))}

    [left] = await adapter.translate(change("wrNew", "update", "del_member", ("wm2",)))
    assert isinstance(left, MembersLeft) and left.member_ids == ("wm2",)

    wecom.mock.groups["wrNew"]["name"] = "新群（改名）"
    [renamed] = await adapter.translate(change("wrNew", "update", "change_name"))
    assert isinstance(renamed, RoomTopicChanged) and (renamed.old_topic, renamed.topic) == ("新群", "新群（改名）")

    wecom.mock.groups["wrNew"]["owner"] = "owner_b"
    [owner] = await adapter.translate(change("wrNew", "update", "change_owner"))
    assert isinstance(owner, RoomOwnerChanged) and (owner.old_owner_id, owner.owner_id) == ("owner_a", "owner_b")

    [gone] = await adapter.translate(change("wrNew", "dismiss"))
    assert isinstance(gone, RoomDismissed) and "wrNew" not in {r.id for r in await adapter.rooms()}


async def test_older_comma_separated_member_lists_and_unknown_events(adapter, wecom):
    wecom.mock.add_member("wrGroupA", "wm1", "甲", invitor="owner_a")
    wecom.mock.add_member("wrGroupA", "wm2", "乙", invitor="owner_a")
    xml = change("wrGroupA", "update", "add_member").replace("<MemChangeList></MemChangeList>",
                                                             "<MemChangeList><![CDATA[wm1,wm2]]></MemChangeList>")
    [joined] = await adapter.translate(xml)
    assert [m.id for m in joined.members] == ["wm1", "wm2"]
    other = "<xml><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event></xml>"
    assert await adapter.translate(other) == []
    assert await adapter.translate(change("wrGroupA", "update", "change_notice")) == []


async def test_after_a_crash_a_known_task_is_followed_and_an_unknown_one_sent_again(adapter):
    await adapter.send(post(key="made"))  # queued for its task: the task settles the row
    assert await adapter.was_sent(post(key="made")) is None  # its task settles the row
    assert await adapter.was_sent(post(key="never-made")) is False  # add_msg_template never answered


async def test_the_poller_looks_at_a_batch_window_and_a_deadline_not_a_poll_interval_later(adapter):
    interval = adapter.settings.poll_interval
    later = adapter.clock.now() + timedelta(seconds=interval)
    assert adapter._poll_wait(later) == interval
    await adapter.send(post(expires=adapter.clock.now() + timedelta(seconds=20)))
    assert adapter._poll_wait(later) == pytest.approx(adapter.tasks.window.total_seconds() + 0.05)
    await adapter.clock.advance(adapter.tasks.window)
    await adapter.tasks.flush()
    assert 18 <= adapter._poll_wait(later) <= 18.1  # the task's deadline
    await adapter.clock.advance(timedelta(seconds=30))  # a deadline past (its cancel failed): no tight loop
    assert adapter._poll_wait(later) == pytest.approx(interval - 32)
    assert adapter._poll_wait(adapter.clock.now()) == 0


def test_capabilities_are_declared_and_the_quota_follows_the_console_setting(wecom, tmp_path):
    from bot._config import AccountSettings
    from bot.adapters._profiles import PROFILES, account_capabilities

    client = WecomClient("c", "s", base_url=wecom.url)
    crypt = MsgCrypt("t", KEY, "c")
    default = WecomAdapter("a", VirtualClock(datetime(2026, 12, 1, tzinfo=TZ)), client=client, crypt=crypt,
                           settings=WecomSettings(), project=tmp_path).capabilities
    assert (default.read_room_messages, default.reply_at_will, default.posts_need_confirmation,
            default.welcome_by_template, default.remove_members, default.set_topic, default.max_rooms_per_post) == \
        (False, False, True, True, False, False, 2000)
    assert (default.room_quota.per, default.room_quota.limit) == ("month", None)
    weekly = account_capabilities(AccountSettings(id="a", adapter="wecom", room_quota={"per": "week", "limit": 1}),
                                  default)
    assert (weekly.room_quota.per, weekly.room_quota.limit) == ("week", 1)
    assert WecomAdapter.capabilities.room_quota.per == "month"  # the class default is untouched
    assert WecomAdapter.capabilities is PROFILES["wecom"]       # one declaration for check, emulate and run


async def test_tasks_on_postgresql(wecom, tmp_path, postgres_url):
    from bot._db import make_engine

    engine = make_engine(postgres_url)
    SQLModel.metadata.create_all(engine)
    clock = VirtualClock(datetime(2026, 12, 1, 8, 0, tzinfo=TZ))
    client = WecomClient(wecom.mock.corp_id, wecom.mock.secret, base_url=wecom.url)
    adapter = WecomAdapter("corp", clock, client=client, crypt=MsgCrypt("t", KEY, wecom.mock.corp_id),
                           settings=WecomSettings(), project=tmp_path)
    settled: list[tuple[str, str]] = []
    adapter.bind(engine, lambda key, status, detail: settled.append((key, status)))
    await adapter.sync_rooms()
    task = await task_of(adapter, wecom, post(expires=clock.now() + timedelta(hours=1)))
    await clock.advance(timedelta(hours=2))
    await adapter.tasks.poll()  # past its deadline: cancelled, not reminded
    assert task.cancelled and settled == [(post().key, "cancelled")]
    await client.aclose()
    engine.dispose()


async def test_a_restart_reuses_a_media_id_still_valid_and_an_edited_image_is_uploaded_again(adapter, wecom, tmp_path):
    import os

    (tmp_path / "poster.png").write_bytes(b"\x89PNG fake")
    await task_of(adapter, wecom, post(file="poster.png", key="a"))
    restarted = WecomAdapter("corp", adapter.clock, client=adapter.client, crypt=adapter.crypt,
                             settings=adapter.settings, project=tmp_path)
    restarted.bind(adapter.engine, lambda *args: None)
    await restarted.sync_rooms()
    await restarted.send(post(file="poster.png", key="b"))
    assert len(wecom.mock.called("media/upload")) == 1
    os.utime(tmp_path / "poster.png", ns=(1, 2_000_000_000_000_000_000))  # the image was replaced
    await restarted.send(post(file="poster.png", key="c"))
    assert len(wecom.mock.called("media/upload")) == 2


async def test_tasks_made_by_the_first_version_are_followed_after_the_upgrade(adapter, wecom):
    from bot.adapters.wecom._models import FIRST_VERSION_TASKS as old

    msgid, _ = await adapter.client.add_group_task("owner_a", ["wrGroupA"], "早安", [])  # one task per room
    old.create(adapter.engine)
    now = adapter.clock.now()
    with adapter.engine.begin() as connection:
        connection.execute(old.insert(), [
            {"account": "corp", "key": post().key, "post": "sop:f:早安:2026-12-01", "room_id": "wrGroupA",
             "msgid": msgid, "sender": "owner_a", "status": "waiting", "reminders": [], "created_at": now,
             "deadline": now + timedelta(hours=2)},
            {"account": "corp", "key": "done-before", "post": "p", "room_id": "wrGroupB", "msgid": "msgOld",
             "sender": "owner_b", "status": "sent", "reminders": [], "created_at": now, "deadline": now}])
    await adapter.tasks.poll()
    assert adapter.settled == [] and await adapter.was_sent(post()) is None  # followed, not sent again
    wecom.mock.confirm(msgid)
    await adapter.tasks.poll()
    assert adapter.settled == [(post().key, "sent", None)]
    await adapter.tasks.poll()  # adopted once
    with Session(adapter.engine) as session:
        assert len(session.exec(select(WecomTask)).all()) == 1
