"""Rules decide *whether a handler applies*; permissions decide *who may trigger it*.

Both are small checks on the handler context. Rules combine with `&` (all must
hold), permissions with `|` (any suffices), after NoneBot2's rule/permission.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot._events import DirectMessage, RoomMessage

if TYPE_CHECKING:
    from bot._context import Context

Check = Callable[["Context"], bool | Awaitable[bool]]


async def _holds(check: Check, ctx: Context) -> bool:
    result = check(ctx)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


class Rule:
    """All checks must hold. `Rule()` always holds."""

    __slots__ = ("checks",)

    def __init__(self, *checks: Check | Rule) -> None:
        flat: list[Check] = []
        for check in checks:
            flat.extend(check.checks if isinstance(check, Rule) else (check,))
        self.checks: tuple[Check, ...] = tuple(flat)

    def __and__(self, other: Check | Rule | None) -> Rule:
        return self if other is None else Rule(self, other)

    def __rand__(self, other: Check | Rule | None) -> Rule:
        return self if other is None else Rule(other, self)

    async def __call__(self, ctx: Context) -> bool:
        for check in self.checks:
            if not await _holds(check, ctx):
                return False
        return True


class Permission:
    """Any check suffices. `Permission()` (no checks) lets everyone through."""

    __slots__ = ("checks",)

    def __init__(self, *checks: Check | Permission) -> None:
        flat: list[Check] = []
        for check in checks:
            flat.extend(check.checks if isinstance(check, Permission) else (check,))
        self.checks: tuple[Check, ...] = tuple(flat)

    def __or__(self, other: Check | Permission | None) -> Permission:
        return self if other is None else Permission(self, other)

    def __ror__(self, other: Check | Permission | None) -> Permission:
        return self if other is None else Permission(other, self)

    async def __call__(self, ctx: Context) -> bool:
        if not self.checks:
            return True
        for check in self.checks:
            if await _holds(check, ctx):
                return True
        return False


# --- rules -----------------------------------------------------------------


def to_me() -> Rule:
    """The message @-mentions the bot, or is a direct message to it."""
    return Rule(lambda ctx: isinstance(ctx.event, DirectMessage) or getattr(ctx.event, "mentions_bot", False))


def in_room(*room_ids: str) -> Rule:
    allowed = frozenset(room_ids)
    return Rule(lambda ctx: ctx.room_id in allowed)


def is_room_message() -> Rule:
    return Rule(lambda ctx: isinstance(ctx.event, RoomMessage))


def is_direct_message() -> Rule:
    return Rule(lambda ctx: isinstance(ctx.event, DirectMessage))


# --- permissions -------------------------------------------------------------


EVERYONE = Permission()
"""Any member."""

OPERATOR = Permission(lambda ctx: ctx.is_operator())
"""Bot operators listed in `[bot] operators` of qunbot.toml, in every room."""

ROOM_ADMIN = Permission(lambda ctx: ctx.is_room_admin()) | OPERATOR
"""The room's owner and admins (from WeChat or `[rooms.<id>] admins`), and operators."""
