"""Adapters connect accounts to a chat protocol; see `_base.Adapter` for the seam."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bot.adapters._base import (
    Adapter,
    AdapterError,
    Capabilities,
    Disconnected,
    EventSink,
    RateLimited,
    RoomQuota,
    SendError,
)

if TYPE_CHECKING:
    from bot._clock import Clock
    from bot._config import AccountSettings, ProjectConfig

__all__ = ["Adapter", "AdapterError", "Capabilities", "Disconnected", "EventSink", "RateLimited", "RoomQuota",
           "SendError", "make_adapter"]


def make_adapter(settings: AccountSettings, clock: Clock, *, project: Path, config: ProjectConfig) -> Adapter:
    """Build the adapter an `[[accounts]]` entry names (imports Wechaty only when asked for).

    A `simulated` account under `qunbot run` is a dry run: what it would send is logged.
    """
    from bot.adapters._profiles import account_capabilities
    from bot.adapters.simulated import SimulatedAdapter

    adapter: Adapter
    if settings.adapter == "wechaty":
        from bot.adapters.wechaty import WechatyAdapter

        adapter = WechatyAdapter.from_settings(settings, clock=clock, project=project, config=config)
    elif settings.adapter == "wecom":
        from bot.adapters.wecom import WecomAdapter

        adapter = WecomAdapter.from_settings(settings, clock=clock, project=project, config=config)
    else:
        dry_run = logging.getLogger("qunbot.dry_run")
        adapter = SimulatedAdapter(settings.id, clock,
                                   on_send=lambda m: dry_run.info("[dry run] → %s: %s", m.room_id or m.to, m.text))
    adapter.capabilities = account_capabilities(settings, adapter.capabilities)  # `qunbot.toml` has the last word
    return adapter
