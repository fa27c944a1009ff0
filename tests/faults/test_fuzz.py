"""Fuzzing what people type: scenario files, SOP files, templates, qunbot.toml and incoming messages.

Bad input always ends in the documented error type whose text names the file (and the line where
one is known), never another exception; incoming text is data and is never run as a template.
Every example also runs within a time and a memory bound (`bounded`): hostile input (YAML bombs, deep
nesting, templates that loop or build text without end) must end in that error, not exhaust the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import shutil
import signal
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import Context, Plugin
from bot._config import ConfigError, load_config
from bot._context import MemberInfo, RoomInfo
from bot._dispatch import strip_bot_mention
from bot._sanitize import clean_text
from bot._scenario import ScenarioError, load_scenario
from bot._templates import Renderer, TemplateError
from bot.cli import main
from bot.sop._check import check_project
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SH = ZoneInfo("Asia/Shanghai")

MB = 1 << 20


class ExampleTooSlow(BaseException):
    """Raised by the watchdog: a BaseException, so no `except Exception` in the code under test hides it."""


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def bounded(seconds: float = 20, memory: int = 768 * MB) -> Iterator[None]:
    """Run one example within `seconds` of wall time (SIGALRM interrupts pure-Python loops) and `memory`
    bytes of new address space (allocations past it fail with MemoryError, which the tests refuse)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + memory
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))

    def expire(signum: int, frame: object) -> None:
        raise ExampleTooSlow(f"one example ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def assert_not_exhausted(message: str) -> None:
    """A MemoryError or RecursionError caught by a broad handler and reported as a problem still fails."""
    assert "MemoryError" not in message and "RecursionError" not in message, message


def _alias_bomb(levels: int) -> str:
    lines = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


# Whole-file attacks on the machine rather than the parser: appended to an otherwise valid file.
EXHAUSTING = st.sampled_from([
    _alias_bomb(9), _alias_bomb(12), "deep: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "".join(f"{'  ' * i}k{i}:\n" for i in range(400)) + "\n",
])

EXHAUSTING_TOML = st.sampled_from([
    "\n[plugins.x]\ndeep = " + "[" * 5000 + "]" * 5000 + "\n",
    "\n[plugins.x]\ndeep = " + "{a = " * 3000 + "1" + "}" * 3000,
])

SCENARIO = (REPO / "examples" / "demo.yaml").read_text(encoding="utf-8")
SOP = """name: 每日
targets:
  topics: ["完子会员*"]
  rooms: [g1]
grace: 10m
steps:
  - id: morning
    at: "08:00"
    template: daily/morning.j2
    kind: content
  - id: noon
    cron: "30 12 * * 1-5"
    text: "午间话题：{{ room.topic }}"
  - id: welcome
    after_join: 1d
    text: "{{ member.display }} 欢迎"
"""
CONFIG = (REPO / "qunbot.toml").read_text(encoding="utf-8")

# Pieces people (and typos) put in these files.
NOISE = st.sampled_from([
    "", " ", "  ", ":", "- ", "{", "}", "[", "]", "{{", "}}", "{%", "%}", "#", "'", '"', "\t", "~", "null", "08:00",
    "+1d", "-3m", "abc", "签到", "2026-02-30T25:00:00+08:00", "!!python/object:os.system", "&a", "*a", "=", "[[x]]",
    "0", "-1", "1e309", "true", "at:", "text:", "steps:", "rooms:", "\\", "\x00", "\ufeff",
])
RANDOM_LINE = st.one_of(st.text(max_size=40), st.lists(NOISE, max_size=6).map("".join))


@st.composite
def mutated(draw: st.DrawFn, source: str) -> str:
    """A valid file with a few lines deleted, duplicated, replaced or cut in half."""
    lines = source.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "replace", "cut", "value", "indent"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "replace":
            lines[i] = draw(RANDOM_LINE)
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "value" and ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + draw(RANDOM_LINE)
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 3)) + lines[i]
    return "\n".join(lines) + "\n"


def documents(source: str, exhausting: st.SearchStrategy[str] = EXHAUSTING) -> st.SearchStrategy[str]:
    return st.one_of(mutated(source), st.text(max_size=200), st.lists(RANDOM_LINE, max_size=8).map("\n".join),
                     st.tuples(mutated(source), exhausting).map("".join))


def assert_located(err: Exception, file: str, text: str) -> None:
    """`file:line: problem` (or `file: problem` when no line applies), the line inside the file."""
    message = str(err)
    assert_not_exhausted(message)
    assert message.startswith(file), message
    assert "Traceback" not in message
    line = getattr(err, "line", None)
    if line is not None:
        assert message.startswith(f"{file}:{line}: ")
        assert 1 <= line <= len(text.splitlines()) + 1, (line, message)


@FUZZ
@given(documents(SCENARIO))
def test_scenario_files(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scenario.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            with bounded():
                load_scenario(path)
        except ScenarioError as err:
            assert_located(err, str(path), text)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SCENARIO))
def test_qunbot_simulate_prints_one_error_line_never_a_traceback(text):
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        shutil.copytree(REPO / "scripts_templates" / "demo", project / "scripts_templates" / "demo")
        (project / "plugins").mkdir()
        shutil.copy(REPO / "plugins" / "demo.py", project / "plugins" / "demo.py")
        (project / "qunbot.toml").write_text('[plugins]\nenabled = ["demo"]\n', encoding="utf-8")
        (project / "s.yaml").write_text(text, encoding="utf-8")
        with bounded(seconds=60):
            result = CliRunner().invoke(main, ["--project", str(project), "simulate", str(project / "s.yaml")])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code in (0, 1), output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    if result.exit_code == 1:
        assert output.strip().splitlines()[-1].startswith("error: ")


@FUZZ
@given(documents(SOP))
def test_sop_files(text):
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        shutil.copytree(REPO / "scripts_templates" / "daily", project / "scripts_templates" / "daily")
        (project / "sop").mkdir()
        (project / "sop" / "fuzz.yaml").write_text(text, encoding="utf-8")
        with bounded():
            problems = check_project(project, load_config(project))
    for problem in problems:
        assert isinstance(problem, str) and "Traceback" not in problem
        assert_not_exhausted(problem)
        assert "fuzz.yaml" in problem, problem


TEMPLATE_PIECES = st.sampled_from([
    "你好 ", "{{ member.display }}", "{{ room.topic }}", "{{ now | cn_date }}", "{{ now | hm }}",
    "{{ member | mention }}",
    "{% if member %}", "{% endif %}", "{% for x in [1, 2] %}", "{% endfor %}", "{{ x }}", "{{ nope }}", "{{", "}}",
    "{%", "%}", "{# c #}", "{{ 1 / 0 }}", "{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}",
    "{{ now | cn_weekday }}", "{{ room | mention }}", "{{ member.display | upper }}", "\n", "{% raw %}", "{% endraw %}",
    "{{ 7 * 7 }}", "{{ range(10**9) | list }}", "{% include 'missing.j2' %}", "{{ now | nofilter }}", "|", "'",
    # resource exhaustion, not syntax: each must end in the render budget's error
    "{% for i in range(100000) %}{% for j in range(100000) %}", "{% endfor %}{% endfor %}", "{{ 'a' * 10**8 }}",
    "{{ '%999999999s' | format(1) }}", "{{ 'x'.center(999999999) }}", "{{ 9 ** (9 ** 9) }}",
    "{% macro m(n) %}{{ m(n) }}{{ m(n) }}{% endmacro %}{{ m(1) }}", "{{ ([range(50000) | list] * 50000) | join }}",
    "{% set s = 'ab' * 50000 %}{{ s | replace('a', s) }}", "{{ lipsum(10**6) }}",
])


@FUZZ
@given(st.one_of(st.lists(TEMPLATE_PIECES, max_size=8).map("".join), st.text(max_size=60)))
def test_templates(source):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "fuzz").mkdir()
        (Path(folder) / "fuzz" / "t.j2").write_text(source, encoding="utf-8")
        renderer = Renderer([Path(folder)], timezone=SH)
        variables = {"member": MemberInfo("u1", "Alice"), "room": RoomInfo("g1", "完子会员1群"),
                     "now": datetime(2026, 11, 23, 9, 0, tzinfo=SH)}
        for render in (lambda: renderer.render("fuzz/t.j2", **variables),
                       lambda: renderer.render_string(source, name="sop/x.yaml", **variables)):
            try:
                with bounded():
                    rendered = render()
            except TemplateError as err:
                assert "Traceback" not in str(err)
                assert_not_exhausted(str(err))
                where = str(err).split(":", 1)[0]
                assert where.endswith(("fuzz/t.j2", "sop/x.yaml", "missing.j2")), str(err)
            else:
                assert isinstance(rendered.text, str)
                assert "<class" not in rendered.text and "__globals__" not in rendered.text


@FUZZ
@given(documents(CONFIG, EXHAUSTING_TOML))
def test_qunbot_toml(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "qunbot.toml"
        path.write_text(text, encoding="utf-8")
        try:
            with bounded():
                load_config(Path(folder))
        except ConfigError as err:
            assert_located(err, str(path), text)


INCOMING = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(["{{ 7*7 }}", "{% for i in range(3) %}x{% endfor %}", "{{ config }}", "@小完子 ",
                              "菜单", "{#", "}}", "\u2005", "{{ member.__class__ }}", "签到", "\n", "%}"]),
             max_size=6).map("".join),
)


def echo() -> Plugin:
    plugin = Plugin("echo")

    @plugin.on_message().handle
    async def said(ctx: Context) -> None:
        if ctx.text:
            await ctx.reply(template="echo/said.j2", said=ctx.text)

    return plugin


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(INCOMING, min_size=10, max_size=10), INCOMING.map(str.strip).filter(bool))
def test_incoming_text_and_names_are_data_never_template_code(texts, alias):
    async def run() -> tuple[list[str], list[logging.LogRecord]]:
        with tempfile.TemporaryDirectory() as folder:
            project = Path(folder)
            (project / "scripts_templates" / "echo").mkdir(parents=True)
            (project / "scripts_templates" / "echo" / "said.j2").write_text(
                "{{ member.display }} 说：{{ said }}", encoding="utf-8")
            records: list[logging.LogRecord] = []
            handler = logging.Handler(logging.ERROR)
            handler.emit = records.append  # type: ignore[method-assign]
            logging.getLogger("qunbot").addHandler(handler)
            try:
                async with BotHarness(project, plugins=[echo()], settings={"bot": {"command_limit": 0}}) as bot:
                    bot.room("g1", members={"u1": "Alice"})
                    await bot.rename("g1", "u1", alias)
                    for text in texts:
                        await bot.say("g1", "u1", text)
                    replies = [m.text for m in bot.pop()]
            finally:
                logging.getLogger("qunbot").removeHandler(handler)
            return replies, records

    with bounded(seconds=60):
        replies, errors = asyncio.run(run())
    assert errors == []
    # What enters the runtime is cleaned of what databases refuse (NUL, lone surrogates: bot/_sanitize.py).
    shown = clean_text(alias) or "Alice"
    bodies = [f"{shown} 说：{text}".strip() for t in texts if (text := strip_bot_mention(clean_text(t), "小完子"))]
    assert replies == [body if f"@{shown}" in body else f"@{shown} {body}" for body in bodies]
