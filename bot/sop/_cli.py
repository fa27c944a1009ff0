"""`qunbot sop …`: check SOP files and preview their timeline (added to the main CLI in bot/cli.py)."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from bot._cli_support import config_or_exit, project_of
from bot._clock import RealClock
from bot._runtime import DEFAULT_TEMPLATES
from bot._sandbox import render_budget
from bot._templates import Renderer


@click.group()
def sop() -> None:
    """SOP files (sop/*.yaml): check them, preview what they will post."""


@sop.command("check")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate every SOP file, its templates, actions and the long-term group rule."""
    from bot.sop._check import load_project

    project = project_of(ctx)
    config = config_or_exit(project)
    loaded, problems = load_project(project, config)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        click.echo(f"error: {len(problems)} problem(s) found / SOP 检查未通过：{len(problems)} 个问题，"
                   "按上面的 文件:行号 改好后再运行 qunbot sop check", err=True)
        sys.exit(1)
    names = "、".join(f"{name}（{item.sop.name}）" if item.sop.name else name for name, item in loaded.items())
    click.echo(f"ok: {len(loaded)} SOP file(s) valid: {', '.join(loaded) or '(none)'}")
    click.echo(f"SOP 检查通过：{len(loaded)} 个文件 {names or '（sop/ 里没有文件）'}，用到的模板、插件动作、"
               "长期群营销比例和群发配额都没问题。看时间线：qunbot sop preview --days 7")


@sop.command("preview")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 366), help="How many days to show.")
@click.option("--room", help="Only what this room gets: a room id (rooms:, tags) or a room topic (topics:).")
@click.option("--start", "start_text", help="Start of the timeline, ISO 8601 (default: now, in the bot time zone).")
@click.pass_context
def preview(ctx: click.Context, days: int, room: str | None, start_text: str | None) -> None:
    """A timeline of what the SOP files will post where and when, with the rendered text."""
    from bot.sop._check import accounts_and_rooms, load_project
    from bot.sop._preview import build_preview
    from bot.sop._quota import budget_lines, quota_problems, task_lines

    project = project_of(ctx)
    config = config_or_exit(project)
    tz = config.bot.tz
    if start_text:
        try:
            start = datetime.fromisoformat(start_text)
        except ValueError:
            click.echo(f"error: --start {start_text!r} is not ISO 8601 (such as 2026-12-11T00:00+08:00)", err=True)
            sys.exit(2)
        start = start if start.tzinfo else start.replace(tzinfo=tz)
    else:
        start = RealClock(tz).now().replace(second=0, microsecond=0)
    loaded, problems = load_project(project, config, now=start)
    quota = quota_problems(loaded.values(), config, *accounts_and_rooms(config, loaded.values()), start=start, tz=tz)
    for problem in problems:
        if problem not in quota:
            click.echo(f"warning: {problem}（这个文件有问题，不在预览里）", err=True)
    renderer = Renderer([project / config.templates_dir, DEFAULT_TEMPLATES], timezone=tz,
                        globals={"bot_name": config.bot.name}, budget=render_budget(config.limits))
    click.echo(build_preview(loaded, config, renderer, start=start, days=days, room=room))
    capabilities, rooms = accounts_and_rooms(config, loaded.values())
    budgets = budget_lines(loaded.values(), config, capabilities, rooms, start=start, tz=tz)
    budgets += task_lines(loaded.values(), capabilities, rooms)
    if budgets:
        click.echo("\n群发配额（每个群能收多少条，按账号的配额算）：")
        click.echo("\n".join(budgets))
    for problem in quota:
        click.echo(f"error: {problem}", err=True)
    if quota:
        click.echo(f"error: 这套 SOP 超出了 {len(quota)} 个群的群发配额，上线后超出的消息不会发出；"
                   "按上面的 文件:行号 改好后再预览", err=True)
        sys.exit(1)


@sop.command("status")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many posts.")
@click.pass_context
def status(ctx: click.Context, limit: int) -> None:
    """Posts that wait for a person's confirmation (WeCom group-message tasks): confirmed, sent, failed, cancelled."""
    from bot._db import make_engine
    from bot.adapters.wecom._report import post_counts

    project = project_of(ctx)
    config = config_or_exit(project)
    engine = make_engine(config.database.url, base_dir=project)
    try:
        counts = post_counts(engine, limit=limit)
    finally:
        engine.dispose()
    if not counts:
        click.echo("还没有需要群主确认的群发任务（只有企业微信账号的帖子要群主确认）。")
        return
    for item in counts:
        click.echo(item.line())
