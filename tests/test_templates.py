"""Templates: sandboxed, strict, Chinese-friendly filters, errors with file and line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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


def make(tmp_path: Path, files: dict[str, str], *, extra: Path | None = None) -> Renderer:
    root = tmp_path / "scripts_templates"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    paths = [root] + ([extra] if extra else [])
    return Renderer(paths, timezone=SHANGHAI, globals={"bot_name": "小完子"})


def test_render_with_variables_include_and_globals(tmp_path):
    r = make(tmp_path, {"a.j2": "{% include 'b.j2' %}，{{ who }}！", "b.j2": "{{ bot_name }}说你好"})
    assert r.render("a.j2", who="Alice").text == "小完子说你好，Alice！"


def test_mentions_are_collected_in_order_without_duplicates(tmp_path):
    r = make(tmp_path, {"m.j2": "{{ a | mention }} {{ b | mention }} {{ a | mention }} {{ [a, c] | mention_all }}"})
    a, b, c = Person("u1", "Alice", "上海-Alice"), Person("u2", "Bob"), {"id": "u3", "name": "Carol"}
    out = r.render("m.j2", a=a, b=b, c=c)
    assert out.text == "@上海-Alice @Bob @上海-Alice @上海-Alice @Carol"
    assert out.mentions == ("u1", "u2", "u3")
    assert r.render_string("no mentions").mentions == ()


def test_undefined_variable_names_file_and_line(tmp_path):
    r = make(tmp_path, {"points/ok.j2": "第一行\n第二行\n你好 {{ nickname }}\n"})
    with pytest.raises(TemplateError) as err:
        r.render("points/ok.j2")
    assert err.value.line == 3
    assert err.value.file == "scripts_templates/points/ok.j2"
    assert "nickname" in err.value.message
    assert str(err.value).startswith("scripts_templates/points/ok.j2:3:")


def test_error_inside_included_template_points_at_it(tmp_path):
    r = make(tmp_path, {"outer.j2": "hi\n{% include 'inner.j2' %}", "inner.j2": "x\ny\n{{ 1 / 0 }}"})
    with pytest.raises(TemplateError) as err:
        r.render("outer.j2")
    assert err.value.line == 3 and "ZeroDivisionError" in err.value.message


def test_syntax_error_line_and_missing_template(tmp_path):
    r = make(tmp_path, {"bad.j2": "ok\n{% if x %}\nno end\n"})
    with pytest.raises(TemplateError) as err:
        r.check("bad.j2")
    assert err.value.file.endswith("bad.j2") and err.value.line is not None
    with pytest.raises(TemplateError, match="template not found"):
        r.render("nope.j2")
    assert not r.exists("nope.j2") and r.exists("bad.j2")


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ x.__dict__ }}",
    "{{ items.append(1) }}",
    "{{ x.__class__.__subclasses__() }}",
])
def test_sandbox_blocks_python_internals(tmp_path, source):
    r = make(tmp_path, {})
    with pytest.raises(TemplateError):
        r.render_string(source, x=Person("u1", "A"), items=[1, 2], cycler=object())


def test_member_text_is_never_evaluated(tmp_path):
    r = make(tmp_path, {"echo.j2": "你说：{{ said }}"})
    assert r.render("echo.j2", said="{{ 7*7 }}{% for x in y %}").text == "你说：{{ 7*7 }}{% for x in y %}"


def test_chinese_date_filters_convert_to_the_configured_zone(tmp_path):
    r = make(tmp_path, {})
    moment = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # 07:30 on Monday 23 Nov in Shanghai
    out = r.render_string("{{ t | cn_date }} {{ t | cn_weekday }} {{ t | hm }} {{ t | cn_date(year=True) }} "
                          "{{ t | cn_weekday('星期') }} {{ d | cn_weekday }}", t=moment, d=date(2026, 11, 29))
    assert out.text == "11月23日 周一 07:30 2026年11月23日 星期一 周日"


@pytest.mark.parametrize(("value", "expected"), [
    (timedelta(hours=1, minutes=30), "1小时30分"), (45, "45秒"), (timedelta(days=2, hours=3, minutes=5), "2天3小时"),
    (0, "0秒"),
])
def test_cn_duration(tmp_path, value, expected):
    assert make(tmp_path, {}).render_string("{{ v | cn_duration }}", v=value).text == expected


def test_undeclared_variables_follow_includes(tmp_path):
    r = make(tmp_path, {"a.j2": "{{ x }}{% include 'b.j2' %}{{ bot_name }}{{ m | mention }}",
                        "b.j2": "{% for i in items %}{{ i }}{{ y }}{% endfor %}"})
    assert r.undeclared_variables("a.j2") == {"x", "items", "y", "m"}


def test_project_templates_override_defaults(tmp_path):
    defaults = tmp_path / "defaults"
    (defaults / "core").mkdir(parents=True)
    (defaults / "core" / "hi.j2").write_text("默认", encoding="utf-8")
    (defaults / "core" / "only.j2").write_text("只有默认", encoding="utf-8")
    r = make(tmp_path, {"core/hi.j2": "项目"}, extra=defaults)
    assert r.render("core/hi.j2").text == "项目"
    assert r.render("core/only.j2").text == "只有默认"


def test_an_edited_file_is_picked_up(tmp_path):
    r = make(tmp_path, {"t.j2": "旧"})
    path = tmp_path / "scripts_templates" / "t.j2"
    assert r.render("t.j2").text == "旧"
    path.write_text("新", encoding="utf-8")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert r.render("t.j2").text == "新"
