"""The 08:00 wave: many accounts, each with many rooms, where a share of every room signs in within minutes.

Issue 14's scenario: 100 accounts × 20 rooms of 500 members, 20 % of each room sending 签到 between
08:00 and 08:05, on the default pacing. One `Runtime` hosts every account (as in `bench_accounts.py`),
each a simulated WeChat on one shared virtual clock, so the figures are what the bot sends and when,
not how fast the machine is. Arrivals are seeded-random within the window, each room's members on their
own times, and all of them replayed in time order across rooms and accounts.

Checked from what the bot sent (the @-mentions of its messages, room by room): every member who signed in
is acknowledged, and no account sends `hourly_cap` messages within any rolling hour (the cap is never
exhausted, so that day's SOP posts would still go out).

The time to the last acknowledgement is held to a bound derived from the pacing: each account must send at
least rooms × ceil(signers per room / max_mentions) merged messages (20 × 5 = 100), one account send every
min_interval + jitter/2 seconds on average (2.75 s), so its share takes at least that many slots (275 s).
The target is the window plus that: the wave is answered no later than if the account had sent its whole
share, fully merged, only after the last member signed in. Sending during the window is what beats it.
"""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import sys
import tempfile
import time
import tomllib
from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import Result, Target, percentile, rounded

REPO = Path(__file__).resolve().parent.parent
START = "2026-11-23T07:58:00+08:00"
WAVE = "2026-11-23T08:00:00+08:00"
HOUR = timedelta(hours=1)


def arrivals(accounts: int, rooms: int, members: int, share: float, window: float,
             seed: int) -> list[tuple[float, str, str, str]]:
    """(seconds after 08:00, account, room, member) for every sign-in, in time order."""
    rng = random.Random(seed)
    signing = round(members * share)
    out = []
    for a in range(accounts):
        account = f"acct{a:03d}"
        for r in range(rooms):
            room = f"{account}-g{r:02d}"
            out += [(rng.uniform(0, window), account, room, f"{room}-m{m:03d}")
                    for m in rng.sample(range(members), signing)]
    out.sort()
    return out


def busiest_hour(times: list[datetime]) -> int:
    """The most sends within any rolling hour (the outbox's own cap window: after t - 1 h, up to t)."""
    times = sorted(times)
    return max((i + 1 - bisect_right(times, t - HOUR, 0, i + 1) for i, t in enumerate(times)), default=0)


async def wave(accounts: int, rooms: int, members: int, *, share: float = 0.2, window: float = 300.0,
               seed: int = 0, progress: Any = lambda _: None) -> dict[str, Any]:
    """Run one wave; the figures for it (raises if a sign-in goes unacknowledged)."""
    from bot._clock import VirtualClock
    from bot._config import parse_config
    from bot._events import MemberRef
    from bot._runtime import Runtime
    from bot.adapters.simulated import SimulatedAdapter

    raw = tomllib.loads((REPO / "qunbot.toml").read_text(encoding="utf-8"))
    ids = [f"acct{n:03d}" for n in range(accounts)]
    raw.update(pacing={}, plugins={"enabled": ["points"], "points": raw["plugins"].get("points", {})},
               accounts=[{"id": a, "adapter": "simulated"} for a in ids])
    config = parse_config(raw)
    pacing = config.pacing_for(ids[0])
    clock = VirtualClock(datetime.fromisoformat(START).astimezone(config.bot.tz))
    adapters = {}
    for account in ids:
        adapter = SimulatedAdapter(account, clock, bot=MemberRef("bot", config.bot.name))
        for r in range(rooms):
            room = f"{account}-g{r:02d}"
            adapter.add_room(room, f"完子早起打卡群{room}",
                             members=[MemberRef(f"{room}-m{m:03d}", f"成员{m:03d}") for m in range(members)])
        adapters[account] = adapter
    plan = arrivals(accounts, rooms, members, share, window, seed)
    root = Path(tempfile.mkdtemp(prefix="bench-wave-"))
    try:
        runtime = Runtime(REPO, config, clock=clock, adapters=adapters, db_url=f"sqlite:///{root}/wave.db",
                          seed=seed)
        clock.settle = runtime.background_idle
        began = time.perf_counter()
        await runtime.start()
        started = time.perf_counter() - began
        progress(f"{accounts} accounts × {rooms} rooms × {members} members started in {started:.1f} s")
        await clock.advance_to(datetime.fromisoformat(WAVE))
        begin = clock.now()
        said_at: dict[tuple[str, str], datetime] = {}
        began = time.perf_counter()
        for n, (offset, account, room, member) in enumerate(plan, 1):
            await clock.advance_to(begin + timedelta(seconds=offset))
            await adapters[account].say(room, member, "签到")
            said_at[room, member] = clock.now()
            if n % 20_000 == 0:
                progress(f"{n:,} sign-ins at +{offset:.0f} s, wall {time.perf_counter() - began:.0f} s")
        last_said = clock.now()
        await clock.run_until_idle(limit=timedelta(days=1))
        wall = time.perf_counter() - began
        pending = sum(runtime.outbox(a).pending_count() for a in ids)
        await runtime.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if pending:
        raise AssertionError(f"{pending} messages still queued after the wave")

    per_room: dict[str, int] = defaultdict(int)
    acked_at: dict[tuple[str, str], datetime] = {}
    hour_max = 0
    for adapter in adapters.values():
        sends = [m for m in adapter.sent if m.room_id is not None]
        hour_max = max(hour_max, busiest_hour([m.at for m in sends]))
        for message in sends:
            per_room[message.room_id] += 1  # type: ignore[index]
            for member in message.mentions:
                acked_at.setdefault((message.room_id, member), message.at)  # type: ignore[arg-type]
    missing = [key for key in said_at if key not in acked_at]
    if missing:
        raise AssertionError(f"{len(missing)} of {len(said_at)} sign-ins never acknowledged, e.g. {missing[:3]}")
    waits = sorted((acked_at[key] - at).total_seconds() for key, at in said_at.items())
    last_ack = max(acked_at[key] for key in said_at)
    signing = round(members * share)
    bound_per_room = math.ceil(signing / pacing.max_mentions)
    share_s = rooms * bound_per_room * (pacing.min_interval + pacing.jitter / 2)
    messages = sum(per_room.values())
    return {
        "accounts": accounts, "rooms_per_account": rooms, "members_per_room": members,
        "signins": len(said_at), "acknowledged": sum(1 for key in said_at if key in acked_at),
        "messages": messages, "messages_per_room_mean": rounded(messages / (accounts * rooms)),
        "messages_per_room_max": max(per_room.values()), "bound_messages_per_room": bound_per_room,
        "hourly_max_one_account": hour_max, "hourly_cap": pacing.hourly_cap,
        "last_ack_after_first_s": rounded((last_ack - begin).total_seconds()),
        "last_ack_after_last_signin_s": rounded((last_ack - last_said).total_seconds()),
        "bound_last_ack_s": rounded(window + share_s), "window_s": window, "pacing_share_s": rounded(share_s),
        "ack_p50_s": rounded(percentile(waits, 50)), "ack_p99_s": rounded(percentile(waits, 99)),
        "ack_max_s": rounded(waits[-1]), "start_s": rounded(started), "wall_s": rounded(wall),
    }


async def run(accounts: int = 100, rooms: int = 20, members: int = 500, share: float = 0.2,
              window: float = 300.0, progress: Any = lambda _: None) -> Result:
    figures = await wave(accounts, rooms, members, share=share, window=window, progress=progress)
    progress(f"{figures['signins']:,} sign-ins, {figures['messages']:,} messages "
             f"({figures['messages_per_room_mean']} per room, bound {figures['bound_messages_per_room']}), "
             f"last ack {figures['last_ack_after_first_s']} s after 08:00 (bound {figures['bound_last_ack_s']} s), "
             f"wall {figures['wall_s']} s")
    result = Result("wave", figures)
    result.targets += [
        Target("members acknowledged / signed in", rounded(figures["acknowledged"] / figures["signins"]), 1.0),
        Target(f"busiest hour, one account (< cap {figures['hourly_cap']})", figures["hourly_max_one_account"],
               figures["hourly_cap"] - 1, at_most=True),
        Target("last ack after 08:00, s (window + share)", figures["last_ack_after_first_s"],
               figures["bound_last_ack_s"], at_most=True),
    ]
    return result


if __name__ == "__main__":
    print(asyncio.run(run(*(int(a) for a in sys.argv[1:4]), progress=print)).as_json(), file=sys.stdout)
