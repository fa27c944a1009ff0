"""icebreak: newcomers asked to introduce themselves and fix their nickname; intro thanked once, reminder once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from bot import ConfigError
from bot.cli import main
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob"}
SETTINGS = {"nickname_format": "城市-昵称-职业", "nickname_example": "上海-小红-设计师", "ask_delay": "1m",
            "intro_window": "24h", "intro_points": 10, "remind_after": "2h"}
INTRO = "大家好，我是小红，坐标上海，做UI设计的，喜欢爬山"
needs_points = pytest.mark.skipif(not (REPO / "plugins/points/__init__.py").exists(),
                                  reason="needs the points plugin (issue 5, being written by the lead)")


def _rules():
    spec = importlib.util.spec_from_file_location("icebreak_rules", REPO / "plugins/icebreak/rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _harness(repo, *, plugins=("icebreak",), rooms=None, **settings):
    return BotHarness(repo, plugins=list(plugins), settings={
        "plugins": {"icebreak": {**SETTINGS, **settings}}, "rooms": rooms or {}})


@pytest.fixture
def harness(repo):
    return _harness(repo)


def _room(bot: BotHarness, room: str = "g1") -> None:
    bot.room(room, "完子研究所", members=MEMBERS, admins=["owner1"])


async def _newcomer(bot: BotHarness, member: str = "u9", name: str = "小红", room: str = "g1") -> None:
    await bot.join(room, {member: name}, inviter="u1")
    await bot.advance("1m")
    bot.pop()


# --- asking ---------------------------------------------------------------------------------------


async def test_newcomers_joining_together_are_asked_in_one_message_with_the_format(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u7": "小明"})
        await bot.advance("30s")
        await bot.join("g1", {"u8": "小刚", "u9": "小红"})
        await bot.leave("g1", "u8")
        await bot.advance("29s")
        assert bot.pop() == []
        await bot.advance("1s")
        [ask] = bot.pop()
    assert ask.mentions == ("u7", "u9")
    assert "自我介绍" in ask.text and "「城市-昵称-职业」" in ask.text and "上海-小红-设计师" in ask.text
    assert "送 10 积分" not in ask.text                     # the points plugin is not enabled here


async def test_the_bot_itself_is_not_asked(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"bot": "小完子"})
        await bot.settle()
        assert bot.pop() == []


# --- the self-introduction ---------------------------------------------------------------------------


async def test_first_introduction_is_thanked_once_and_chatter_is_not_an_introduction(harness):
    async with harness as bot:
        _room(bot)
        await _newcomer(bot)
        await bot.say("g1", "u9", "大家好")
        await bot.say("g1", "u9", "我是来签到的")              # a keyword, but too short
        assert bot.pop() == []
        await bot.say("g1", "u9", INTRO)
        [thanks] = bot.pop()
        await bot.say("g1", "u9", "再介绍一下：我是小红，来自上海，职业设计师")
        assert bot.pop() == []
    assert thanks.mentions == ("u9",) and thanks.text.startswith("@小红 谢谢你的自我介绍")
    assert "积分" not in thanks.text.split("\n")[0]          # no points plugin: thanks without points
    assert "城市-昵称-职业" in thanks.text                    # the nickname still needs doing


async def test_only_newcomers_within_the_window_are_thanked(harness):
    async with harness as bot:
        _room(bot)
        await bot.say("g1", "u1", INTRO)                       # a long-standing member
        assert bot.pop() == []
        await _newcomer(bot)
        await bot.advance("24h")
        assert "小提醒" in bot.pop_text()
        await bot.say("g1", "u9", INTRO)                       # too late
        assert bot.pop() == []


async def test_keywords_and_length_are_configurable(repo):
    async with _harness(repo, intro_keywords=["本人"], intro_min_length=4) as bot:
        _room(bot)
        await _newcomer(bot)
        await bot.say("g1", "u9", INTRO)                       # no configured keyword
        assert bot.pop() == []
        await bot.say("g1", "u9", "本人小红")
        assert "谢谢你的自我介绍" in bot.pop_text()


def test_intro_heuristic():
    rules = _rules()
    keywords = ["我是", "来自", "坐标"]
    assert rules.looks_like_intro("坐标杭州，宝妈一枚，平时爱做饭", min_length=8, keywords=keywords)
    assert rules.looks_like_intro("Hi 我是 Tom, from Beijing", min_length=8, keywords=keywords)
    assert not rules.looks_like_intro("我是", min_length=8, keywords=keywords)
    assert not rules.looks_like_intro("今天天气真不错，大家周末去哪儿玩", min_length=8, keywords=keywords)
    assert not rules.looks_like_intro("我 是 谁", min_length=4, keywords=keywords)


@needs_points
async def test_introduction_earns_points_once_through_the_points_service(repo):
    async with _harness(repo, plugins=("points", "icebreak")) as bot:
        _room(bot)
        await bot.join("g1", {"u9": "小红"})
        await bot.advance("1m")
        assert "介绍送 10 积分" in bot.pop_text()
        await bot.say("g1", "u9", INTRO)
        thanks = bot.pop_text()
        await bot.leave("g1", "u9")
        await bot.join("g1", {"u9": "小红"})                   # back again: no second reward
        await bot.advance("1m")
        bot.pop()
        await bot.say("g1", "u9", INTRO)
        assert "谢谢" not in bot.pop_text()
        points = bot.runtime.plugins["points"].service
        with bot.db() as db:
            balance = points.balance(db, "g1", "u9")
    assert "送你 10 积分" in thanks
    assert balance == 10


# --- the nickname ---------------------------------------------------------------------------------------


async def test_a_member_with_the_wrong_nickname_is_reminded_once(harness):
    async with harness as bot:
        _room(bot)
        await _newcomer(bot)
        await bot.rename("g1", "u9", "小红")                    # renamed, but not in the format
        await bot.advance("1h58m")
        assert bot.pop() == []
        await bot.advance("1m")
        [reminder] = bot.pop()
        await bot.advance("7d")
        assert bot.pop() == []
        await bot.rename("g1", "u9", "上海-小红-设计师")
        [ack] = bot.pop()
    assert reminder.mentions == ("u9",) and "城市-昵称-职业" in reminder.text
    assert ack.mentions == ("u9",) and ack.text.startswith("@上海-小红-设计师 群昵称改好啦")


async def test_a_rename_that_fits_is_acknowledged_once_and_cancels_the_reminder(harness):
    async with harness as bot:
        _room(bot)
        await _newcomer(bot)
        await bot.rename("g1", "u9", "上海－小红－设计师")       # full-width dashes are fine
        [ack] = bot.pop()
        await bot.rename("g1", "u9", "北京-小红-设计师")         # fits again: no second acknowledgement
        await bot.advance("3h")
        assert bot.pop() == []
        await bot.say("g1", "u9", INTRO)
        thanks = bot.pop_text()
    assert "改好啦" in ack.text
    assert "谢谢你的自我介绍" in thanks and "城市-昵称-职业" not in thanks


async def test_someone_who_left_is_not_reminded(harness):
    async with harness as bot:
        _room(bot)
        await _newcomer(bot)
        await bot.leave("g1", "u9")
        await bot.settle()
        assert bot.pop() == []


async def test_admin_lists_newcomers_without_the_format_and_members_are_refused(harness):
    async with harness as bot:
        _room(bot)
        await bot.join("g1", {"u7": "小明", "u8": "小刚", "u9": "小红", "u6": "小美"})
        await bot.advance("1m")
        await bot.rename("g1", "u7", "杭州-小明-老师")
        await bot.leave("g1", "u8")
        await bot.say("g1", "u9", INTRO)
        bot.pop()
        await bot.say("g1", "u2", "未改名单")
        refused = bot.pop_text()
        await bot.say("g1", "owner1", "未改名单")
        listing = bot.pop_text()
        for member, alias in (("u9", "上海-小红-设计师"), ("u6", "广州-小美-学生")):
            await bot.rename("g1", member, alias)
        bot.pop()
        await bot.say("g1", "owner1", "未改昵称")
        done = bot.pop_text()
    assert "只有群管理员" in refused and "小红" not in refused
    assert "（2 人）" in listing and "小红｜11月23日 09:00 入群｜已自我介绍" in listing and "小美" in listing
    assert "小明" not in listing and "小刚" not in listing
    assert "都已按「城市-昵称-职业」改好" in done


# --- per-room format, configuration -----------------------------------------------------------------------


async def test_a_room_can_override_the_nickname_format(repo):
    rooms = {"g2": {"plugins": {"icebreak": {"nickname_format": "昵称|城市", "nickname_example": "小红|上海"}}}}
    async with _harness(repo, rooms=rooms) as bot:
        _room(bot, "g1")
        _room(bot, "g2")
        await bot.join("g2", {"u9": "小红"})
        await bot.join("g1", {"u8": "小刚"})
        await bot.advance("1m")
        asks = {m.room_id: m.text for m in bot.pop()}
        await bot.rename("g2", "u9", "上海-小红-设计师")        # the default format does not count in g2
        assert bot.pop() == []
        await bot.rename("g2", "u9", "小红 | 上海")
        assert "改好啦" in bot.pop_text()
        await bot.rename("g1", "u8", "小刚|北京")
        await bot.advance("2h")
        g1_reminder = bot.pop_text()
    assert "「昵称|城市」" in asks["g2"] and "小红|上海" in asks["g2"]
    assert "「城市-昵称-职业」" in asks["g1"]
    assert "@小刚|北京 小提醒" in g1_reminder


def test_readable_format_becomes_a_pattern():
    rules = _rules()
    pattern = rules.pattern_from_format("城市-昵称-职业")
    assert rules.nickname_fits("上海-小红-设计师", pattern)
    assert rules.nickname_fits(" 上海 - 小红 - 设计师 ", pattern)
    assert rules.nickname_fits("上海-安娜·卡列尼娜-设计师", pattern)   # · and spaces inside a field are fine
    assert rules.nickname_fits("Shanghai-Anna Lee-UX designer", pattern)
    for wrong in ("小红", "上海-小红", "上海--设计师", "上海-小红-设计师-猫", "", None):
        assert not rules.nickname_fits(wrong, pattern)
    with pytest.raises(ValueError, match="至少要两段"):
        rules.pattern_from_format("昵称")


async def test_an_explicit_pattern_wins_over_the_readable_format(repo):
    async with _harness(repo, nickname_format="昵称-手机尾号", nickname_example="小红-1234",
                        nickname_pattern=r"[^-]+-\d{4}") as bot:
        _room(bot)
        await _newcomer(bot)
        await bot.rename("g1", "u9", "小红-abcd")
        assert bot.pop() == []
        await bot.rename("g1", "u9", "小红-5678")
        assert "改好啦" in bot.pop_text()


@pytest.mark.parametrize(("rooms", "settings", "complaint"), [
    ({}, {"nickname_example": "小红"}, "plugins.icebreak.nickname_example: 示例 '小红' 不符合群昵称格式"),
    ({}, {"nickname_pattern": "(["}, "plugins.icebreak.nickname_pattern: 不是有效的正则表达式"),
    ({}, {"nickname_format": "昵称"}, "plugins.icebreak.nickname_format: nickname_format '昵称' 至少要两段"),
    ({}, {"remind_after": "later"}, "plugins.icebreak.remind_after"),
    ({"g2": {"plugins": {"icebreak": {"nickname_format": "昵称|城市"}}}}, {}, "rooms.g2.plugins.icebreak"),
])
async def test_bad_config_is_a_clear_error(repo, rooms, settings, complaint):
    with pytest.raises(ConfigError) as err:
        async with _harness(repo, rooms=rooms, **settings):
            pass
    assert complaint in str(err.value)


async def test_reminder_and_open_introduction_survive_a_crash(harness):
    async with harness as bot:
        _room(bot)
        await _newcomer(bot)
        await bot.restart(crash=True)
        await bot.say("g1", "u9", INTRO)
        assert "谢谢你的自我介绍" in bot.pop_text()
        await bot.advance("2h")
        assert "小提醒" in bot.pop_text()


CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
FORMAT_FIELD = st.text(alphabet=CJK, min_size=1, max_size=4)
NICKNAME_FIELD = st.text(alphabet=CJK | st.sampled_from("abcXYZ019·_| "), min_size=1, max_size=6)


@given(names=st.lists(FORMAT_FIELD, min_size=2, max_size=4), fills=st.lists(NICKNAME_FIELD, min_size=4, max_size=4),
       sep=st.sampled_from(["-", "|", "/", "·", "_"]))
def test_any_readable_format_accepts_its_shape_and_rejects_a_missing_field(names, fills, sep):
    rules = _rules()
    fills = [f.replace(sep, "").strip() or "字" for f in fills]
    pattern = rules.pattern_from_format(sep.join(names))
    nickname = sep.join(fills[:len(names)])
    assert rules.nickname_fits(nickname, pattern)
    assert not rules.nickname_fits(sep.join(fills[:len(names) - 1]), pattern)


@needs_points
async def test_on_postgresql_the_introduction_is_claimed_once_and_the_reminder_sent_once(repo, postgres_url):
    async with BotHarness(repo, plugins=["points", "icebreak"], db_url=postgres_url,
                          settings={"plugins": {"icebreak": SETTINGS}}) as bot:
        _room(bot)
        await _newcomer(bot)
        await bot.say("g1", "u9", INTRO)
        await bot.say("g1", "u9", INTRO)
        thanks = bot.pop()
        await bot.advance("3h")
        reminders = bot.pop()
        await bot.advance("1d")
        assert "小提醒" not in bot.pop_text()               # (the points plugin's referral reward may come)
    assert len(thanks) == 1 and "送你 10 积分" in thanks[0].text
    assert len(reminders) == 1 and "小提醒" in reminders[0].text


def test_qunbot_check_names_the_line_of_an_example_that_does_not_fit(project):
    (project / "qunbot.toml").write_text(
        f'[plugins]\ndirs = ["{REPO / "plugins"}"]\nenabled = ["icebreak"]\n\n'
        '[plugins.icebreak]\nnickname_format = "城市-昵称-职业"\nnickname_example = "小红"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(project), "check"])
    assert result.exit_code != 0
    assert "qunbot.toml:7: plugins.icebreak.nickname_example" in result.output + result.stderr
