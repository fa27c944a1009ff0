"""Group commit: events that arrive together share one transaction; each stays all-or-nothing."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from bot import Context, Plugin
from bot._group import GroupCommit
from bot._models import OutboxMessage
from bot.testing import BotHarness

GOOD = [f"u{n}" for n in range(1, 21)]


def marker() -> Plugin:
    """`记` writes the speaker's row and replies; `bad` raises after writing, `dup` hits the primary key."""
    plugin = Plugin("marker")

    @plugin.on_fullmatch("记").handle
    async def mark(ctx: Context) -> None:
        ctx.db.execute(text("INSERT INTO grouptest (member) VALUES (:m)"), {"m": ctx.member_id})
        await ctx.reply("记下了")
        if ctx.member_id == "bad":
            raise RuntimeError("this handler fails after its write")

    return plugin


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/group.db"
    return request.getfixturevalue("postgres_url")


async def burst(bot: BotHarness, members: list[str]) -> None:
    """Members say 记 at the same moment: their events arrive together."""
    await asyncio.gather(*(bot.sim.adapter.say("g1", member, "记") for member in members))


def rows(bot: BotHarness) -> Counter[str]:
    with bot.db() as db:
        return Counter(r[0] for r in db.execute(text("SELECT member FROM grouptest")))


def replies(bot: BotHarness) -> Counter[str]:
    with bot.db() as db:
        return Counter(m for r in db.exec(select(OutboxMessage).where(OutboxMessage.source == "marker"))
                       for m in r.mentions)


async def started(bot: BotHarness) -> None:
    with bot.runtime.engine.begin() as conn:
        conn.execute(text("CREATE TABLE grouptest (member VARCHAR(20) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO grouptest (member) VALUES ('dup')"))
    bot.room("g1", members={m: m for m in [*GOOD, "bad", "dup", "first"]})
    await bot.say("g1", "first", "记")  # seen once on its own: the handler finishes without waiting


async def test_one_failing_event_among_many_loses_and_doubles_nothing_in_one_commit(db_url, monkeypatch):
    commits: list[int] = []
    commit = GroupCommit.commit

    def counted(self: GroupCommit) -> None:
        commits.append(len(self.after))
        commit(self)

    monkeypatch.setattr(GroupCommit, "commit", counted)
    async with BotHarness(plugins=[marker()], db_url=db_url, raise_errors=False) as bot:  # "bad" fails on purpose
        await started(bot)
        members = [*GOOD[:10], "bad", "dup", *GOOD[10:]]
        await burst(bot, members)
        assert rows(bot) == Counter({m: 1 for m in [*GOOD, "dup", "first"]})
        assert replies(bot) == Counter({m: 1 for m in [*GOOD, "first"]})
        await bot.drain()
        sent = Counter(m for message in bot.pop() for m in message.mentions)
        failed = bot.pop_failures()
    assert sent == Counter({m: 1 for m in [*GOOD, "first"]})
    assert len(failed) == 2  # "bad" raises after its write; "dup" breaks the unique key: each alone rolled back
    assert commits == [len(GOOD)]  # one transaction for the 22 events; each good one woke the outbox


async def test_a_group_whose_commit_fails_runs_each_event_again_on_its_own(db_url, monkeypatch):
    failures = []
    commit = GroupCommit.commit

    def fails_once(self: GroupCommit) -> None:
        if not failures:
            failures.append(len(self.after))
            self.rollback()
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        commit(self)

    monkeypatch.setattr(GroupCommit, "commit", fails_once)
    async with BotHarness(plugins=[marker()], db_url=db_url) as bot:
        await started(bot)
        await burst(bot, [*GOOD, "bad"])
        assert failures == [len(GOOD)]
        assert rows(bot) == Counter({m: 1 for m in [*GOOD, "dup", "first"]})
        assert replies(bot) == Counter({m: 1 for m in [*GOOD, "first"]})


async def test_a_handler_that_waits_after_all_is_stopped_rolled_back_and_run_on_its_own(db_url):
    plugin, runs = Plugin("marker"), Counter()

    @plugin.on_fullmatch("记").handle
    async def mark(ctx: Context) -> None:
        runs[ctx.member_id] += 1
        ctx.db.execute(text("INSERT INTO grouptest (member) VALUES (:m)"), {"m": ctx.member_id})
        if ctx.member_id == "u5":
            await asyncio.sleep(0)  # this once it waits (on I/O, say): not inside a shared transaction
        await ctx.reply("记下了")

    async with BotHarness(plugins=[plugin], db_url=db_url) as bot:
        await started(bot)
        await burst(bot, GOOD)
        assert rows(bot) == Counter({m: 1 for m in [*GOOD, "dup", "first"]})
        assert replies(bot) == Counter({m: 1 for m in [*GOOD, "first"]})
    assert runs["u5"] == 2 and all(runs[m] == 1 for m in GOOD if m != "u5")
