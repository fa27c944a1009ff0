"""What each kind of account can do, known without connecting: for `qunbot check`, `sop check` and emulation.

A real adapter declares its own `capabilities` (per instance when the service behind it decides); these
profiles are the same declarations made statically, so a project can be checked, and simulated
(`emulate = "wecom"`), before any account is connected. docs/adapters.md has the table and its sources.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.adapters._base import Capabilities, RoomQuota

if TYPE_CHECKING:
    from bot._config import AccountSettings

PROFILES: dict[str, Capabilities] = {
    "wechaty": Capabilities(label="Wechaty 账号"),
    # WorkPro (a WeCom puppet) reads and writes like a person in the WeCom app (its docs list sending files,
    # removing members and renaming rooms); qunbot speaks the 1.x service line it runs (docs/wechaty.md).
    "workpro": Capabilities(label="企业微信 WorkPro（Wechaty）"),
    # The official API: customer-group posts are group-message tasks the owner confirms in the WeCom app,
    # each group gets at most as many a month as the month has days, 2,000 groups per task; room messages
    # never reach the API (only the paid 会话内容存档, which qunbot does not use); no removal, no renaming.
    "wecom": Capabilities(read_room_messages=False, reply_at_will=False, mention=False, send_files=True,
                          remove_members=False, set_topic=False, direct_messages=False,
                          posts_need_confirmation=True, welcome_by_template=True,
                          room_quota=RoomQuota("month", None), max_rooms_per_post=2000,
                          label="企业微信官方接口"),
}
"""Declared capabilities by adapter name (and by `emulate` name for simulated accounts)."""

SIMULATED = Capabilities(label="模拟账号")


def account_capabilities(settings: AccountSettings, declared: Capabilities | None = None) -> Capabilities:
    """An account's capabilities: what its adapter declares (or the profile of its kind) plus `qunbot.toml`.

    `emulate` makes a simulated account behave like another kind; `room_quota` and `max_rooms_per_post`
    in the account's table replace the declared ones (the WeCom console offers monthly, weekly, daily).
    """
    if settings.emulate is not None:
        base = PROFILES[settings.emulate]
    elif declared is not None:
        base = declared if declared.label else replace(declared, label=_label(settings.adapter))
    else:
        base = PROFILES.get(settings.adapter, SIMULATED)
    changes: dict[str, object] = {}
    if settings.room_quota is not None:
        quota = settings.room_quota
        changes["room_quota"] = None if quota.per == "none" else RoomQuota(quota.per, quota.limit)
    if settings.max_rooms_per_post is not None:
        changes["max_rooms_per_post"] = settings.max_rooms_per_post
    return replace(base, **changes) if changes else base  # type: ignore[arg-type]


def _label(adapter: str) -> str:
    profile = PROFILES.get(adapter)
    return profile.label if profile is not None else SIMULATED.label
