"""`qunbot check`: everything an admin or operator can get wrong, reported as `file:line: problem`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from bot._config import ConfigError, ProjectConfig, load_config
from bot._i18n import template_text
from bot._loader import load_plugins, plugin_configs
from bot._templates import Renderer, TemplateError

ProjectCheck = Callable[[Path, ProjectConfig, Renderer], Iterable[str]]
_checks: list[ProjectCheck] = []


def register_check(check: ProjectCheck) -> None:
    """Add a project-wide check (the SOP engine registers its file checks here)."""
    if check not in _checks:
        _checks.append(check)


def run_checks(project: Path) -> list[str]:
    try:
        config = load_config(project)
        plugins = load_plugins(project, config)
        configs = plugin_configs(project, config, plugins)
    except ConfigError as err:
        return [str(err)]
    problems: list[str] = []
    templates_dir = project / config.templates_dir
    renderer = Renderer([templates_dir], timezone=config.bot.tz, globals={"bot_name": config.bot.name})
    for name in renderer.list_templates():
        try:
            renderer.check(name)
        except TemplateError as err:
            problems.append(template_text(err))
    for plugin in plugins:
        for check in plugin.checks:
            try:
                problems.extend(check(project, configs.get((plugin.name, None))))
            except Exception as err:  # a plugin's check must not hide the others
                problems.append(f"plugin {plugin.name}: check failed: {type(err).__name__}: {err}")
    for check in _checks:
        problems.extend(check(project, config, renderer))
    return problems
import bot.sop  # noqa: E402, F401  (adds the SOP file checks; it imports this module)
