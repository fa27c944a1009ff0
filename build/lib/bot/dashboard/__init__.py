"""The operator dashboard: `qunbot dashboard` (or `qunbot run --dashboard`), read-only pages behind a login.

See docs/dashboard.md. Starlette serves server-rendered jinja2 pages; charts are drawn by the Chart.js
file bundled in `static/` (works offline).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from starlette.applications import Starlette

from bot._clock import RealClock
from bot._config import ProjectConfig
from bot._db import make_engine
from bot._loader import load_plugins
from bot.dashboard._app import Dashboard, create_app


class DashboardError(Exception):
    """The dashboard cannot start (no password configured); the message says what to set."""


def build_app(project: Path, config: ProjectConfig, *, db_url: str | None = None,
              now: Callable[[], datetime] | None = None, environ: dict[str, str] | None = None) -> Starlette:
    """The app for this project; the password (and purchase token) come from the environment variables
    the config names."""
    import bot.insight  # noqa: F401  (insight tables and engine)

    environ = dict(os.environ if environ is None else environ)
    settings = config.dashboard
    password = environ.get(settings.password_env, "")
    if not password:
        raise DashboardError(f"set {settings.password_env} to the dashboard password: it never runs without a login "
                             f"([dashboard] password_env in qunbot.toml names the variable)")
    token_env = config.plugins.settings_for("insight").get("purchase_token_env", "QUNBOT_PURCHASE_TOKEN")
    plugins = {p.name: p for p in load_plugins(project, config)}
    engine = make_engine(db_url or config.database.url, base_dir=project)
    from bot._migrations import upgrade

    upgrade(engine, {})  # the tables exist even before the bot first ran
    dash = Dashboard(project, config, engine, plugins, now or RealClock(config.bot.tz).now)
    return create_app(dash, password=password, purchase_token=environ.get(token_env) or None,
                      session_hours=settings.session_hours)


@contextlib.contextmanager
def _no_signal_capture() -> Iterator[None]:
    yield


def server(app: Starlette, host: str, port: int, *, own_signals: bool = True):  # type: ignore[no-untyped-def]
    """A uvicorn server; inside `qunbot run` (own_signals=False) the bot keeps Ctrl-C for itself."""
    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                        lifespan="off"))
    if not own_signals:
        srv.capture_signals = _no_signal_capture  # type: ignore[method-assign]
    return srv


__all__ = ["DashboardError", "build_app", "server"]
