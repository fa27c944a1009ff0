"""A render budget: templates that loop, call or build text without end fail with a clear error, fast."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_sop_engine import project

from bot import Context, Plugin
from bot._checks import run_checks
from bot._config import load_config
from bot._sandbox import RenderBudget
from bot._templates import Renderer, TemplateError
from bot.sop._check import load_project
from bot.testing import BotHarness

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime.fromisoformat("2026-11-23T09:00:00+08:00")
BIG = "{% set big = 'ab' * 50000 %}"

HOSTILE = {
    "nested range loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "string repetition": "{{ 'a' * 10**8 }}",
    "repetition the other way round": "{{ 10**8 * 'a' }}",
    "list repetition": "{{ ([1] * 10**9) | length }}",
    "huge range as a list": "{{ range(10**9) | list | length }}",
    "printf width through the format filter": "{{ '%999999999s' | format(1) }}",
    "printf width through the operator": "{{ '%999999999d' % 1 }}",
    "printf star width": "{{ '%*d' | format(999999999, 1) }}",
    "str.format width": "{{ '{:>999999999}'.format(1) }}",
    "str.format nested width": "{{ '{:>{w}}'.format(1, w=999999999) }}",
    "center method": "{{ 'x'.center(999999999) }}",
    "center filter": "{{ 'x' | center(999999999) }}",
    "zfill": "{{ '1'.zfill(999999999) }}",
    "expandtabs": "{{ ('\t' * 100000).expandtabs(100000) }}",
    "indent amplification": "{{ ('a\\n' * 50000) | indent(1000) }}",
    "replace amplification": BIG + "{{ big | replace('a', big) }}",
    "replace method amplification": BIG + "{{ big.replace('a', big) }}",
    "join of a repeated big string": BIG + "{{ ([big] * 5000) | join }}",
    "str.join of a repeated big string": BIG + "{{ ''.join([big] * 5000) }}",
    "concatenation doubling": BIG + "{% set b = big ~ big %}{% set c = b ~ b %}{% set d = c ~ c %}{{ d | length }}",
    "plus doubling": BIG + "{% set b = big + big %}{% set c = b + b %}{% set d = c + c %}{{ d | length }}",
    "power tower": "{{ 9 ** (9 ** 9) }}",
    "integer squaring in a loop": "{% set ns = namespace(x=2 ** 4000) %}{% for i in range(40) %}"
                                  "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}",
    "exponential macro recursion": "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}x{% endmacro %}"
                                   "{{ m(60) }}",
    "output built in a set block": "{% set s %}{% for i in range(100000) %}" + "y" * 100 + "{% endfor %}{% endset %}",
    "output built in a macro": BIG + "{% macro m() %}{% for i in range(1000) %}{{ big }}{% endfor %}{% endmacro %}"
                               "{{ m() | length }}",
    "map over a repeated list": "{{ ([range(50000) | list] * 50000) | map('sort') | list | length }}",
    "batch with fill": "{{ range(3) | batch(999999999, 0) | list | length }}",
    "slice count": "{{ range(3) | slice(999999999) | list | length }}",
    "lipsum": "{{ lipsum(1000000) }}",
    "counting a big string in a loop": BIG + "{% for i in range(100000) %}{{ big.count('a') }}{% endfor %}",
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_template_fails_over_budget_with_a_chinese_error(tmp_path, source):
    renderer = Renderer([tmp_path], timezone=SH)
    with pytest.raises(TemplateError) as caught:
        renderer.render_string(source, name="x.j2")
    assert caught.value.over_budget, caught.value
    assert caught.value.file == "x.j2" and caught.value.line == 1
    assert any(word in caught.value.message for word in ("太多", "太大", "不能", "超过")), caught.value.message


def test_ordinary_templates_stay_well_within_the_default_budget(tmp_path):
    renderer = Renderer([tmp_path], timezone=SH)
    rows = [{"name": f"成员{i}", "points": i} for i in range(500)]
    out = renderer.render_string(
        "{% for row in rows | sort(attribute='points', reverse=True) %}{{ loop.index }}. {{ row.name }} "
        "{{ '%+d' | format(row.points) }}{{ ' ' * 3 }}{{ row.name | replace('成员', '') | center(6) }}\n{% endfor %}"
        "{{ rows | map(attribute='name') | join('、') | truncate(30) }}", rows=rows)
    assert out.text.startswith("1. 成员499 +499") and out.text.count("\n") >= 499


def test_the_budget_is_configurable(tmp_path):
    small = Renderer([tmp_path], timezone=SH, budget=RenderBudget(loop_iterations=50, output_chars=100))
    assert small.render_string("{% for i in range(10) %}{{ i }}{% endfor %}").text == "0123456789"
    with pytest.raises(TemplateError, match="循环和运算太多"):
        small.render_string("{% for i in range(8) %}{% for j in range(8) %}{% endfor %}{% endfor %}")
    with pytest.raises(TemplateError, match="文字太多"):
        small.render_string("{{ 'x' * 101 }}")


def test_an_over_budget_template_is_a_check_error_with_file_and_line(tmp_path):
    root = project(tmp_path, {"x.yaml": """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", template: loop.j2}
    """}, {"loop.j2": "早\n{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"})
    found = load_project(root, load_config(root), now=NOW)[1]
    assert len(found) == 1 and found[0].startswith("sop/x.yaml:3: steps.m:") and "loop.j2:2" in found[0]
    assert "循环和运算太多" in found[0]


def test_an_inline_text_over_budget_is_a_check_error(tmp_path):
    root = project(tmp_path, {"x.yaml": """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", text: "{{ 'a' * 10**8 }}"}
    """})
    found = load_project(root, load_config(root), now=NOW)[1]
    assert len(found) == 1 and found[0].startswith("sop/x.yaml:3:") and "文字太多" in found[0]


def test_the_budget_holds_for_included_templates(tmp_path):
    (tmp_path / "inner.j2").write_text("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                                       "{% endfor %}", encoding="utf-8")
    renderer = Renderer([tmp_path], timezone=SH)
    with pytest.raises(TemplateError) as caught:
        renderer.render_string("{% include 'inner.j2' %}")
    assert caught.value.over_budget and caught.value.file.endswith("inner.j2")


def test_symlinked_templates_cannot_read_files_outside_their_folder(tmp_path):
    (tmp_path / "secret.txt").write_text("server secret", encoding="utf-8")
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "leak.j2").symlink_to(tmp_path / "secret.txt")
    renderer = Renderer([folder], timezone=SH)
    for attempt in (lambda: renderer.render("leak.j2"), lambda: renderer.render_string("{% include 'leak.j2' %}")):
        with pytest.raises(TemplateError, match="符号链接"):
            attempt()
    assert not Path(folder / "leak.j2").resolve().is_relative_to(folder)


@pytest.mark.parametrize("source, line, words", [
    ("你好\n{% for i in range(1000) %}{% for j in range(1000) %}{{ i }}{% endfor %}{% endfor %}", 2, "循环和运算太多"),
    ("{% if member %}\n\n{{ '-' * 10**6 }}{% endif %}", 3, "文字太多"),
    ("{% for row in rows %}{% for i in range(10**6) %}{% endfor %}{% endfor %}", 1, "循环和运算太多"),
])
def test_qunbot_check_reports_a_plugin_template_over_budget_whatever_its_data(project, source, line, words):
    (project / "scripts_templates" / "points").mkdir()
    (project / "scripts_templates" / "points" / "balance.j2").write_text(source, encoding="utf-8")
    [problem] = run_checks(project)
    assert problem.startswith(f"scripts_templates/points/balance.j2:{line}: ") and words in problem


def test_check_leaves_loops_over_data_to_render_time(tmp_path):
    (tmp_path / "t.j2").write_text("{% for row in rows %}{% for i in range(1000) %}{% endfor %}{% endfor %}",
                                   encoding="utf-8")
    Renderer([tmp_path], timezone=SH).check("t.j2")  # 1000 per row is fine until the data says otherwise


async def test_a_render_over_budget_at_run_time_fails_that_reply_only_and_the_bot_keeps_answering(tmp_path, caplog):
    (tmp_path / "scripts_templates" / "echo").mkdir(parents=True)
    (tmp_path / "scripts_templates" / "echo" / "said.j2").write_text(
        "{% for c in said %}{% for i in range(50000) %}{% endfor %}{% endfor %}{{ said }}", encoding="utf-8")
    plugin = Plugin("echo")

    @plugin.on_message().handle
    async def said(ctx: Context) -> None:
        await ctx.reply(template="echo/said.j2", said=ctx.text)

    async with BotHarness(tmp_path, plugins=[plugin], settings={"bot": {"command_limit": 0}}) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "a long message that loops too often")  # 35 characters x 50000
        assert [f.split(" on event")[0] for f in bot.pop_failures()] == ["plugin handler echo.said failed"]
        assert bot.pop() == []
        await bot.say("g1", "u1", "x")
        assert [m.text for m in bot.pop()] == ["@Alice x"]
    assert any("循环和运算太多" in record.getMessage() + str(record.exc_info and record.exc_info[1])
               for record in caplog.records)


def test_qunbot_run_with_a_runaway_sop_template_starts_reports_it_and_stops_on_sigterm(tmp_path):
    root = project(tmp_path, {"x.yaml": """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", template: loop.j2}
    """}, {"loop.j2": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"})
    (root / "qunbot.toml").write_text('[database]\nurl = "sqlite:///data/bot.db"\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--project", str(root), "--log-json", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)  # only a hung bot (the bug) ever gets this far
    watchdog.start()
    try:
        assert proc.stderr is not None
        messages = []
        for line in proc.stderr:  # blocks until the bot says it runs
            messages.append(json.loads(line)["message"])
            if messages[-1].startswith("running"):
                break
        proc.send_signal(signal.SIGTERM)
        messages += [json.loads(x)["message"] for x in proc.stderr.read().splitlines()]
        assert proc.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        proc.kill()
    assert any("循环和运算太多" in m and "sop/x.yaml:3" in m for m in messages), messages
    assert "stopping" in messages


@pytest.mark.parametrize("source", [
    "{% include 'self.j2' %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% import 'self.j2' as me %}",
    "{% extends 'self.j2' %}",
])
def test_template_recursion_is_refused_even_when_a_library_raised_the_recursion_limit(tmp_path, source):
    (tmp_path / "self.j2").write_text(source, encoding="utf-8")
    renderer = Renderer([tmp_path], timezone=SH)
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what importing py_ecc (the lottery's beacon check) does to the process
    try:
        with pytest.raises(TemplateError) as caught:
            renderer.render("self.j2")
    finally:
        sys.setrecursionlimit(before)
    assert caught.value.over_budget and "嵌套太深" in caught.value.message
