"""`qunbot dashboard` and `qunbot run --dashboard` (added to the main CLI in bot/cli.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import click

from bot._cli_support import project_of
from bot._config import ConfigError, load_config


@click.command()
@click.option("--host", help="Interface to listen on (default: [dashboard] host, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: [dashboard] port, 8470).")
@click.option("--db", "db_url", help="Database URL (default: [database] url in qunbot.toml).")
@click.option("--now", "now_text", help="Show the data as of this time, ISO 8601 (for looking back, and for tests).")
@click.pass_context
def dashboard(ctx: click.Context, host: str | None, port: int | None, db_url: str | None,
              now_text: str | None) -> None:
    """Serve the read-only operator dashboard on this machine; log in with the password from the environment."""
    from bot.dashboard import DashboardError, build_app, server

    project = project_of(ctx)
    try:
        config = load_config(project)
        now = None
        if now_text:
            fixed = datetime.fromisoformat(now_text)
            fixed = fixed if fixed.tzinfo else fixed.replace(tzinfo=config.bot.tz)
            now = lambda: fixed  # noqa: E731
        app = build_app(project, config, db_url=db_url, now=now)
    except (ConfigError, DashboardError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    host = host or config.dashboard.host
    port = port or config.dashboard.port
    click.echo(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    server(app, host, port).run()


async def run_with_dashboard(project: Path, bot: Callable[[], Awaitable[None]]) -> None:
    """Run the bot with the dashboard served beside it in the same process; the bot owns Ctrl-C."""
    from bot.dashboard import build_app, server

    config = load_config(project)
    srv = server(build_app(project, config), config.dashboard.host, config.dashboard.port, own_signals=False)
    task = asyncio.get_running_loop().create_task(srv.serve(), name="dashboard")
    try:
        await bot()
    finally:
        srv.should_exit = True
        await task
