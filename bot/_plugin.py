"""The plugin definition API: one `Plugin` object per module, handlers declared on it.

A plugin module creates `plugin = Plugin(name=..., config=...)` and registers
handlers with decorators. Nothing is registered globally at import time: the
loader finds the module's `plugin` and the runtime wires it in.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from bot._events import Event
from bot._migrations import Migration
from bot._rules import EVERYONE, Check, Permission, Rule
from bot.adapters._base import CAPABILITY_NAMES, Capabilities

if TYPE_CHECKING:
    from bot._context import Context

Handler = Callable[["Context"], Awaitable[None]]
ActionHandler = Callable[["Context", Any], Awaitable[None]]
TriggerKind = Literal["fullmatch", "keyword", "command", "regex", "mention", "message", "event"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """What text or event wakes a matcher; the dispatcher indexes these."""

    kind: TriggerKind
    words: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    event_types: tuple[type[Event], ...] = ()
    words_from: str | None = None
    """A field of the plugin's config whose list of words replaces `words` (configurable keywords)."""


@dataclass(eq=False)
class Matcher:
    """A trigger plus its rule, permission and priority; `@matcher.handle` adds the handler."""

    plugin: Plugin
    trigger: Trigger
    rule: Rule
    permission: Permission
    priority: int
    block: bool
    order: int
    handlers: list[Handler] = field(default_factory=list)

    def handle(self, func: Handler | None = None) -> Any:
        """Decorator, usable as `@m.handle` or `@m.handle()`."""

        def register(handler: Handler) -> Handler:
            self.handlers.append(handler)
            return handler

        return register(func) if func is not None else register

    def __repr__(self) -> str:
        return f"<Matcher {self.plugin.name}:{self.trigger.kind}{list(self.trigger.words) or ''} p={self.priority}>"


@dataclass(frozen=True, slots=True)
class Action:
    """A plugin action the SOP engine (or an admin) can start, with typed parameters."""

    name: str
    handler: ActionHandler
    params: type[BaseModel] | None


class Plugin:
    """A plugin's metadata and handlers (NoneBot2's PluginMetadata plus its matchers)."""

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        usage: str = "",
        config: type[BaseModel] | None = None,
        requires: Sequence[str] = (),
        migrations: Sequence[Migration] = (),
        needs: Iterable[str | tuple[str, ...]] = (),
    ) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"plugin name {name!r} must be lowercase letters, digits and _")
        self.name = name
        self.description = description
        self.usage = usage
        self.config = config
        self.requires = tuple(requires)
        self.migrations = tuple(migrations)
        self.needs = _needs(name, needs)
        """Capabilities the account must have for this plugin to work; a tuple is "any one of these"
        (welcome: `("reply_at_will", "welcome_by_template")`). `qunbot check` names what an account lacks."""
        self.matchers: list[Matcher] = []
        self.timers: dict[str, Handler] = {}
        self.actions: dict[str, Action] = {}
        self.startup: list[Handler] = []
        self.checks: list[Callable[[Path, Any], Iterable[str]]] = []
        self.service: Any = None
        """A public API object other plugins reach with `ctx.service(name)`."""

    def __repr__(self) -> str:
        return f"<Plugin {self.name}>"

    def unmet_needs(self, capabilities: Capabilities) -> list[tuple[str, ...]]:
        """The needs (each a tuple of alternatives) that an account with these capabilities does not meet."""
        return [need for need in self.needs if not any(capabilities.has(name) for name in need)]

    # --- matchers -----------------------------------------------------------

    def _matcher(
        self,
        trigger: Trigger,
        rule: Rule | Check | None,
        permission: Permission | None,
        priority: int,
        block: bool,
    ) -> Matcher:
        if callable(rule) and not isinstance(rule, Rule) and _takes_nothing(rule):
            name = getattr(rule, "__name__", "rule")
            raise TypeError(f"rule={name} is a rule factory: call it, rule={name}()")
        matcher = Matcher(
            plugin=self,
            trigger=trigger,
            rule=rule if isinstance(rule, Rule) else Rule() if rule is None else Rule(rule),
            permission=permission or EVERYONE,
            priority=priority,
            block=block,
            order=len(self.matchers),
        )
        self.matchers.append(matcher)
        return matcher

    def on_fullmatch(self, *words: str, rule: Rule | Check | None = None, permission: Permission | None = None,
                     priority: int = 50, block: bool = True, words_from: str | None = None) -> Matcher:
        """The whole message (bot mention and spaces removed) is one of `words`."""
        trigger = Trigger("fullmatch", _words(words), words_from=words_from)
        return self._matcher(trigger, rule, permission, priority, block)

    def on_keyword(self, *words: str, rule: Rule | Check | None = None, permission: Permission | None = None,
                   priority: int = 50, block: bool = True, words_from: str | None = None) -> Matcher:
        """The message contains one of `words`."""
        trigger = Trigger("keyword", _words(words), words_from=words_from)
        return self._matcher(trigger, rule, permission, priority, block)

    def on_command(self, *names: str, rule: Rule | Check | None = None, permission: Permission | None = None,
                   priority: int = 50, block: bool = True, words_from: str | None = None) -> Matcher:
        """The message starts with one of `names`; the rest is `ctx.args` (`兑换 口红`, `兑换口红`)."""
        trigger = Trigger("command", _words(names), words_from=words_from)
        return self._matcher(trigger, rule, permission, priority, block)

    def on_regex(self, pattern: str, flags: int = 0, *, rule: Rule | Check | None = None,
                 permission: Permission | None = None, priority: int = 50, block: bool = True) -> Matcher:
        """`re.search` finds the pattern; the match is `ctx.match`."""
        return self._matcher(Trigger("regex", pattern=re.compile(pattern, flags)), rule, permission, priority, block)

    def on_mention(self, *, rule: Rule | Check | None = None, permission: Permission | None = None,
                   priority: int = 90, block: bool = True) -> Matcher:
        """The message @-mentions the bot (a fallback answer when nothing else matched)."""
        return self._matcher(Trigger("mention"), rule, permission, priority, block)

    def on_message(self, *, rule: Rule | Check | None = None, permission: Permission | None = None,
                   priority: int = 50, block: bool = False) -> Matcher:
        """Every room or direct message (keep the rule cheap: it runs for all chatter)."""
        return self._matcher(Trigger("message"), rule, permission, priority, block)

    def on_event(self, *event_types: type[Event], rule: Rule | Check | None = None,
                 permission: Permission | None = None, priority: int = 50, block: bool = False) -> Matcher:
        """Notice events: `MembersJoined`, `MembersLeft`, `MemberRenamed`, `RoomTopicChanged`."""
        if not event_types:
            raise ValueError("on_event needs at least one event type")
        return self._matcher(Trigger("event", event_types=tuple(event_types)), rule, permission, priority, block)

    # --- timers, actions, start-up --------------------------------------------

    def timer(self, name: str) -> Callable[[Handler], Handler]:
        """Register the handler a durable timer set with `ctx.schedule(name, ...)` calls."""

        def register(handler: Handler) -> Handler:
            self.timers[name] = handler
            return handler

        return register

    def action(self, name: str, *, params: type[BaseModel] | None = None) -> Callable[[ActionHandler], ActionHandler]:
        """Register an action an SOP step can start (`action: {plugin: x, name: y, params: {...}}`).

        `params` validates the step's parameters when the SOP file is checked.
        """

        def register(handler: ActionHandler) -> ActionHandler:
            self.actions[name] = Action(name, handler, params)
            return handler

        return register

    def on_check(self, check: Callable[[Path, Any], Iterable[str]]) -> Callable[[Path, Any], Iterable[str]]:
        """Validate the plugin's own files in `qunbot check`: `check(project, config)` yields
        problems as "file:line: what is wrong"."""
        self.checks.append(check)
        return check

    def on_startup(self, handler: Handler) -> Handler:
        """Run once per account when the bot starts (re-arm state, warm caches)."""
        self.startup.append(handler)
        return handler


def _words(words: Sequence[str]) -> tuple[str, ...]:
    cleaned = tuple(w.strip() for w in words if w and w.strip())
    if not cleaned:
        raise ValueError("give at least one non-empty word")
    return cleaned


def _takes_nothing(function: Callable[..., Any]) -> bool:
    """A rule factory such as `is_room_message` (called without `()` by mistake) takes no argument."""
    try:
        return not inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _needs(plugin: str, needs: Iterable[str | tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    out = []
    for need in needs:
        options = (need,) if isinstance(need, str) else tuple(need)
        unknown = [name for name in options if name not in CAPABILITY_NAMES]
        if unknown or not options:
            raise ValueError(f"plugin {plugin}: needs {', '.join(unknown) or '()'} is not a capability "
                             f"(known: {', '.join(CAPABILITY_NAMES)})")
        out.append(options)
    return tuple(sorted(out))
