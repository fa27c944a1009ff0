"""Bursts as members feel them: N members of one room answer within 60 s, on the default pacing.

Runs the real plugins and templates on the virtual clock (so it measures what the bot sends, not
the machine): 签到 (points), a lottery keyword (lottery, `confirm_entries`), a poll vote (poll,
`confirm_votes`). Arrivals are spread evenly over the minute. Reported against the lower bound
ceil(N / max_mentions) messages spaced `room_interval` apart: the number of bot messages, and the
time from the last member's message to the message that acknowledges them.
"""

from __future__ import annotations

import asyncio
import math
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._common import Result, Target, rounded

REPO = Path(__file__).resolve().parent.parent
WINDOW = timedelta(seconds=60)
CASES = {
    "signin": ("签到", None),
    "lottery": ("我要抽奖", "开始抽奖 奖品=口红 名额=3 口令=我要抽奖 时长=30m"),
    "poll": ("投1", "发起投票 下期上新选哪款？|玫瑰口红|保湿面膜|眼霜"),
}


async def burst(kind: str, members: int, *, seed: int = 0) -> dict[str, Any]:
    """One burst of `members` messages of `kind` in one room; the figures for it."""
    from bot.testing import BotHarness

    said, opener = CASES[kind]
    harness = BotHarness(REPO, plugins=["points", "lottery", "poll"], pacing={}, seed=seed,
                         start="2026-11-23T07:58:00+08:00")
    async with harness as bot:
        names = {f"m{n:03d}": f"成员{n:03d}" for n in range(members)}
        bot.room("g1", "完子早起打卡群", members={"owner1": "群主", **names}, admins=["owner1"])
        if opener:
            await bot.say("g1", "owner1", opener)
        bot.pop()
        pacing = bot.runtime.config.pacing_for("default")
        await bot.advance_to("2026-11-23T08:00:00+08:00")
        begin = bot.now
        for n, member in enumerate(names):
            await bot.advance_to(begin + WINDOW * n / members)
            await bot.say("g1", member, said, drain=False)
        last_said = bot.now
        await bot.drain()
        sent = [m for m in bot.pop() if m.room_id == "g1"]
    last = next(m for m in sent if f"m{members - 1:03d}" in m.mentions)
    acknowledged = {m for message in sent for m in message.mentions}
    bound_messages = math.ceil(members / pacing.max_mentions)
    bound_s = bound_messages * pacing.room_interval
    return {"members": members, "messages": len(sent), "bound_messages": bound_messages,
            "last_ack_s": rounded((last.at - last_said).total_seconds()), "bound_s": bound_s,
            "acknowledged": len(acknowledged & set(names))}


async def run(cases: Any = (("signin", 100), ("signin", 500), ("lottery", 300), ("poll", 300)),
              progress: Any = lambda _: None) -> Result:
    result = Result("burst")
    for kind, members in cases:
        figures = await burst(kind, members)
        if figures["acknowledged"] != members:
            raise AssertionError(f"{kind} {members}: {figures['acknowledged']} members acknowledged")
        progress(f"{kind} × {members}: {figures['messages']} messages (bound {figures['bound_messages']}), "
                 f"last acknowledged {figures['last_ack_s']} s after the last message (bound {figures['bound_s']} s)")
        for key, value in figures.items():
            result.figures[f"{kind}_{members}_{key}"] = value
        result.targets += [
            Target(f"{kind} ×{members}: bot messages", figures["messages"], figures["bound_messages"] + 1,
                   at_most=True),
            Target(f"{kind} ×{members}: last ack, s (2× bound)", figures["last_ack_s"], 2 * figures["bound_s"],
                   at_most=True),
        ]
    return result


if __name__ == "__main__":
    print(asyncio.run(run(progress=print)).as_json(), file=sys.stdout)
