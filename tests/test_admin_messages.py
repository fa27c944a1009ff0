"""Issue 15: what admins read from `check` and `sop check` is plain Chinese, on the right line, and says
what to write instead (key names stay English, as the admin typed them)."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot._config import load_config
from bot._i18n import ENGLISH_FRAGMENTS, is_translated
from bot.cli import main
from bot.sop._check import load_project

NOW = datetime.fromisoformat("2026-11-23T09:00:00+08:00")
TOML = '[bot]\nname = "小完子"\ntimezone = "Asia/Shanghai"\n'


def make(tmp_path: Path, sop: str | bytes | None = None, templates: dict[str, str | bytes] | None = None,
         toml: str = TOML, plugins: dict[str, str] | None = None) -> Path:
    root = tmp_path / "p"
    (root / "sop").mkdir(parents=True)
    (root / "scripts_templates").mkdir()
    (root / "qunbot.toml").write_text(toml, encoding="utf-8")
    if sop is not None:
        data = sop if isinstance(sop, bytes) else textwrap.dedent(sop).encode()
        (root / "sop" / "x.yaml").write_bytes(data)
    for name, text in (templates or {}).items():
        path = root / "scripts_templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    for name, text in (plugins or {}).items():
        (root / "plugins").mkdir(exist_ok=True)
        (root / "plugins" / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def sop_problems(root: Path) -> list[str]:
    return load_project(root, load_config(root), now=NOW)[1]


def test_a_misspelt_key_gets_the_likely_one(tmp_path):
    found = sop_problems(make(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - id: m
            at: "08:00"
            text: 早
            tempalte: a.j2
    """))
    assert found == ["sop/x.yaml:6: steps.m.tempalte: 不认识的键 tempalte，是不是想写 template？"]


def test_a_duplicate_step_id_is_reported_on_the_duplicate(tmp_path):
    found = sop_problems(make(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", text: 早}
          - {id: n, at: "09:00", text: 早}
          - id: m
            at: "10:00"
            text: 早
    """))
    assert found == ["sop/x.yaml:5: steps.m.id: 步骤 id m 重复了（同一个文件里每个步骤的 id 要不同）"]


def test_a_bad_start_is_reported_on_its_own_line(tmp_path):
    found = sop_problems(make(tmp_path, """\
        name: 周年庆
        targets: {rooms: [g1]}
        grace: 5m
        start: 下周五晚上
        steps: [{id: m, offset: 0, text: 早}]
    """))
    assert len(found) == 1 and found[0].startswith("sop/x.yaml:4: start: start '下周五晚上' 要写成日期和时间"), found


def test_an_undefined_variable_in_a_template_file_names_the_template_line(tmp_path):
    found = sop_problems(make(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", template: t.j2}
    """, {"t.j2": "早安\n{{ bot_name }} 提醒：\n今天是 {{ todya | cn_date }}\n"}))
    assert len(found) == 1, found
    assert found[0].startswith("sop/x.yaml:3: steps.m: 模板 scripts_templates/t.j2:3 用了没有定义的变量 todya")
    assert "可以用的变量：bot_name、now、room、sop、step、today" in found[0]


def test_an_undefined_variable_in_an_included_template_names_that_file(tmp_path):
    found = sop_problems(make(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", template: t.j2}
    """, {"t.j2": "早安\n{% include 'part.j2' %}\n", "part.j2": "\n\n{{ prodcut }}\n"}))
    assert len(found) == 1 and "模板 scripts_templates/part.j2:3 用了没有定义的变量 prodcut" in found[0], found


def test_a_variable_only_in_a_dead_else_branch_is_still_required(tmp_path):
    """Decided (docs/sop.md): a template's names are checked, not its branches, because which branch runs
    depends on the room; the message says how to give the value."""
    found = sop_problems(make(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", template: t.j2, vars: {sale: true}}
    """, {"t.j2": "{% if sale %}特价{% else %}原价 {{ price }}{% endif %}"}))
    assert len(found) == 1 and "用了没有定义的变量 price" in found[0] and "vars:" in found[0]


def test_a_gbk_file_gets_a_utf8_hint_and_a_line(tmp_path):
    text = "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', text: 早安}\n"
    found = sop_problems(make(tmp_path, text.encode("gbk")))
    assert len(found) == 1 and found[0].startswith("sop/x.yaml:3: 文件不是 UTF-8 编码（多半是 GBK）"), found


def test_pydantic_range_and_type_errors_are_chinese(tmp_path):
    found = sop_problems(make(tmp_path, """\
        targets: {rooms: [g1]}
        steps:
          - {id: m, at: "08:00", text: 早, mention: 也许}
    """))
    assert found == ["sop/x.yaml:3: steps.m.mention: 要写 true 或 false（现在是 也许）"]


def test_a_plugin_setting_typo_fails_check_with_the_likely_key(tmp_path):
    root = make(tmp_path, toml=TOML + '[plugins]\nenabled = ["slow"]\n[plugins.slow]\ncooldwn = "5m"\n',
                plugins={"slow.py": """\
                    from pydantic import BaseModel

                    from bot import Plugin


                    class Config(BaseModel):
                        cooldown: str = "1m"


                    plugin = Plugin(name="slow", description="慢", usage="", config=Config)
                """})
    result = CliRunner().invoke(main, ["--project", str(root), "check"])
    assert result.exit_code == 1
    assert "qunbot.toml:7: plugins.slow.cooldwn: 不认识的键 cooldwn，是不是想写 cooldown？" in result.stderr


def test_a_plugin_that_allows_extra_keys_keeps_them(tmp_path):
    root = make(tmp_path, toml=TOML + '[plugins]\nenabled = ["open"]\n[plugins.open]\nanything = 1\n',
                plugins={"open.py": """\
                    from pydantic import BaseModel, ConfigDict

                    from bot import Plugin


                    class Config(BaseModel):
                        model_config = ConfigDict(extra="allow")


                    plugin = Plugin(name="open", description="开放", usage="", config=Config)
                """})
    result = CliRunner().invoke(main, ["--project", str(root), "check"])
    assert result.exit_code == 0, result.stderr


def test_config_errors_are_chinese_with_the_likely_key(tmp_path):
    root = make(tmp_path, toml=TOML + "[pacing]\nmin_interval = -1\nhourly_cpa = 10\n")
    result = CliRunner().invoke(main, ["--project", str(root), "check"])
    assert result.exit_code == 1 and "qunbot.toml:5: pacing.min_interval: 不能小于 0（现在是 -1）" in result.stderr


# Every kind of mistake the test suite makes, through both commands an admin runs.
BROKEN = [
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '8点', text: x}\n"}, "时:分"),
    ({"sop": "targets: {rooms: [g1]}\nsteps: [{id: m, offset: +1h, text: x}]\n"}, "start:"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, cron: '0 25 * * *', text: x}\n"}, "超出范围"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, cron: 'x 1 * * *', text: x}\n"}, "写不懂"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', template: nope.j2}\n"}, "找不到模板"),
    ({"sop": "targets: {tags: [vip]}\nsteps: [{id: m, at: '08:00', text: x}]\n"}, "标签"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', template: t.j2}\n",
      "templates": {"t.j2": "早安\n{% if %}"}}, "前面缺少内容"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', template: t.j2}\n",
      "templates": {"t.j2": "{{ a b }}"}}, "这里应该是 }}"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', template: t.j2}\n",
      "templates": {"t.j2": "{% if room %}早"}}, "没有结束"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', template: t.j2}\n",
      "templates": {"t.j2": "{{ room.name }}"}}, "没有 .name"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', template: t.j2}\n",
      "templates": {"t.j2": "{{ now | cn_dat }}"}}, "过滤器"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', text: '{{ now|cn_date }'}\n"}, "多余的"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: '08:00', text: '{{ mebmer }}'}\n"}, "没有定义"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n  - {id: m, after_join: 1d, text: '{{ member.nme }}'}\n"}, ".nme"),
    ({"sop": "targets: {rooms: [g1]}\nsteps:\n\t- {id: m, at: '08:00', text: x}\n"}, "Tab"),
    ({"sop": "targets: {rooms: [g1]}\nsteps: {id: m, at: '08:00', text: x}\n"}, "列表"),
    ({"sop": "target: {rooms: [g1]}\nsteps: [{id: m, at: '08:00', text: x}]\n"}, "是不是想写 targets"),
    ({"sop": "targets: {rooms: [g1]}\nsteps: []\n"}, "至少要写 1 项"),
    ({"sop": "targets: {}\nsteps: [{id: m, at: '08:00', text: x}]\n"}, "至少写 rooms"),
    ({"sop": "targets: {rooms: [g1]}\nsteps: [{id: m, text: x}]\n"}, "什么时候发"),
    ({"sop": "targets: {rooms: [g1]}\nsteps: [{id: m, at: '08:00'}]\n"}, "发什么"),
    ({"sop": "targets: {rooms: [g1]}\ngroup: 长期\nsteps: [{id: m, at: '08:00', text: x}]\n"},
     "group: 只能是 long-term、flash 之一（现在是 长期）"),
    ({"sop": "targets: {rooms: [g1]}\nsteps: [{id: m, at: '08:00', text: x, variants: [a.j2]}]\n"}, "至少要写 2 项"),
    ({"sop": "targets: {rooms: [g1]}\nsteps: [{id: m, at: '08:00', text: x, until: 明年}]\n"}, "不限"),
    ({"sop": "targets: {rooms: [g1]}\nsteps: [{id: m, at: '08:00', text: x, from: start}]\n"}, "start:"),
    ({"toml": TOML + "[pacing]\nhourly_cap = 0\n"}, "要大于 0"),
    ({"toml": TOML + "[bot]\n"}, "格式有错"),
    ({"toml": TOML + "[sop]\nmarketing_share = '多'\n"}, "要写数字"),
    ({"toml": TOML + '[plugins]\nenabled = ["pionts"]\n'}, "没有叫 pionts 的插件"),
]


@pytest.mark.parametrize(("files", "hint"), BROKEN)
@pytest.mark.parametrize("command", [["check"], ["sop", "check"]])
def test_every_check_message_is_chinese(tmp_path, files, hint, command):
    root = make(tmp_path, files.get("sop"), files.get("templates"), files.get("toml", TOML))
    result = CliRunner().invoke(main, ["--project", str(root), *command])
    assert result.exit_code != 0
    assert hint in result.stderr, result.stderr
    assert is_translated(result.stderr), [f for f in ENGLISH_FRAGMENTS if f in result.stderr]
