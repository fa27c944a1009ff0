"""A bundled plugin's submodule as the plugin loader imported it (importing `plugins.x` directly would define
the plugin's tables a second time in the shared metadata)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from bot._config import parse_config
from bot._loader import load_plugins

REPO = Path(__file__).resolve().parent.parent


def plugin_module(plugin: str, submodule: str) -> ModuleType:
    loaded = load_plugins(REPO, parse_config({"plugins": {"enabled": ["points", plugin]}}))
    wanted = next(p for p in loaded if p.name == plugin)
    module = next(m.handlers[0].__module__ for m in wanted.matchers)
    return importlib.import_module(f"{module}.{submodule}")
