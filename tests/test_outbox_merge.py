"""Reply coalescing: replies of one kind merge in the outbox while queued, exactly once across a restart."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from pathlib import Path

from sqlmodel import select

from bot._models import OutboxMessage
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[1]
PACING = {"min_interval": 2.0, "jitter": 0.0, "room_interval": 3.0}
MEMBERS = {f"u{n}": f"成员{n}" for n in range(1, 46)}


def harness(**kwargs) -> BotHarness:
    return BotHarness(REPO, plugins=["points"], pacing=PACING, **kwargs)


def acknowledged(messages) -> Counter[str]:
    """How many times each member was @-mentioned in a sign-in acknowledgement."""
    return Counter(m for message in messages if "签到成功" in message.text for m in message.mentions)


async def test_signins_queued_together_go_out_as_one_message_in_the_merged_template():
    async with harness() as bot:
        bot.room("g1", members=MEMBERS)
        for n in range(1, 6):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        await bot.drain()
        sent = bot.pop()
    assert len(sent) == 1
    assert sent[0].text == "签到成功 ✅ @成员1 +10 @成员2 +10 @成员3 +10 @成员4 +10 @成员5 +10"
    assert list(sent[0].mentions) == ["u1", "u2", "u3", "u4", "u5"]


async def test_a_queued_merged_message_already_lists_everyone_it_will_mention():
    """Its text is rendered when it goes out; who it acknowledges is on the row from each merge on."""
    async with harness() as bot:
        bot.room("g1", members=MEMBERS)
        for n in range(1, 4):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        with bot.db() as session:
            queued = session.exec(select(OutboxMessage).where(OutboxMessage.status == "pending")).all()
        assert [(row.mentions, len(row.parts)) for row in queued] == [(["u1", "u2", "u3"], 3)]
        await bot.drain()
        assert list(bot.pop()[0].mentions) == ["u1", "u2", "u3"]


async def test_a_lone_signin_keeps_its_own_template():
    async with harness() as bot:
        bot.room("g1", members=MEMBERS)
        await bot.say("g1", "u1", "签到")
        assert bot.pop_text() == "@成员1 签到成功 ✅ +10 积分\n当前积分：10。明天继续签到可得 12 积分～"


async def test_a_merged_message_holds_at_most_max_mentions_members():
    async with harness(settings={"pacing": {"max_mentions": 20}}) as bot:
        bot.room("g1", members=MEMBERS)
        for n in range(1, 46):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        await bot.drain()
        sent = bot.pop()
    assert [len(m.mentions) for m in sent] == [20, 20, 5]
    assert acknowledged(sent) == Counter({f"u{n}": 1 for n in range(1, 46)})


async def test_merging_goes_on_across_a_crash_and_restart_and_acknowledges_everyone_once():
    async with harness() as bot:
        bot.room("g1", members=MEMBERS)
        for n in range(1, 4):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        assert bot.pop() == []  # still held for others to join
        await bot.restart(crash=True)
        for n in range(4, 6):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        await bot.say("g1", "u2", "签到", drain=False)  # again after the restart: "already signed in"
        await bot.drain()
        sent = bot.pop()
        with bot.db() as db:
            rows = db.exec(select(OutboxMessage).where(OutboxMessage.source == "points")).all()
    merged = [m for m in sent if "签到成功" in m.text]
    assert len(merged) == 1
    assert acknowledged(sent) == Counter({"u1": 1, "u2": 1, "u3": 1, "u4": 1, "u5": 1})
    assert "今天已经签过到" in " ".join(m.text for m in sent)
    assert sorted(len(r.parts) for r in rows if r.merge_key) == [5]
    assert all(r.status == "sent" for r in rows)


async def test_a_message_already_handed_to_wechat_is_never_altered_a_new_signin_starts_another():
    async with harness() as bot:
        bot.room("g1", members=MEMBERS)
        outbox = bot.runtime.outbox("default")
        deliver = outbox._send
        handed, release = asyncio.Event(), asyncio.Event()
        texts_handed: list[str] = []

        async def slow_wechat(message):
            texts_handed.append(message.text)
            handed.set()
            await release.wait()
            await deliver(message)

        outbox._send = slow_wechat
        await bot.say("g1", "u1", "签到", drain=False)
        await bot.say("g1", "u2", "签到", drain=False)
        sending = asyncio.create_task(bot.drain())
        await handed.wait()  # the merged message of u1 and u2 is with WeChat now
        await bot.say("g1", "u3", "签到", drain=False)
        release.set()
        await sending
        await bot.drain()
        sent = bot.pop()
    assert [list(m.mentions) for m in sent] == [["u1", "u2"], ["u3"]]
    assert sent[0].text == texts_handed[0] == "签到成功 ✅ @成员1 +10 @成员2 +10"
    assert sent[1].text.startswith("@成员3 签到成功")


async def test_a_message_queued_behind_ends_the_wait_so_the_room_keeps_its_order():
    async with harness() as bot:
        bot.room("g1", members=MEMBERS)
        await bot.say("g1", "u1", "签到", drain=False)
        await bot.say("g1", "u2", "积分", drain=False)  # a different reply after the sign-in
        await bot.drain()
        sent = bot.pop()
    assert [m.mentions[0] for m in sent] == ["u1", "u2"]
    assert "签到成功" in sent[0].text and "签到成功" not in sent[1].text


async def test_a_broken_merged_template_sends_each_reply_on_its_own(tmp_path):
    shutil.copytree(REPO / "scripts_templates" / "points", tmp_path / "scripts_templates" / "points")
    (tmp_path / "scripts_templates" / "points" / "signin_merged.j2").write_text("签到 {{ nope.x }}", encoding="utf-8")
    settings = {"templates_dir": "scripts_templates", "plugins": {"dirs": [str(REPO / "plugins")]}}
    async with BotHarness(tmp_path, plugins=["points"], pacing=PACING, settings=settings) as bot:
        bot.room("g1", members=MEMBERS)
        for n in range(1, 4):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        await bot.drain()
        sent = bot.pop()
    assert [list(m.mentions) for m in sent] == [["u1"], ["u2"], ["u3"]]
    assert all("签到成功" in m.text for m in sent)


async def test_a_merged_template_broken_while_replies_wait_still_acknowledges_everyone_once(tmp_path):
    """The merged form is rendered when the message is sent: an edit that broke it meanwhile must not lose it."""
    shutil.copytree(REPO / "scripts_templates" / "points", tmp_path / "scripts_templates" / "points")
    settings = {"templates_dir": "scripts_templates", "plugins": {"dirs": [str(REPO / "plugins")]}}
    async with BotHarness(tmp_path, plugins=["points"], pacing=PACING, settings=settings) as bot:
        bot.room("g1", members=MEMBERS)
        for n in range(1, 4):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        (tmp_path / "scripts_templates" / "points" / "signin_merged.j2").write_text("签到 {{ nope.x }}",
                                                                                   encoding="utf-8")
        await bot.drain()
        sent = bot.pop()
    assert len(sent) == 1
    assert list(sent[0].mentions) == ["u1", "u2", "u3"]
    assert sent[0].text.startswith("@成员2 @成员3 @成员1 签到成功")


def test_the_burst_example_acknowledges_100_signins_in_at_most_6_messages():
    from click.testing import CliRunner

    from bot.cli import main

    result = CliRunner().invoke(main, ["--project", str(REPO), "simulate", str(REPO / "examples/burst_signin.yaml")])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) <= 6
    mentioned = Counter(m for line in lines for m in line["mentions"])
    assert mentioned == Counter({f"m{n:03d}": 1 for n in range(100)})
    assert all(line["text"].startswith("签到成功 ✅ @") for line in lines)


def test_chat_shows_a_crowd_signing_in_as_merged_messages():
    from click.testing import CliRunner

    from bot.cli import main

    result = CliRunner().invoke(main, ["--project", str(REPO), "chat"], input="/crowd 25 签到\n/quit\n")
    assert result.exit_code == 0, result.output
    acks = [line for line in result.output.splitlines() if "签到成功" in line]
    assert len(acks) == 2
    assert "@成员1 +10" in acks[0] and "@成员25 +10" in acks[1]


async def test_the_welcome_greeting_splits_at_the_same_max_mentions_as_merged_replies():
    settings = {"pacing": {"max_mentions": 8}}
    newcomers = {f"n{i:02d}": f"新人{i:02d}" for i in range(19)}
    async with BotHarness(REPO, plugins=["welcome"], pacing=PACING, settings=settings) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.join("g1", newcomers, inviter="u1")
        await bot.settle()
        sent = bot.pop()
    assert [len(m.mentions) for m in sent] == [8, 8, 3]


def _old_outbox_database(url: str) -> None:
    """A database as the first release left it: core at version 1, core_outbox without the new columns."""
    from sqlalchemy import text

    from bot._db import make_engine
    from bot._migrations import upgrade

    engine = make_engine(url)
    upgrade(engine, {"core": []})
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_outbox_merge"))
        for column in ("priority", "merge_key", "parts", "merge_template"):
            conn.execute(text(f"ALTER TABLE core_outbox DROP COLUMN {column}"))
        conn.execute(text("INSERT INTO core_outbox (account, key, room_id, text, mentions, source, status, attempts, "
                          "created_at, not_before) VALUES ('default', 'old', 'g1', '旧消息', '[]', 'demo', 'pending', "
                          "0, '2026-11-23 00:00:00', '2026-11-23 00:00:00')"))
    engine.dispose()


async def test_an_older_database_gains_the_merge_columns_and_keeps_its_queue(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    _old_outbox_database(url)
    async with harness(db_url=url) as bot:
        bot.room("g1", members=MEMBERS)
        await bot.say("g1", "u1", "签到", drain=False)
        await bot.say("g1", "u2", "签到", drain=False)
        await bot.drain()
        sent = bot.pop()
    assert sent[0].text == "旧消息"
    assert [list(m.mentions) for m in sent[1:]] == [["u1", "u2"]]


async def test_merging_on_postgresql_across_a_restart(postgres_url):
    async with harness(db_url=postgres_url) as bot:
        bot.room("g1", members=MEMBERS)
        for n in range(1, 16):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        await bot.restart(crash=True)
        for n in range(16, 26):
            await bot.say("g1", f"u{n}", "签到", drain=False)
        await bot.drain()
        sent = bot.pop()
    assert [len(m.mentions) for m in sent] == [20, 5]
    assert acknowledged(sent) == Counter({f"u{n}": 1 for n in range(1, 26)})


async def test_a_database_created_at_this_shape_but_recorded_at_version_1_upgrades_cleanly(tmp_path):
    from bot._db import make_engine
    from bot._migrations import upgrade

    url = f"sqlite:///{tmp_path}/fresh.db"
    engine = make_engine(url)
    upgrade(engine, {"core": []})  # tables at today's shape, core recorded at version 1 (as tools and tests do)
    engine.dispose()
    async with harness(db_url=url) as bot:
        bot.room("g1", members=MEMBERS)
        await bot.say("g1", "u1", "签到")
        assert "签到成功" in bot.pop_text()
