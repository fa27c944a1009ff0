"""When members last spoke: written on a speaker's first message, then at most every 10 minutes.

Known speakers take a one-statement UPDATE (no ORM loads); these tests pin that the stored times
are exactly what the slower upsert path stored, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot._models import Membership
from bot.testing import BotHarness


def spoke_at(bot: BotHarness, room: str, member: str) -> datetime | None:
    with bot.db() as session:
        row = session.get(Membership, (room, member))
        return None if row is None else row.last_spoke_at


async def check_speaker_times(bot: BotHarness) -> None:
    bot.room("g1", "一群", members={"u1": "Alice"})
    async with bot:
        first = bot.now
        await bot.say("g1", "u1", "早")
        assert spoke_at(bot, "g1", "u1") == first
        await bot.advance("9m")
        await bot.say("g1", "u1", "还在")
        assert spoke_at(bot, "g1", "u1") == first  # within 10 minutes: no write
        await bot.advance("2m")
        later = bot.now
        await bot.say("g1", "u1", "又来了")
        assert spoke_at(bot, "g1", "u1") == later
        assert later - first == timedelta(minutes=11)
        # a stranger (not in the room snapshot) and a renamed member take the upsert path
        await bot.say("g1", "u9", "我是新来的")
        assert spoke_at(bot, "g1", "u9") == later


async def test_speaker_times_sqlite(project) -> None:
    await check_speaker_times(BotHarness(project, plugins=[]))


async def test_speaker_in_unknown_room_gets_room_and_membership(project) -> None:
    bot = BotHarness(project, plugins=[])
    bot.room("g1", "一群", members={"u1": "Alice"})
    async with bot:
        bot.sim.adapter.add_room("g2", "二群")  # the bot learns of g2 only from a message in it
        await bot.say("g2", "u1", "你好")
        assert spoke_at(bot, "g2", "u1") == bot.now


async def test_speaker_times_postgres(project, postgres_url) -> None:
    pytest.importorskip("psycopg")
    await check_speaker_times(BotHarness(project, plugins=[], db_url=postgres_url))


async def test_a_burst_of_speakers_is_written_in_one_transaction(project) -> None:
    from sqlalchemy import event

    bot = BotHarness(project, plugins=[])
    bot.room("g1", "一群", members={f"u{i}": f"成员{i}" for i in range(5)})
    async with bot:
        commits = []
        event.listen(bot.runtime.engine, "commit", lambda conn: commits.append(1))
        for i in range(5):
            await bot.say("g1", f"u{i}", "签到", drain=False)
        assert commits == [] and spoke_at(bot, "g1", "u0") is None   # batched, not yet written
        await bot.drain()
        assert len(commits) == 1
        assert {spoke_at(bot, "g1", f"u{i}") for i in range(5)} == {bot.now}


async def test_speakers_spread_over_a_second_share_one_write_after_it(project) -> None:
    """Chatter arrives one message at a time with the loop turning between (as from a live adapter):
    the speakers' times still go in one commit, a second after the first, not one commit per turn."""
    from sqlalchemy import event

    bot = BotHarness(project, plugins=[])
    bot.room("g1", "一群", members={f"u{i}": f"成员{i}" for i in range(10)})
    async with bot:
        commits = []
        event.listen(bot.runtime.engine, "commit", lambda conn: commits.append(1))
        first = bot.now
        for i in range(10):
            await bot.say("g1", f"u{i}", "哈哈", drain=False)
            await bot.advance(timedelta(milliseconds=90))  # the loop turns and the clock moves between messages
        assert commits == [] and spoke_at(bot, "g1", "u0") is None
        await bot.advance(timedelta(milliseconds=200))
        assert len(commits) == 1
        assert spoke_at(bot, "g1", "u0") == first and spoke_at(bot, "g1", "u9") == first + timedelta(milliseconds=810)
