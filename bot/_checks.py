"""`qunbot check`: everything an admin or operator can get wrong, reported as `file:line: problem`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from bot._config import CONFIG_FILE, ConfigError, ProjectConfig, load_config, toml_line
from bot._coverage import FIX_HINT, configured_rooms, plugin_findings
from bot._i18n import template_text
from bot._loader import load_plugins, plugin_configs
from bot._plugin import Plugin
from bot._sandbox import render_budget
from bot._templates import Renderer, TemplateError
from bot.adapters._profiles import account_capabilities

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
    renderer = Renderer([templates_dir], timezone=config.bot.tz, globals={"bot_name": config.bot.name},
                        budget=render_budget(config.limits))
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
    problems += account_problems(project, config, plugins)
    for check in _checks:
        problems.extend(check(project, config, renderer))
    return problems


def account_problems(project: Path, config: ProjectConfig, plugins: list[Plugin]) -> list[str]:
    """Enabled plugins an account cannot serve, as `qunbot.toml:line: 账号 x：…`."""
    path = project / CONFIG_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    line = toml_line(text, ("plugins", "enabled"))
    where = f"{path}:{line}" if line else str(path)
    capabilities = {account.id: account_capabilities(account) for account in config.accounts}
    findings = plugin_findings(config, plugins, capabilities, configured_rooms(config))
    return [f"{where}: 账号 {account}：{sentence}{FIX_HINT}"
            for account, sentences in findings.items() for sentence in sentences]
import bot.sop  # noqa: E402, F401  (adds the SOP file checks; it imports this module)
