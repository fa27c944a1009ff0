"""What the command groups added to the main CLI share: the project folder and its validated config."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot._config import ConfigError, ProjectConfig, load_config


def project_of(ctx: click.Context) -> Path:
    """The `--project` folder given to `qunbot` (the current folder when a group is run on its own)."""
    obj = ctx.find_root().obj
    return obj.project if obj is not None else Path(".").resolve()


def config_or_exit(project: Path) -> ProjectConfig:
    """`qunbot.toml`, validated; a problem is printed as `error: file:line: …` and ends the command (exit 1)."""
    try:
        return load_config(project)
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
