"""The runtime's internal import graph: the dispatcher and the context know the runtime only through Protocols."""

from __future__ import annotations

import ast
from pathlib import Path

from bot import Plugin
from bot._events import MemberRef, RoomMessage
from bot.testing import BotHarness

BOT = Path(__file__).resolve().parent.parent / "bot"


def imported(module: str) -> set[str]:
    """Every `bot` module a module imports, anywhere in it (`if TYPE_CHECKING:` blocks and functions too)."""
    tree = ast.parse((BOT / f"{module.removeprefix('bot.')}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import _runtime`, `from ._runtime import Runtime`
                base = ".".join(["bot", *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from bot import _runtime`
    return names


def protocol_members(protocol: type) -> set[str]:
    """The attributes and methods a Protocol declares (its own and its protocol bases')."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base is object or not getattr(base, "_is_protocol", False):
            continue
        names.update(vars(base).get("__annotations__", {}))
        names.update(name for name, value in vars(base).items()
                     if not name.startswith("__") and (callable(value) or isinstance(value, property)))
    return names


def test_the_dispatcher_imports_neither_the_context_nor_the_runtime():
    assert sorted(imported("bot._dispatch") & {"bot._context", "bot._runtime"}) == []


def test_the_context_does_not_import_the_runtime():
    assert "bot._runtime" not in imported("bot._context")


def test_the_import_check_sees_imports_under_type_checking():
    assert "bot._runtime" in imported("bot._retention")  # imported there only under `if TYPE_CHECKING:`


async def test_a_runtime_has_everything_the_dispatcher_and_the_context_ask_of_it(project):
    from bot._context import Context, ContextHost
    from bot._dispatch import DispatchHost, HandlerContext

    assert {"dispatcher", "plugin_enabled", "command_limit", "redelivery", "clock", "after_commit",
            "new_context"} <= protocol_members(DispatchHost)
    assert {"members", "outbox", "new_session", "plugin_config", "tasks"} <= protocol_members(ContextHost)
    assert {"_begin", "_finish", "_release", "_sends", "event"} <= protocol_members(HandlerContext)
    plugin = Plugin("probe")
    async with BotHarness(project, plugins=[plugin]) as bot:
        runtime = bot.runtime
        for protocol in (DispatchHost, ContextHost):
            missing = sorted(name for name in protocol_members(protocol) if not hasattr(runtime, name))
            assert not missing, f"Runtime lacks {protocol.__name__} members {missing}"
        event = RoomMessage(account=bot.sim.account, id="m1", time=bot.now, room_id="g1",
                            sender=MemberRef("u1", "Alice"), text="hi")
        ctx = runtime.new_context(plugin, event, room_id="g1", member_id="u1", text="hi", args="x")
        assert type(ctx) is Context
        assert (ctx.plugin, ctx.event, ctx.room_id, ctx.member_id, ctx.text, ctx.args) == (
            plugin, event, "g1", "u1", "hi", "x")
        missing = sorted(name for name in protocol_members(HandlerContext) if not hasattr(ctx, name))
        assert not missing, f"Context lacks HandlerContext members {missing}"
