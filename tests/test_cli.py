"""The CLI surface: help lists every command; check reports file:line problems."""

from __future__ import annotations

from click.testing import CliRunner

from bot.cli import main


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "chat", "simulate", "check"):
        assert command in result.output


def test_check_passes_on_the_repository_project(repo):
    result = CliRunner().invoke(main, ["--project", str(repo), "check"])
    assert result.exit_code == 0, result.stderr


def test_check_reports_template_error_with_line(project):
    (project / "scripts_templates" / "bad.j2").write_text("第一行\n{% if x %}\n没有结束\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(project), "check"])
    assert result.exit_code == 1
    assert "bad.j2:" in result.stderr and "1 problem" in result.stderr


def test_check_reports_config_error(project):
    (project / "qunbot.toml").write_text("[pacing]\nhourly_cap = -1\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(project), "check"])
    assert result.exit_code == 1
    assert "qunbot.toml:2: pacing.hourly_cap" in result.stderr


def test_chat_reads_lines_and_answers(repo):
    result = CliRunner().invoke(main, ["--project", str(repo), "chat"],
                                input="菜单\n/as u2 Bob\n@小完子 你好\n/dm ping\n/wait 1h\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "小完子能做这些" in result.output
    assert "→ 群 g1: @Bob 我在呢" in result.output
    assert "→ 私聊 u2: pong" in result.output
