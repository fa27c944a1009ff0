"""welcome: a greeting shortly after joining, one message for a batch, inviters recorded, leavers skipped."""

from __future__ import annotations

import pytest

from bot import ConfigError
from bot.testing import BotHarness

MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob"}


@pytest.fixture
def harness(repo):
    return BotHarness(repo, plugins=["welcome"], settings={"plugins": {"welcome": {"delay": "30s"}}})


def _room(bot: BotHarness) -> None:
    bot.room("g1", "完子研究所1群", members=MEMBERS, admins=["owner1"])


def _service(bot: BotHarness):
    return bot.runtime.plugins["welcome"].service


async def test_newcomer_is_greeted_with_a_mention_after_the_delay(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u9": "小红"}, inviter="u1")
        await bot.advance("29s")
        assert bot.pop() == []
        await bot.advance("1s")
        [greeting] = bot.pop()
    assert greeting.room_id == "g1" and greeting.mentions == ("u9",)
    assert greeting.text.startswith("欢迎 @小红 加入「完子研究所1群」")
    assert "感谢 Alice 的邀请" in greeting.text


async def test_joins_within_the_window_share_one_greeting_and_later_ones_get_their_own(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u7": "小红"}, inviter="u1")
        await bot.advance("10s")
        await bot.join("g1", {"u8": "小明", "u9": "小刚"}, inviter="u2")
        await bot.advance("19s")
        await bot.join("g1", {"u10": "小美"})             # 29 s after the first: same batch
        await bot.advance("1s")
        [together] = bot.pop()
        await bot.advance("5s")
        await bot.join("g1", {"u11": "小李"})             # a new window opens
        await bot.advance("29s")
        assert bot.pop() == []
        await bot.advance("1s")
        [alone] = bot.pop()
    assert together.mentions == ("u7", "u8", "u9", "u10")
    assert together.text.startswith("欢迎 4 位新朋友")
    assert all(f"@{name}" in together.text for name in ("小红", "小明", "小刚", "小美"))
    assert "感谢 Alice、Bob 的邀请" in together.text
    assert alone.mentions == ("u11",) and "邀请" not in alone.text


async def test_a_very_large_batch_is_split_into_chunks(repo):
    harness = BotHarness(repo, plugins=["welcome"], settings={"plugins": {"welcome": {"max_mentions": 20}}})
    newcomers = {f"n{i:02d}": f"新人{i:02d}" for i in range(45)}
    async with harness as bot:
        _room(bot)
        await bot.join("g1", newcomers, inviter="u1")
        await bot.settle()
        sent = bot.pop()
    assert [len(m.mentions) for m in sent] == [20, 20, 5]
    assert [m for s in sent for m in s.mentions] == list(newcomers)
    assert "（1/3）" in sent[0].text and "（3/3）" in sent[2].text
    assert all("欢迎 45 位新朋友" in s.text for s in sent)


async def test_someone_who_left_before_the_greeting_is_not_greeted(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u8": "小明", "u9": "小刚"})
        await bot.advance("10s")
        await bot.leave("g1", "u8")
        await bot.advance("20s")
        [greeting] = bot.pop()
        await bot.join("g1", {"u5": "快闪"})
        await bot.leave("g1", "u5")
        await bot.settle()
        assert bot.pop() == []                             # the only newcomer left: no message at all
    assert greeting.mentions == ("u9",) and "小明" not in greeting.text


async def test_leaving_and_joining_again_within_the_window_greets_once(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u9": "小刚"})
        await bot.leave("g1", "u9")
        await bot.advance("5s")
        await bot.join("g1", {"u9": "小刚"})
        await bot.settle()
        [greeting] = bot.pop()
    assert greeting.mentions == ("u9",)


async def test_the_bot_joining_a_room_greets_no_one(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"bot": "小完子"}, inviter="owner1")
        await bot.settle()
        assert bot.pop() == []


async def test_who_invited_whom_is_recorded(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u8": "小明", "u9": "小刚"}, inviter="u1")
        await bot.join("g1", {"u7": "小红"}, inviter="u2")
        await bot.join("g1", {"u6": "小美"})
        await bot.settle()
        service = _service(bot)
        with bot.db() as db:
            assert service.invited_by(db, "g1", "u1") == ["u8", "u9"]
            assert service.invited_by(db, "g1", "u2") == ["u7"]
            assert service.inviter_of(db, "g1", "u7") == "u2"
            assert service.inviter_of(db, "g1", "u6") is None
            assert service.invited_by(db, "g2", "u1") == []


async def test_admin_lists_inviters_and_a_member_is_refused(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u8": "小明", "u9": "小刚"}, inviter="u1")
        await bot.join("g1", {"u7": "小红"}, inviter="u2")
        await bot.leave("g1", "u9")
        await bot.settle()
        bot.pop()
        await bot.say("g1", "u1", "邀请记录")
        refused = bot.pop_text()
        await bot.say("g1", "owner1", "邀请榜")
        listing = bot.pop_text()
    assert "只有群管理员" in refused and "邀请记录" not in refused
    assert listing.index("1. Alice：2 人 / 1 人") < listing.index("2. Bob：1 人 / 1 人")


async def test_a_pending_greeting_survives_a_crash(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u9": "小刚"})
        await bot.advance("10s")
        await bot.restart(crash=True)
        await bot.advance("20s")
        [greeting] = bot.pop()
    assert greeting.mentions == ("u9",)


@pytest.mark.parametrize(("settings", "complaint"), [
    ({"delay": "soon"}, "plugins.welcome.delay"),
    ({"max_mentions": 0}, "plugins.welcome.max_mentions"),
    ({"greeting_dealy": "1m"}, "plugins.welcome.greeting_dealy"),
])
async def test_bad_config_is_a_clear_error(repo, settings, complaint):
    with pytest.raises(ConfigError) as err:
        async with BotHarness(repo, plugins=["welcome"], settings={"plugins": {"welcome": settings}}):
            pass
    assert complaint in str(err.value)


async def test_on_postgresql_a_batch_is_greeted_once(repo, postgres_url):
    async with BotHarness(repo, plugins=["welcome"], db_url=postgres_url,
                          settings={"plugins": {"welcome": {"delay": "30s"}}}) as bot:
        _room(bot)
        await bot.join("g1", {"u8": "小明"}, inviter="u1")
        await bot.advance("10s")
        await bot.join("g1", {"u9": "小刚"}, inviter="u1")
        await bot.settle()
        [greeting] = bot.pop()
        with bot.db() as db:
            invited = _service(bot).invited_by(db, "g1", "u1")
    assert greeting.mentions == ("u8", "u9") and invited == ["u8", "u9"]
