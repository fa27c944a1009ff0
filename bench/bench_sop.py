"""SOP engine speed and fan-out numbers on the virtual clock: `python bench/bench_sop.py`.

1. a simulated week of a 3-posts-a-day file over many rooms (wall time per simulated week);
2. one step fanned out to many rooms under the default pacing: when the last room got it, and how many
   rooms a 10-minute grace leaves out;
3. many members joining: the one-sweeper design sending their day-1 messages.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from sqlmodel import func, select

from bot._models import OutboxMessage
from bot.testing import BotHarness

DAILY = """\
    targets: {topics: ["完子会员*"]}
    grace: GRACE
    steps:
      - {id: morning, at: "08:00", text: "早安 {{ now|cn_date }}"}
      - {id: noon, at: "12:30", text: 午间话题}
      - {id: night, at: "22:00", text: 晚安}
"""
JOIN = """\
    targets: {topics: ["完子会员*"]}
    grace: 1h
    steps: [{id: day1, after_join: 1d, text: "{{ member|mention }} 欢迎"}]
"""


def make_project(sop: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="bench-sop-"))
    (root / "sop").mkdir()
    (root / "qunbot.toml").write_text('[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    (root / "sop" / "x.yaml").write_text(textwrap.dedent(sop), encoding="utf-8")
    return root


async def week(rooms: int) -> None:
    bot = BotHarness(make_project(DAILY.replace("GRACE", "10m")), plugins=[], start="2026-11-23T07:00:00+08:00")
    for n in range(rooms):
        bot.room(f"g{n}", f"完子会员{n}群", members={"u1": "Alice"})
    async with bot:
        began = time.perf_counter()
        await bot.advance("7d")
        took = time.perf_counter() - began
    print(f"week: {rooms} rooms x 3 posts/day x 7 days = {len(bot.sent)} posts in {took:.2f} s wall "
          f"({len(bot.sent) / took:.0f} posts/s, no pacing)")


async def fan_out(rooms: int, grace: str) -> None:
    bot = BotHarness(make_project(DAILY.replace("GRACE", grace)), plugins=[], start="2026-11-23T07:59:00+08:00",
                     pacing={})  # the default pacing: 2 s + up to 1.5 s jitter per send
    for n in range(rooms):
        bot.room(f"g{n}", f"完子会员{n}群", members={"u1": "Alice"})
    async with bot:
        await bot.advance("2h")
        with bot.db() as session:
            skipped = session.exec(select(func.count()).select_from(OutboxMessage)
                                   .where(OutboxMessage.status == "skipped")).one()
    mornings = [m for m in bot.sent if m.text.startswith("早安")]
    last = max(m.at for m in mornings)
    print(f"fan-out: {rooms} rooms, default pacing, grace {grace}: {len(mornings)} sent, last at "
          f"{last:%H:%M:%S}, {skipped} skipped as late")


async def joins(members: int) -> None:
    bot = BotHarness(make_project(JOIN), plugins=[], start="2026-11-23T09:00:00+08:00",
                     pacing={"min_interval": 0, "jitter": 0, "room_interval": 0, "hourly_cap": 1_000_000})
    bot.room("g1", "完子会员1群", members={"owner": "群主"})
    async with bot:
        began = time.perf_counter()
        for batch in range(0, members, 100):
            await bot.join("g1", {f"m{i}": f"成员{i}" for i in range(batch, min(members, batch + 100))}, drain=False)
            await bot.advance("1m")
        joined = time.perf_counter() - began
        began = time.perf_counter()
        await bot.advance("1d")
        swept = time.perf_counter() - began
    print(f"joins: {members} members joined in {joined:.2f} s wall; their day-1 messages ({len(bot.sent)}) "
          f"swept and sent in {swept:.2f} s wall by one sweeper")


async def main() -> None:
    logging.disable(logging.WARNING)  # thousands of "skipped as late" lines would drown the numbers
    rooms = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    await week(rooms)
    await fan_out(300, "10m")
    await fan_out(300, "30m")
    await joins(2000)


if __name__ == "__main__":
    asyncio.run(main())
