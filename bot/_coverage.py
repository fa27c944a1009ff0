"""Which enabled plugins each account cannot serve, and why, in the admin's words.

`qunbot check` reports it as problems and `qunbot run` logs it at start. The question is always "can this
account read room messages?", never "is this WeCom?": plugins declare `needs`, adapters declare capabilities.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot._config import ProjectConfig
from bot._plugin import Plugin
from bot.adapters._base import CANNOT, NEEDS, Capabilities


@dataclass(frozen=True, slots=True)
class KnownRoom:
    """A room as far as it is known: from `[rooms.<id>]` (checks) or from the synced rooms (run)."""

    id: str
    account: str | None
    tags: tuple[str, ...] = ()
    topic: str | None = None


def configured_rooms(config: ProjectConfig) -> list[KnownRoom]:
    """The rooms `qunbot.toml` names, with the account serving each where that is known."""
    return [KnownRoom(room_id, config.room_account(room_id), settings.tags)
            for room_id, settings in config.rooms.items()]


def plugin_label(plugin: Plugin) -> str:
    """`签到积分（points）`: the Chinese name from the description, with the name the admin enables."""
    short = plugin.description.split("：")[0].split(":")[0].strip()
    return f"{short}（{plugin.name}）" if short and short != plugin.name else plugin.name


def need_text(need: tuple[str, ...]) -> str:
    """`能读群消息的账号`, or for alternatives `能随时在群里发消息或有入群欢迎语模板的账号`."""
    return "或".join(NEEDS[name].removesuffix("的账号") for name in need) + "的账号"


def lack_sentence(capabilities: Capabilities, need: tuple[str, ...], who: Iterable[str]) -> str:
    """企业微信官方接口读不到群消息，签到积分（points）、答题（quiz）需要能读群消息的账号。"""
    return f"{capabilities.subject}{CANNOT[need[0]]}，{'、'.join(who)}需要{need_text(need)}。"


def plugin_findings(config: ProjectConfig, plugins: Sequence[Plugin], capabilities: Mapping[str, Capabilities],
                    rooms: Sequence[KnownRoom]) -> dict[str, list[str]]:
    """Per account, one sentence per missing capability naming the plugins that need it.

    A plugin switched off (`plugins_disabled`) in every known room of the account is not counted there.
    """
    findings: dict[str, list[str]] = {}
    for account, caps in capabilities.items():
        own = [room for room in rooms if room.account == account]
        by_need: dict[tuple[str, ...], list[str]] = {}
        for plugin in plugins:
            if own and all(plugin.name in config.room(room.id).plugins_disabled for room in own):
                continue
            for need in plugin.unmet_needs(caps):
                by_need.setdefault(need, []).append(plugin_label(plugin))
        sentences = [lack_sentence(caps, need, names) for need, names in sorted(by_need.items())]
        if sentences:
            findings[account] = sentences
    return findings


FIX_HINT = ("（在 [plugins] enabled 里去掉这些插件，或在这个账号的群的 plugins_disabled 里关掉，"
            "或让这些群由能做到的账号来管）")
