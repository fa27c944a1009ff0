"""Find plugins: modules in the project's `plugins/` and the `qunbot.plugins` entry points.

A plugin module must define `plugin = Plugin(...)`. Files and folders starting
with `_` are skipped. Only plugins named in `[plugins] enabled` are loaded
(`"*"` loads every one found). Import errors name the file and line.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import sys
import traceback
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot._config import ConfigError, ProjectConfig, toml_line
from bot._i18n import did_you_mean, explain_error, keys_at, unknown_key
from bot._plugin import Plugin

ENTRY_POINT_GROUP = "qunbot.plugins"


def discover(project: Path, config: ProjectConfig) -> dict[str, Path | importlib.metadata.EntryPoint]:
    """Every plugin that could be enabled: name -> source file or entry point."""
    found: dict[str, Path | importlib.metadata.EntryPoint] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[entry.name] = entry
    for folder in config.plugins.dirs:
        directory = (project / folder).resolve()
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.suffix == ".py":
                found[path.stem] = path
            elif (path / "__init__.py").exists():
                found[path.name] = path / "__init__.py"
    return found


def load_plugins(project: Path, config: ProjectConfig) -> list[Plugin]:
    """Import the enabled plugins in the configured order; raise ConfigError on any problem."""
    available = discover(project, config)
    enabled = config.plugins.enabled
    names = sorted(available) if "*" in enabled else list(dict.fromkeys(enabled))
    config_file = str(project / "qunbot.toml")
    text = (project / "qunbot.toml").read_text(encoding="utf-8") if (project / "qunbot.toml").exists() else ""
    plugins: list[Plugin] = []
    for name in names:
        source = available.get(name)
        if source is None:
            guess = did_you_mean(name, sorted(available))
            raise ConfigError(config_file, toml_line(text, ("plugins", "enabled")),
                              f"plugins.enabled: 没有叫 {name} 的插件"
                              + (f"，是不是想写 {guess}？" if guess
                                 else f"（找到的插件：{'、'.join(sorted(available))}）"))
        plugin = _load_one(name, source)
        if plugin.name != name:
            raise ConfigError(_where(source), None, f"plugin file {name!r} declares Plugin(name={plugin.name!r})")
        plugins.append(plugin)
    loaded = {p.name for p in plugins}
    for plugin in plugins:
        missing = [r for r in plugin.requires if r not in loaded]
        if missing:
            raise ConfigError(config_file, toml_line(text, ("plugins", "enabled")),
                              f"plugins.enabled: 插件 {plugin.name} 需要同时启用 {'、'.join(missing)}")
    return plugins


def _where(source: Path | importlib.metadata.EntryPoint) -> str:
    return str(source) if isinstance(source, Path) else f"entry point {source.value}"


def _load_one(name: str, source: Path | importlib.metadata.EntryPoint) -> Plugin:
    try:
        obj = source.load() if isinstance(source, importlib.metadata.EntryPoint) else _import_file(name, source)
    except SyntaxError as err:
        raise ConfigError(err.filename or _where(source), err.lineno, f"syntax error: {err.msg}") from None
    except Exception as err:
        frame = _last_frame_in(traceback.extract_tb(err.__traceback__), source)
        raise ConfigError(frame[0] if frame else _where(source), frame[1] if frame else None,
                          f"plugin {name!r} failed to import: {type(err).__name__}: {err}") from None
    plugin = obj if isinstance(obj, Plugin) else getattr(obj, "plugin", None)
    if not isinstance(plugin, Plugin):
        raise ConfigError(_where(source), None, f"plugin module {name!r} defines no `plugin = Plugin(...)`")
    return plugin


def _import_file(name: str, path: Path) -> types.ModuleType:
    """Import a plugin file under a package unique to its folder, so two projects never collide."""
    folder = path.parent.parent if path.name == "__init__.py" else path.parent
    package = "qunbot_plugins_" + hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    if package not in sys.modules:
        parent = types.ModuleType(package)
        parent.__path__ = [str(folder)]
        sys.modules[package] = parent
    module_name = f"{package}.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    is_package = path.name == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[str(path.parent)] if is_package else None)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _last_frame_in(frames: traceback.StackSummary, source: Path | importlib.metadata.EntryPoint
                   ) -> tuple[str, int | None] | None:
    root = str(source.parent) if isinstance(source, Path) else None
    for frame in reversed(frames):
        if root and frame.filename.startswith(root):
            return frame.filename, frame.lineno
    return None


def plugin_configs(project: Path, config: ProjectConfig, plugins: Iterable[Plugin]
                   ) -> dict[tuple[str, str | None], Any]:
    """Validate every plugin's settings, globally and per room override, at start.

    Keys are (plugin, None) for `[plugins.<name>]` and (plugin, room) where
    `[rooms.<room>.plugins.<name>]` overrides it.
    """
    path = project / "qunbot.toml"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    configs: dict[tuple[str, str | None], Any] = {}
    for plugin in plugins:
        base = config.plugins.settings_for(plugin.name)
        configs[(plugin.name, None)] = _validated(plugin, base, ("plugins", plugin.name), str(path), text)
        for room_id, room in config.rooms.items():
            if plugin.name in room.plugins:
                configs[(plugin.name, room_id)] = _validated(
                    plugin, {**base, **room.plugins[plugin.name]}, ("rooms", room_id, "plugins", plugin.name),
                    str(path), text)
    return configs


def _validated(plugin: Plugin, raw: dict[str, Any], where: tuple[str, ...], file: str, text: str) -> Any:
    """A plugin's settings, validated by its model. Unknown keys are typos (`cooldwn`) and fail, unless
    the model says otherwise itself (`model_config = ConfigDict(extra="allow")`)."""
    if plugin.config is None:
        if raw:
            raise ConfigError(file, toml_line(text, where), f"{'.'.join(where)}: 插件 {plugin.name} 没有设置项，"
                              "删掉这一段即可")
        return None
    if plugin.config.model_config.get("extra") is None:
        allowed = keys_at(plugin.config, ())
        for key in raw:
            if key not in allowed:
                loc = (*where, key)
                raise ConfigError(file, toml_line(text, loc), f"{'.'.join(loc)}: {unknown_key(key, allowed)}")
    try:
        return plugin.config.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = (*where, *map(str, first["loc"]))
        parent = first["loc"][:-1] if first["type"] == "extra_forbidden" else first["loc"]
        message = explain_error(first, allowed=keys_at(plugin.config, parent))
        raise ConfigError(file, toml_line(text, loc), f"{'.'.join(loc)}: {message}") from None
