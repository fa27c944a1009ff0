"""Accounts per process: many simulated accounts, each with rooms full of members, in one `Runtime`.

Resident memory is read at three points: after imports, after the simulated WeChat side is built
(rooms and member objects the adapters hold, as a puppet would), and after every account has
started (rooms, members and memberships synced to the database and the runtime's caches). The
figure held to the target is the whole process's growth per account, simulator included.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from bench._common import Result, Target, rounded, rss_mb


async def run(accounts: int = 100, rooms: int = 20, members: int = 500, progress: Any = lambda _: None) -> Result:
    from bot._clock import RealClock
    from bot._config import parse_config
    from bot._events import MemberRef
    from bot._models import Membership
    from bot._runtime import Runtime
    from bot.adapters.simulated import SimulatedAdapter

    root = Path(tempfile.mkdtemp(prefix="bench-accounts-"))
    ids = [f"acct{n:03d}" for n in range(accounts)]
    config = parse_config({"bot": {"timezone": "Asia/Shanghai"}, "accounts": [{"id": a} for a in ids]})
    clock = RealClock(config.bot.tz)
    gc.collect()
    rss_base = rss_mb()
    adapters = {}
    for account in ids:
        adapter = SimulatedAdapter(account, clock)
        for r in range(rooms):
            room = f"{account}-g{r:02d}"
            adapter.add_room(room, f"客户群{room}", members=[MemberRef(f"{room}-m{m:03d}", f"成员{m}")
                                                           for m in range(members)],
                             admins=[f"{room}-m000"])
        adapters[account] = adapter
    gc.collect()
    rss_sim = rss_mb()
    runtime = Runtime(root, config, clock=clock, adapters=adapters, db_url=f"sqlite:///{root}/bench.db", plugins=[])
    began = time.perf_counter()
    await runtime.start()
    started = time.perf_counter() - began
    progress(f"{accounts} accounts started in {started:.1f} s")
    for account in ids:  # every account is live: one message each reaches the runtime and is recorded
        await adapters[account].say(f"{account}-g00", f"{account}-g00-m001", "大家好")
    runtime.members.flush_speakers()  # speakers are written behind, at the loop's next turn; count them now
    gc.collect()
    rss_run = rss_mb()
    with Session(runtime.engine) as session:
        memberships = session.exec(select(func.count()).select_from(Membership)).one()
        spoke = session.exec(select(func.count()).select_from(Membership)
                             .where(col(Membership.last_spoke_at).is_not(None))).one()
    await runtime.stop()
    await clock.aclose()
    if len(runtime.active) or memberships != accounts * rooms * (members + 1) or spoke != accounts:
        raise AssertionError(f"{memberships} memberships ({accounts * rooms * (members + 1)} expected, the bot "
                             f"included), {spoke} speakers recorded ({accounts} expected)")
    per_account = (rss_run - rss_base) / accounts
    result = Result("accounts", {
        "accounts": accounts, "rooms_per_account": rooms, "members_per_room": members,
        "memberships": memberships, "start_all_s": rounded(started),
        "rss_mb_base": rounded(rss_base), "rss_mb_simulator_built": rounded(rss_sim),
        "rss_mb_running": rounded(rss_run),
        "mb_per_account": rounded(per_account),
        "mb_per_account_simulator": rounded((rss_sim - rss_base) / accounts),
        "mb_per_account_runtime": rounded((rss_run - rss_sim) / accounts),
    })
    result.targets.append(Target("MB per account", rounded(per_account), 5, at_most=True))
    return result


if __name__ == "__main__":
    print(asyncio.run(run(*(int(a) for a in sys.argv[1:]), progress=print)).as_json())
