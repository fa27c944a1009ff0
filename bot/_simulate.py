"""`qunbot simulate`: run a scenario file on the virtual clock and print what the bot sends.

The contract is `docs/simulate.md`: JSON Lines on stdout in send order,
logs on stderr, jobs run at their own virtual times before each event.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from bot._events import MemberRef
from bot._scenario import Scenario, ScenarioEvent, load_scenario
from bot._simulation import Simulation
from bot.adapters.simulated import SentMessage, SimulatedAdapter


async def run_scenario(scenario_path: Path, project: Path, *, db_url: str | None = None,
                       out: TextIO | None = None) -> list[SentMessage]:
    """Run a scenario and write one JSON line per sent message to `out`; return them too."""
    from bot._config import load_config

    config = load_config(project)
    scenario: Scenario = load_scenario(scenario_path, default_tz=config.bot.tz)
    stream = out if out is not None else sys.stdout

    def emit(message: SentMessage) -> None:
        stream.write(json.dumps(message.as_json(), ensure_ascii=False) + "\n")
        stream.flush()

    sim = Simulation(project, start=scenario.start, config=config, db_url=db_url,
                     bot=MemberRef(scenario.bot_id, scenario.bot_name), seed=scenario.seed, on_send=emit)
    for room in scenario.rooms:
        sim.adapter.add_room(room.id, room.topic, members=[MemberRef(m.id, m.name) for m in room.members],
                             admins=room.admins)
    await sim.start()
    try:
        _refuse_invalid_components(sim)
        for event in scenario.events:
            await sim.advance_to(event.at)
            await _apply(sim.adapter, event)
        if scenario.until is not None:
            await sim.advance_to(scenario.until)
        else:
            await sim.settle()
    finally:
        await sim.stop()
    return sim.adapter.sent


def _refuse_invalid_components(sim: Simulation) -> None:
    """The contract: an invalid SOP file (or its template) ends a simulation with its `file:line`, where a
    running bot would log it and run the rest."""
    from bot._config import ConfigError

    for component in sim._components:
        for problem in sorted(getattr(component, "problems", {}).values()):
            where, _, what = problem.partition(": ")
            raise ConfigError(where, None, what)


async def _apply(adapter: SimulatedAdapter, event: ScenarioEvent) -> None:
    if event.kind == "say":
        await adapter.say(event.room, event.sender, event.text or "", mentions=event.mentions,  # type: ignore[arg-type]
                          file=event.file, kind=event.share, id=event.message_id)
    elif event.kind == "private":
        await adapter.private(event.sender, event.text or "", file=event.file,  # type: ignore[arg-type]
                              id=event.message_id)
    elif event.kind == "join":
        await adapter.join(event.room, [MemberRef(m.id, m.name) for m in event.members],  # type: ignore[arg-type]
                           inviter=event.inviter)
    elif event.kind == "leave":
        await adapter.leave(event.room, event.member_ids)  # type: ignore[arg-type]
    elif event.kind == "rename":
        await adapter.rename(event.room, event.member, event.alias or "")  # type: ignore[arg-type]
    elif event.kind == "topic":
        await adapter.change_topic(event.room, event.topic or "", by=event.sender)  # type: ignore[arg-type]
    else:  # pragma: no cover - the scenario parser rejects other kinds
        raise ValueError(f"unknown scenario event {event.kind!r}")
