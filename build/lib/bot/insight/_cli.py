"""`qunbot export` and `qunbot member forget` (added to the main CLI in bot/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from bot._cli_support import config_or_exit, project_of
from bot._db import make_engine


def _engine(ctx: click.Context, db_url: str | None):  # type: ignore[no-untyped-def]
    import bot.insight  # noqa: F401  (the insight tables)
    from bot._migrations import upgrade

    project = project_of(ctx)
    config = config_or_exit(project)
    engine = make_engine(db_url or config.database.url, base_dir=project)
    upgrade(engine, {})
    return config, engine


@click.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("export"),
              show_default=True, help="Folder for the CSV files.")
@click.option("--db", "db_url", help="Database URL (default: [database] url in qunbot.toml).")
@click.pass_context
def export(ctx: click.Context, out: Path, db_url: str | None) -> None:
    """Write members, the points ledger, lottery draws and polls as CSV (UTF-8, opens in Excel)."""
    from bot.insight._export import export_csv

    config, engine = _engine(ctx, db_url)
    try:
        with Session(engine) as session:
            written = export_csv(session, out, config.bot.tz)
    except (SQLAlchemyError, OSError) as err:
        click.echo(f"error: export failed: {type(err).__name__}: {str(err).splitlines()[0]}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    for name, rows in written.items():
        click.echo(f"{out / name}: {rows} rows")


@click.group()
def member() -> None:
    """Members' personal data."""


@member.command("forget")
@click.argument("member_id")
@click.option("--db", "db_url", help="Database URL (default: [database] url in qunbot.toml).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def forget(ctx: click.Context, member_id: str, db_url: str | None, yes: bool) -> None:
    """Erase MEMBER_ID's personal data (names, tags, purchases); ledger totals stay, under a pseudonym.

    Run it while the bot is stopped (or restart the bot after it): a running bot keeps names in memory."""
    from bot.insight._forget import forget_member

    if not yes:
        click.confirm(f"Erase the personal data of {member_id}? This cannot be undone", abort=True)
    _, engine = _engine(ctx, db_url)
    try:
        report = forget_member(engine, member_id)
    except SQLAlchemyError as err:
        click.echo(f"error: nothing was changed: {type(err).__name__}: {str(err).splitlines()[0]}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    if not report.found:
        click.echo(f"error: no member {member_id} in this database; nothing changed", err=True)
        sys.exit(1)
    click.echo(f"forgot {member_id}: now {report.pseudonym}")
    for table, rows in sorted(report.changed.items()):
        click.echo(f"  {table}: {rows} row(s)")
