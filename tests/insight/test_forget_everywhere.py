"""`member forget` leaves her id, name, nickname and self-introduction in no column of any table,
and SQLite's secure_delete keeps them out of the database file's free space as well."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import JSON, MetaData, String, Text, select, text

from bot._db import make_engine
from bot.insight._forget import forget_member
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
HER = "wxid_meimei0423"
NAME = "张小美Mei"
NICKNAME = "美美-杭州-护肤"
INTRO = "大家好，我是张小美Mei，来自杭州西湖区，从事护肤行业十年，喜欢爬山"
OTHERS = {"owner1": "群主", "u2": "Bob", "u3": "Carol"}


async def _her_life(url: str) -> None:
    """Everything the bot can record about one member: join, introduction, nickname, sign-in, an admin's
    adjustment that names her, a draw she enters, a friend she invites (referral timer)."""
    async with BotHarness(REPO, plugins=["points", "icebreak", "lottery", "insight"], db_url=url) as bot:
        bot.room("g1", "完子研究所1群", members=OTHERS, admins=["owner1"])
        await bot.join("g1", {HER: NAME})
        await bot.say("g1", HER, INTRO)
        await bot.rename("g1", HER, NICKNAME)
        await bot.say("g1", HER, "签到")
        await bot.say("g1", "owner1", f"调整积分 @{NICKNAME} +500 感谢{NAME}分享", mentions=[HER])
        await bot.say("g1", "owner1", "开始抽奖 奖品=面膜 名额=1 口令=抽 时长=10m")
        await bot.say("g1", HER, "抽")
        await bot.join("g1", {"friend1": "Friend"}, inviter=HER)
        await bot.advance("30m")
        await bot.say("g1", "u2", f"@{NICKNAME} 你好", mentions=[HER])


def _traces(engine, needles: list[str]) -> list[str]:
    """table.column for every text-like column of every table in which any needle appears."""
    meta = MetaData()
    meta.reflect(bind=engine)
    found = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for column in table.c:
                if not isinstance(column.type, String | Text | JSON):
                    continue
                for value in conn.execute(select(column)).scalars():
                    if value is not None and any(n in str(value) for n in needles):
                        found.append(f"{table.name}.{column.name}")
                        break
    return sorted(set(found))


@pytest.fixture
def lived(tmp_path):
    import asyncio

    url = f"sqlite:///{tmp_path}/forget.db"
    asyncio.run(_her_life(url))
    return url, tmp_path / "forget.db"


def test_forget_leaves_no_id_name_nickname_or_introduction_in_any_column(lived):
    url, _ = lived
    engine = make_engine(url)
    needles = [HER, NAME, NICKNAME, INTRO]
    before = _traces(engine, needles)
    # the life above really did spread her data around: keys, derived texts, the introduction
    assert {"core_outbox.key", "core_outbox.text", "points_ledger.key", "points_ledger.reason",
            "core_scheduled_task.key", "icebreak_newcomer.intro_text", "core_membership.alias"} <= set(before)
    report = forget_member(engine, HER)
    assert report.found
    assert _traces(engine, needles) == []
    for needle in needles:  # each one on its own, in case one hid another
        assert _traces(engine, [needle]) == [], needle
    with engine.connect() as conn:
        # what is not hers survives: the other members, and the totals under the pseudonym
        assert conn.execute(text("SELECT COUNT(*) FROM core_member WHERE id IN ('u2', 'u3', 'friend1')")).scalar() == 3
        assert conn.execute(text("SELECT SUM(amount) FROM points_ledger WHERE member_id = :p"),
                            {"p": report.pseudonym}).scalar() > 0
    engine.dispose()


def test_secure_delete_is_on_and_the_file_keeps_no_copy(lived):
    url, path = lived
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert INTRO.encode() in raw  # the test can fail: the text is in the file before
    forget_member(engine, HER)
    engine.dispose()
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for needle in (HER, NAME, NICKNAME, INTRO):
        assert needle.encode() not in raw, needle
