"""Adapters connect accounts to a chat protocol; see `_base.Adapter` for the seam."""

from bot.adapters._base import Adapter, AdapterError, EventSink, RateLimited, SendError

__all__ = ["Adapter", "AdapterError", "EventSink", "RateLimited", "SendError"]


def make_adapter(settings: object, clock: object, *, project: object, config: object) -> Adapter:
    """Build the adapter an `[[accounts]]` entry names (imports Wechaty only when asked for)."""
    import logging

    from bot.adapters.simulated import SimulatedAdapter

    kind = getattr(settings, "adapter", "simulated")
    account = getattr(settings, "id", "default")
    if kind == "wechaty":
        from bot.adapters.wechaty import WechatyAdapter

        return WechatyAdapter.from_settings(settings, clock=clock, project=project, config=config)
    dry_run = logging.getLogger("qunbot.dry_run")
    adapter = SimulatedAdapter(account, clock,  # type: ignore[arg-type]
                               on_send=lambda m: dry_run.info("[dry run] → %s: %s", m.room_id or m.to, m.text))
    return adapter
