"""Templates: sandboxed, strict, Chinese-friendly filters, errors with file and line."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot._templates import Renderer, TemplateError

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass
class Person:
    id: str
    name: str
    alias: str | None = None

    @property
    def display(self) -> str:
        return self.alias or self.name


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def make(tmp_path: Path, files: dict[str, str], *, extra: Path | None = None) -> Renderer:
    root = write(tmp_path / "scripts_templates", files)
    root.mkdir(exist_ok=True)
    paths = [root] + ([extra] if extra else [])
    return Renderer(paths, timezone=SHANGHAI, globals={"bot_name": "小完子"})


def error_of(call, *args, **kwargs) -> TemplateError:
    with pytest.raises(TemplateError) as err:
        call(*args, **kwargs)
    return err.value


# --- rendering ---------------------------------------------------------------------


def test_render_with_variables_include_and_globals(tmp_path):
    r = make(tmp_path, {"a.j2": "{% include 'b.j2' %}，{{ who }}！", "b.j2": "{{ bot_name }}说你好"})
    assert r.render("a.j2", who="Alice").text == "小完子说你好，Alice！"


def test_text_is_stripped_but_inner_lines_and_block_lines_are_tidy(tmp_path):
    r = make(tmp_path, {"list.j2": "\n  今日名单：\n{% for p in people %}\n  - {{ p }}\n{% endfor %}\n\n"})
    assert r.render("list.j2", people=["甲", "乙"]).text == "今日名单：\n  - 甲\n  - 乙"


def test_member_text_is_never_evaluated(tmp_path):
    r = make(tmp_path, {"echo.j2": "你说：{{ said }}"})
    assert r.render("echo.j2", said="{{ 7*7 }}{% for x in y %}").text == "你说：{{ 7*7 }}{% for x in y %}"


def test_project_templates_override_defaults(tmp_path):
    defaults = write(tmp_path / "defaults", {"core/hi.j2": "默认", "core/only.j2": "只有默认"})
    r = make(tmp_path, {"core/hi.j2": "项目"}, extra=defaults)
    assert r.render("core/hi.j2").text == "项目"
    assert r.render("core/only.j2").text == "只有默认"
    assert r.list_templates() == ["core/hi.j2", "core/only.j2"]


def test_an_edited_file_is_picked_up(tmp_path):
    r = make(tmp_path, {"t.j2": "旧"})
    path = tmp_path / "scripts_templates" / "t.j2"
    assert r.render("t.j2").text == "旧"
    path.write_text("新", encoding="utf-8")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert r.render("t.j2").text == "新"


# --- mentions ----------------------------------------------------------------------


def test_mentions_are_collected_in_order_without_duplicates(tmp_path):
    r = make(tmp_path, {"m.j2": "{{ a | mention }} {{ b | mention }} {{ a | mention }} {{ [a, c] | mention_all }}"})
    a, b, c = Person("u1", "Alice", "上海-Alice"), Person("u2", "Bob"), {"id": "u3", "name": "Carol"}
    out = r.render("m.j2", a=a, b=b, c=c)
    assert out.text == "@上海-Alice @Bob @上海-Alice @上海-Alice @Carol"
    assert out.mentions == ("u1", "u2", "u3")
    assert r.render_string("{{ m | mention }}", m={"id": "u4", "name": "D", "display": "群昵称D"}).text == "@群昵称D"
    assert r.render_string("no mentions").mentions == ()


def test_mention_of_something_that_is_not_a_member_is_an_error(tmp_path):
    err = error_of(make(tmp_path, {}).render_string, "a\n{{ who | mention }}", who="Alice")
    assert err.line == 2 and "mention needs a member" in err.message


def test_a_nested_render_keeps_its_own_mentions(tmp_path):
    r = make(tmp_path, {})

    def inner() -> str:
        return r.render_string("{{ b | mention }}", b=Person("u2", "B")).text

    out = r.render_string("{{ a | mention }} {{ inner() }} {{ c | mention }}", a=Person("u1", "A"),
                          c=Person("u3", "C"), inner=inner)
    assert out.text == "@A @B @C"
    assert out.mentions == ("u1", "u3")


def test_concurrent_renders_on_one_renderer_do_not_share_mentions(tmp_path):
    r = make(tmp_path, {"pair.j2": "{{ first | mention }}{{ meet() }}{{ second | mention }}"})
    barrier = threading.Barrier(2, timeout=10)  # both renders are mid-template at the same time

    def meet() -> str:
        barrier.wait()
        return ""

    def run(prefix: str):
        return r.render("pair.j2", first=Person(f"{prefix}1", "x"), second=Person(f"{prefix}2", "y"), meet=meet)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(run, ["a", "b"])
    assert (a.mentions, b.mentions) == (("a1", "a2"), ("b1", "b2"))


# --- errors name the file and line --------------------------------------------------


def test_undefined_variable_names_file_and_line(tmp_path):
    r = make(tmp_path, {"points/signin_ok.j2": "第一行\n第二行\n你好 {{ nickname }}\n"})
    err = error_of(r.render, "points/signin_ok.j2")
    assert (err.file, err.line, err.message) == ("scripts_templates/points/signin_ok.j2", 3, "'nickname' is undefined")
    assert str(err) == "scripts_templates/points/signin_ok.j2:3: 'nickname' is undefined"


def test_error_inside_included_template_points_at_it_even_with_a_relative_search_path(tmp_path, monkeypatch):
    write(tmp_path / "scripts_templates",
          {"outer.j2": "hi\n{% include 'inc/inner.j2' %}", "inc/inner.j2": "x\ny\n{{ 1 / 0 }}"})
    monkeypatch.chdir(tmp_path)
    r = Renderer([Path("scripts_templates")], timezone=SHANGHAI)
    err = error_of(r.render, "outer.j2")
    assert (err.file, err.line) == ("scripts_templates/inc/inner.j2", 3)
    assert "division by zero" in err.message


def test_syntax_errors_carry_their_line(tmp_path):
    r = make(tmp_path, {"bad.j2": "ok\nstill ok\n{% endfor %}\n", "uses_bad.j2": "a\n{% include 'bad.j2' %}",
                        "filter.j2": "a\n{{ x | no_such_filter }}"})
    for call in (r.check, r.render):
        err = error_of(call, "bad.j2")
        assert (err.file, err.line) == ("scripts_templates/bad.j2", 3)
    assert (error_of(r.render, "uses_bad.j2").file, error_of(r.render, "uses_bad.j2").line) == (
        "scripts_templates/bad.j2", 3)
    assert error_of(r.check, "filter.j2").line == 2
    err = error_of(r.render_string, "a\n{{ x }", name="sop/welcome.yaml#step2")
    assert (err.file, err.line) == ("sop/welcome.yaml#step2", 2)


def test_missing_templates(tmp_path):
    r = make(tmp_path, {"ok.j2": "在", "outer.j2": "a\nb\n{% include 'gone.j2' %}"})
    err = error_of(r.render, "nope.j2")
    assert (err.file, err.line, str(err)) == ("nope.j2", None, "nope.j2: template not found: nope.j2")
    assert error_of(r.check, "nope.j2").message == "template not found: nope.j2"
    err = error_of(r.render, "outer.j2")
    assert (err.file, err.line, err.message) == ("scripts_templates/outer.j2", 3, "template not found: gone.j2")
    assert r.exists("ok.j2") and not r.exists("nope.j2")


def test_runtime_error_in_a_string_template_uses_its_name(tmp_path):
    err = error_of(make(tmp_path, {}).render_string, "a\nb\n{{ who.nickname }}", name="sop/day1", who={})
    assert (err.file, err.line) == ("sop/day1", 3) and "nickname" in err.message


# --- sandbox ------------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ x.__dict__ }}",
    "{{ x.__class__.__subclasses__() }}",
    "{{ '{0.__class__}'.format(x) }}",
    "{{ items.append(1) }}",
    "{{ d.update(a=1) }}",
])
def test_sandbox_blocks_python_internals_and_mutation(tmp_path, source):
    err = error_of(make(tmp_path, {}).render_string, source, x=Person("u1", "A"), items=[1, 2], d={})
    # a member arrives as a read-only view, which has no `__dict__` to reach at all
    assert ("unsafe" in err.message or "has no attribute '__dict__'" in err.message) and err.line == 1


def test_templates_cannot_include_files_outside_the_search_paths(tmp_path):
    (tmp_path / "secret.txt").write_text("token", encoding="utf-8")
    r = make(tmp_path, {"peek.j2": "{% include '../secret.txt' %}"})
    assert "template not found" in error_of(r.render, "peek.j2").message


# --- filters ------------------------------------------------------------------------


def test_chinese_date_filters_convert_to_the_configured_zone(tmp_path):
    r = make(tmp_path, {})
    moment = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # 07:30 on Monday 23 Nov in Shanghai
    out = r.render_string("{{ t | cn_date }} {{ t | cn_weekday }} {{ t | hm }} {{ t | cn_date(year=True) }} "
                          "{{ t | cn_weekday('星期') }} {{ d | cn_weekday }}", t=moment, d=date(2026, 11, 29))
    assert out.text == "11月23日 周一 07:30 2026年11月23日 星期一 周日"


def test_naive_times_are_taken_as_local(tmp_path):
    r = make(tmp_path, {})
    out = r.render_string("{{ t | cn_date }} {{ t | hm }} {{ at | hm }}", t=datetime(2026, 11, 22, 23, 30),
                          at=time(8, 5))
    assert out.text == "11月22日 23:30 08:05"


def test_date_filters_explain_a_wrong_value(tmp_path):
    err = error_of(make(tmp_path, {}).render_string, "{{ '明天' | cn_date }}")
    assert "cn_date needs a date" in err.message


@pytest.mark.parametrize(("value", "expected"), [
    (timedelta(hours=1, minutes=30), "1小时30分钟"), (45, "45秒"), (timedelta(days=2, hours=3, minutes=5), "2天3小时"),
    (timedelta(days=1, minutes=5), "1天5分钟"), (5400.7, "1小时30分钟"), (0, "0秒"), (-90, "-1分钟30秒"),
    (60, "1分钟"),
])
def test_cn_duration(tmp_path, value, expected):
    assert make(tmp_path, {}).render_string("{{ v | cn_duration }}", v=value).text == expected


# --- inspection ---------------------------------------------------------------------


def test_undeclared_variables_follow_includes_and_imports(tmp_path):
    r = make(tmp_path, {"a.j2": "{{ x }}{% include 'b.j2' %}{{ bot_name }}{{ m | mention }}{{ range(3) | list }}"
                                "{% import 'macros.j2' as mac with context %}{{ mac.greet(title) }}",
                        "b.j2": "{% for i in items %}{{ i }}{{ y }}{% endfor %}",
                        "macros.j2": "{% macro greet(n) %}{{ n }}{{ sign }}{% endmacro %}"})
    # `items` and `title` are also jinja2 filter names: still variables the caller must pass
    assert r.undeclared_variables("a.j2") == {"x", "items", "y", "m", "title", "sign"}


def test_undeclared_variables_count_what_the_includer_sets(tmp_path):
    r = make(tmp_path, {"list.j2": "{% set title = '名单' %}{% for p in people %}{% include 'row.j2' %}{% endfor %}",
                        "row.j2": "{{ title }}{{ p.name }}{{ note }}", "self.j2": "{% include 'self.j2' %}{{ z }}"})
    assert r.undeclared_variables("list.j2") == {"people", "note"}
    assert r.undeclared_variables("self.j2") == {"z"}
    assert error_of(r.undeclared_variables, "gone.j2").message == "template not found: gone.j2"
