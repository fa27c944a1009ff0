"""`qunbot sop check` and the SOP part of `qunbot check`: every file, its templates, actions and rules."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from bot._clock import RealClock
from bot._config import ProjectConfig
from bot._coverage import KnownRoom, configured_rooms
from bot._loader import load_plugins
from bot._runtime import DEFAULT_TEMPLATES
from bot._sandbox import render_budget
from bot._templates import Renderer
from bot.adapters._base import Capabilities
from bot.adapters._profiles import account_capabilities
from bot.sop._load import LoadedSop, load_all
from bot.sop._needs import step_problems
from bot.sop._quota import quota_problems
from bot.sop._rules import marketing_problems


def load_project(project: Path, config: ProjectConfig, *, now: datetime | None = None,
                 ) -> tuple[dict[str, LoadedSop], list[str]]:
    """Load every SOP file as the engine would; return the valid ones and all problems."""
    tz = config.bot.tz
    now = now or RealClock(tz).now()
    paths = [project / config.templates_dir, DEFAULT_TEMPLATES]
    renderer = Renderer(paths, timezone=tz, globals={"bot_name": config.bot.name},
                        budget=render_budget(config.limits))
    try:
        plugins = {p.name: p for p in load_plugins(project, config)}
    except Exception as err:  # plugin problems are reported by the plugin checks
        return {}, [f"cannot load plugins to check SOP actions: {err}"]
    tags = {tag for room in config.rooms.values() for tag in room.tags}
    loaded, problems = load_all(project, config.sop.dir, renderer, paths, tz, now=now, room_tags=tags,
                                plugins=plugins)
    found = list(problems.values())
    found += marketing_problems(loaded.values(), config.rooms, config.sop.marketing_share, tz, start=now)
    capabilities, rooms = accounts_and_rooms(config, loaded.values())
    found += step_problems(loaded.values(), config, plugins, capabilities, rooms)
    found += quota_problems(loaded.values(), config, capabilities, rooms, start=now, tz=tz)
    return loaded, found


def accounts_and_rooms(config: ProjectConfig, files: Iterable[LoadedSop],
                       ) -> tuple[dict[str, Capabilities], list[KnownRoom]]:
    """Each account's capabilities, and every room known before the bot runs: `[rooms.<id>]` and the ids
    SOP files name (with the account serving each, where the config tells)."""
    capabilities = {account.id: account_capabilities(account) for account in config.accounts}
    rooms = configured_rooms(config)
    named = dict.fromkeys(room_id for f in files for room_id in f.sop.targets.rooms if room_id not in config.rooms)
    rooms += [KnownRoom(room_id, config.room_account(room_id)) for room_id in named]
    return capabilities, rooms


def check_project(project: Path, config: ProjectConfig, renderer: Renderer | None = None) -> list[str]:
    """The `register_check` hook: SOP problems as `file:line: problem`."""
    return load_project(project, config)[1]
