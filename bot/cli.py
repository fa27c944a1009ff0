"""The `qunbot` command: what operators and admins run. Errors print one line and exit non-zero."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bot._config import ConfigError, load_config
from bot._logging import setup_logging

log = logging.getLogger("qunbot")


class _Obj:
    def __init__(self, project: Path) -> None:
        self.project = project


def _project_after_verb(command: Callable[..., Any]) -> Callable[..., Any]:
    """`qunbot chat --project DIR` as well as `qunbot --project DIR chat` (docs/simulate.md writes it so)."""
    return click.option("--project", "-p", "project", type=click.Path(file_okay=False, path_type=Path),
                        help="Bot project folder (may also be given before the command).")(command)


def _project(obj: _Obj, project: Path | None) -> Path:
    return project.resolve() if project is not None else obj.project


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", "-p", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Bot project folder (qunbot.toml, sop/, scripts_templates/, plugins/, data/).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log-json", is_flag=True, help="Structured logs: one JSON object per line on stderr.")
@click.pass_context
def main(ctx: click.Context, project: Path, log_level: str, log_json: bool) -> None:
    """qunbot — run WeChat community groups by SOP, with plugins."""
    setup_logging(log_level, json_format=log_json)
    ctx.obj = _Obj(project.resolve())


@main.command()
@_project_after_verb
@click.option("--db", "db_url", help="Database URL (default: a fresh temporary SQLite file).")
@click.pass_obj
def chat(obj: _Obj, project: Path | None, db_url: str | None) -> None:
    """Talk to the bot in a simulated group — no WeChat account needed."""
    from bot._chat import run_chat

    logging.getLogger().setLevel(logging.WARNING)
    try:
        asyncio.run(run_chat(_project(obj, project), db_url=db_url))
    except ConfigError as err:
        _fail(str(err))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a working project in DIRECTORY: config, sample SOP, templates, built-in plugins, data/."""
    from bot._init import InitError, init_project

    try:
        made = init_project(directory)
    except InitError as err:
        _fail(str(err))
    click.echo(f"created {directory}: {', '.join(made)}")
    click.echo(f"项目已创建。试试：qunbot chat --project {directory}；改完配置或 SOP 后检查："
               f"qunbot check --project {directory}")


@main.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_project_after_verb
@click.option("--db", "db_url", help="Database URL (default: a fresh temporary SQLite file).")
@click.pass_obj
def simulate(obj: _Obj, scenario: Path, project: Path | None, db_url: str | None) -> None:
    """Run SCENARIO.yaml on a virtual clock; print what the bot sends as JSON Lines."""
    from bot._scenario import ScenarioError
    from bot._simulate import run_scenario
    from bot._templates import TemplateError

    try:
        asyncio.run(run_scenario(scenario, _project(obj, project), db_url=db_url))
    except (ConfigError, ScenarioError, TemplateError) as err:
        _fail(str(err))


@main.command()
@_project_after_verb
@click.pass_obj
def check(obj: _Obj, project: Path | None) -> None:
    """Validate config, plugins, templates (and SOP files): file:line errors, non-zero exit."""
    from bot._checks import run_checks

    problems = run_checks(_project(obj, project))
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        _fail(f"{len(problems)} problem(s) found / 检查未通过：{len(problems)} 个问题，按上面的 文件:行号 改好后"
              "再运行 qunbot check", 1)
    click.echo("ok: config, plugins and templates are valid / 检查通过：配置、插件、模板和 SOP 文件都没问题")


@main.group()
def lottery() -> None:
    """Lottery draws of the lottery plugin."""


@lottery.command("verify")
@click.argument("draw_id", type=int)
@click.option("--db", "db_url", help="Database URL (default: [database] url in qunbot.toml).")
@click.option("--posted", "posted_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The draw's posts as copied from the chat (UTF-8 text), instead of the bot's own record of them.")
@click.pass_obj
def lottery_verify(obj: _Obj, draw_id: int, db_url: str | None, posted_file: Path | None) -> None:
    """Recompute draw DRAW_ID and hold it against what the room saw; exit 1 on any mismatch."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from bot._context import validate_config
    from bot._db import make_engine
    from bot._loader import load_plugins

    try:
        config = load_config(obj.project)
        plugins = {p.name: p for p in load_plugins(obj.project, config)}
    except ConfigError as err:
        _fail(str(err))
    if "lottery" not in plugins:
        _fail("the lottery plugin is not enabled in qunbot.toml")
    try:
        settings = validate_config(plugins["lottery"].config, config.plugins.settings_for("lottery"))
    except ValueError as err:
        _fail(f"[plugins.lottery] in qunbot.toml: {err}")
    engine = make_engine(db_url or config.database.url, base_dir=obj.project)
    try:
        with Session(engine) as session:
            posted = [posted_file.read_text(encoding="utf-8")] if posted_file else None
            result = plugins["lottery"].service.verify(session, draw_id, posted=posted, beacon=settings.beacon)
    except SQLAlchemyError as err:
        _fail(f"cannot read the lottery history: {type(err).__name__}: {str(err).splitlines()[0]}")
    finally:
        engine.dispose()
    for line in result.report():
        click.echo(line)
    if not result.ok:
        sys.exit(1)


@main.group()
def faq() -> None:
    """Questions and answers of the faq plugin (data/faq.yaml)."""


@faq.command("test")
@click.argument("question")
@click.option("--room", "topic", default="", help="Answer as in a room with this topic (entries limited by rooms:).")
@click.pass_obj
def faq_test(obj: _Obj, question: str, topic: str) -> None:
    """Which entry would answer QUESTION, with what score; the runner-up entries too."""
    from bot._loader import load_plugins, plugin_configs

    try:
        config = load_config(obj.project)
        plugins = {p.name: p for p in load_plugins(obj.project, config)}
        if "faq" not in plugins:
            _fail("faq 插件没有启用（qunbot.toml 的 [plugins] enabled）")
        settings = plugin_configs(obj.project, config, [plugins["faq"]])[("faq", None)]
    except ConfigError as err:
        _fail(str(err))
    for line in plugins["faq"].service.explain(obj.project, settings, question, topic=topic):
        click.echo(line)


@main.command()
@click.option("--account", help="Only this account id (default: every account in qunbot.toml).")
@click.option("--login-timeout", default=20.0, show_default=True, help="Seconds to wait for the account's login.")
@click.pass_obj
def doctor(obj: _Obj, account: str | None, login_timeout: float) -> None:
    """Connect each account once: endpoint, token, login, rooms — and say plainly what is wrong."""
    from bot._doctor import run_doctor
    from bot.adapters import AdapterError

    try:
        lines, ok = run_doctor(obj.project, account=account, login_timeout=login_timeout)
    except (ConfigError, AdapterError) as err:
        _fail(str(err))
    for line in lines:
        click.echo(line)
    if not ok:
        sys.exit(1)


@main.command()
@click.option("--dashboard", "with_dashboard", is_flag=True,
              help="Also serve the operator dashboard (docs/dashboard.md).")
@click.option("--drain", metavar="NODE",
              help="Do not run: ask the running processes whose name starts with NODE (host name, host/pid) to "
                   "hand their accounts to the others and stop, and wait until they have (docs/scaling.md).")
@click.pass_obj
def run(obj: _Obj, with_dashboard: bool, drain: str | None) -> None:
    """Run the bot for every account in qunbot.toml until stopped (Ctrl-C / SIGTERM; SIGUSR1 drains)."""
    from bot.dashboard import DashboardError
    from bot.dashboard._cli import run_with_dashboard

    if drain is not None:
        _drain(obj.project, drain)
        return
    try:
        if with_dashboard:
            asyncio.run(run_with_dashboard(obj.project, lambda: _run_forever(obj.project)))
        else:
            asyncio.run(_run_forever(obj.project))
    except (ConfigError, DashboardError) as err:
        _fail(str(err))
    except Exception as err:
        from bot.adapters import AdapterError

        if isinstance(err, AdapterError):
            _fail(str(err), 2)
        raise


async def _run_forever(project: Path) -> None:
    from bot._clock import RealClock
    from bot._runtime import Runtime
    from bot._serve import Node
    from bot.adapters import make_adapter

    config = load_config(project)
    clock = RealClock(config.bot.tz)
    adapters = {a.id: make_adapter(a, clock, project=project, config=config) for a in config.accounts}
    node = Node(Runtime(project, config, clock=clock, adapters=adapters))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, node.drain)
    await node.start()
    log.info("running; press Ctrl-C to stop")
    try:
        await node.serve(stop)
    finally:
        log.info("stopping")
        await node.stop()
        await clock.aclose()


def _drain(project: Path, prefix: str) -> None:
    import time

    from sqlalchemy.exc import SQLAlchemyError

    from bot._balance import live_nodes, request_drain
    from bot._db import make_engine

    try:
        config = load_config(project)
        engine = make_engine(config.database.url, base_dir=project)
        names = request_drain(engine, prefix)
    except ConfigError as err:
        _fail(str(err))
    except SQLAlchemyError as err:
        _fail(f"cannot reach the database: {str(err).splitlines()[0]}")
    if not names:
        _fail(f"no running process whose name starts with {prefix!r} (see core_cluster_node)")
    click.echo(f"draining {', '.join(names)}; waiting until they have handed their accounts over and stopped")
    deadline = time.monotonic() + max(120.0, 4 * config.cluster.lease_ttl)
    while remaining := sorted(set(names) & set(live_nodes(engine))):
        if time.monotonic() > deadline:
            _fail(f"still running after the wait: {', '.join(remaining)} (see its log)")
        time.sleep(0.5)
    click.echo("drained: " + ", ".join(names))


from bot.sop._cli import sop as _sop_commands  # noqa: E402  (the `qunbot sop` group lives with the engine)

main.add_command(_sop_commands)

from bot.dashboard._cli import dashboard as _dashboard_command  # noqa: E402
from bot.insight._cli import export as _export_command  # noqa: E402
from bot.insight._cli import member as _member_commands  # noqa: E402

main.add_command(_dashboard_command)
main.add_command(_export_command)
main.add_command(_member_commands)


if __name__ == "__main__":  # pragma: no cover
    main()
