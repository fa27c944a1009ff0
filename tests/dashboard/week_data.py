"""A simulated week of two community groups, run through the real bot on the virtual clock.

It records what it did (messages, sign-ins, joins per room and day) independently of the bot's tables,
so the dashboard tests can check the charts against what really happened.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from bot.insight import Purchase
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
START = datetime.fromisoformat("2026-11-16T07:00:00+08:00")  # a Monday
ROOMS = {  # g1 gets variant 1 of daily.noon_topic, g2 variant 2 (stable hash of file, step and room)
    "g1": ("完子会员1群", {"owner1": "群主", **{f"a{i}": f"阿{i}" for i in range(1, 9)}}),
    "g2": ("完子会员2群", {"owner1": "群主", **{f"b{i}": f"贝{i}" for i in range(1, 7)}}),
}
PLUGINS = ["insight", "points", "lottery", "poll", "quiz"]


@dataclass
class Week:
    end: datetime
    messages: dict[str, Counter[date]] = field(default_factory=lambda: defaultdict(Counter))
    signins: dict[str, Counter[date]] = field(default_factory=lambda: defaultdict(Counter))
    joins: Counter[date] = field(default_factory=Counter)
    leaves: Counter[date] = field(default_factory=Counter)
    noon_replies: dict[str, int] = field(default_factory=Counter)
    draws: int = 0


async def simulate_week(project: Path, db_url: str, *, seed: int = 7) -> Week:
    rng = random.Random(seed)
    week = Week(end=START + timedelta(days=7))
    settings = {"plugins": {"insight": {"recompute_every": "6h"}}}
    async with BotHarness(project, plugins=PLUGINS, db_url=db_url, start=START, settings=settings) as bot:
        for room_id, (topic, members) in ROOMS.items():
            bot.room(room_id, topic, members=members, admins=["owner1"])

        async def say(room: str, member: str, text: str, mentions: tuple[str, ...] = ()) -> None:
            await bot.say(room, member, text, mentions=mentions)
            week.messages[room][bot.now.date()] += 1

        for day in range(7):
            morning = START + timedelta(days=day, hours=2)  # 09:00
            await bot.advance_to(morning)
            today = morning.date()
            for room_id, (_, members) in ROOMS.items():
                people = [m for m in members if m != "owner1"]
                for index, member in enumerate(people):
                    if (index + day) % 3 != 0:
                        await say(room_id, member, "签到")
                        week.signins[room_id][today] += 1
                for member in rng.sample(people, k=min(len(people), 2 + day % 4)):
                    for _ in range(rng.randint(1, 3)):
                        await say(room_id, member, rng.choice(["早上好", "今天的护肤打卡", "有人试过这款吗", "哈哈"]))
            if day == 0:
                await say("g1", "owner1", "打标签 @阿3 达人", ("a3",))
                await say("g1", "owner1", "打标签 @阿5 达人", ("a5",))
            if day == 1:
                await bot.join("g1", {"a9": "阿9", "a10": "阿10"}, inviter="a1")
                week.joins[today] += 2
            if day == 2:
                await say("g1", "owner1", "开始抽奖 奖品=口红 名额=1 口令=我要抽奖 时长=10m")
                for member in ("a1", "a2", "a3", "a9"):
                    await say("g1", member, "我要抽奖")
                await bot.advance("11m")
                week.draws += 1
            if day == 3:
                await say("g2", "owner1", "开始答题 skincare 2")
                for member in ("b1", "b2", "b3"):
                    await say("g2", member, "B")
                await bot.settle()
            if day == 4:
                await say("g1", "owner1", "发起投票 下期上新选哪款？|玫瑰口红|保湿面膜|时长=1d")
                for member, choice in (("a1", "投1"), ("a2", "投2"), ("a4", "投1")):
                    await say("g1", member, choice)
                await bot.leave("g2", "b6")
                week.leaves[today] += 1
            if day < 5:  # weekday noon topic at 12:30; g1 answers it far more than g2
                await bot.advance_to(START + timedelta(days=day, hours=5, minutes=40))
                for room_id, count in (("g1", 5), ("g2", 1)):
                    people = [m for m in ROOMS[room_id][1] if m != "owner1"]
                    for member in people[:count]:
                        await say(room_id, member, "我觉得是保湿最重要")
                        week.noon_replies[room_id] += 1
        service = bot.runtime.service("insight")
        with bot.db() as session:
            service.record_purchases(session, [
                Purchase("T-1001", "a1", 19900, bot.now, room_id="g1", item="修护精华"),
                Purchase("T-1002", "a2", 12900, bot.now, item="洁面"),
                Purchase("T-1003", "b1", 5900, bot.now, room_id="g2", item="面膜")], bot.now)
            session.commit()
        await bot.advance_to(week.end)
    return week
