"""The line-aware YAML loader (bot/_yaml.py) and the scenario parser (bot/_scenario.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from bot._scenario import (
    ScenarioError,
    ScenarioEvent,
    ScenarioMember,
    ScenarioRoom,
    load_scenario,
    parse_offset,
)
from bot._yaml import YamlError, load_yaml, load_yaml_text, pydantic_error_to_yaml_error

CST = timezone(timedelta(hours=8))

# Verbatim from docs/simulate.md; line numbers below refer to this text.
SPEC = """\
start: 2026-11-23T07:55:00+08:00      # virtual clock at the beginning (ISO 8601 with offset)
until: 2026-11-25T00:00:00+08:00      # optional: keep running scheduled work until this time
bot: {id: bot, name: 小完子}           # the bot's own account
rooms:
  - id: g1
    topic: 完子研究所1群
    admins: [owner1]                  # members with admin rights in this room (the bot is always one)
    members:
      - {id: owner1, name: 群主}
      - {id: u1, name: Alice}
      - {id: u2, name: Bob}
events:                               # handled in order
  - at: 2026-11-23T07:56:00+08:00     # absolute time, or relative to the previous event: +10s, +5m, +2h, +1d
    say: {room: g1, from: u1, text: 签到}
  - at: +10s
    say: {room: g1, from: u2, text: "@小完子 积分", mentions: [bot]}
  - at: +1m
    join: {room: g1, members: [{id: u9, name: 小红}], inviter: u1}
  - at: +1m
    rename: {room: g1, member: u9, alias: 上海-小红-设计师}   # group nickname change
  - at: +1h
    leave: {room: g1, members: [u9]}
  - at: +1m
    private: {from: u1, text: 积分}   # a direct (one-to-one) message to the bot
"""

HEAD = """\
start: 2026-11-23T07:55:00+08:00
bot: {id: bot, name: 小完子}
rooms:
  - {id: g1, topic: 一群, members: [{id: u1, name: Alice}]}
  - {id: g2, topic: 二群}
events:
"""  # events start on line 7


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def scenario_error(tmp_path: Path, text: str) -> ScenarioError:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.file == str(path)
    assert str(caught.value) == f"{path}:{caught.value.line}: {caught.value.message}"
    return caught.value


# --- the YAML loader ---------------------------------------------------------------------------------------


def test_yaml_12_scalars_stay_strings_and_timestamps_keep_their_text():
    doc = load_yaml_text('time: 08:00\nok: yes\nwhen: +1d\nstart: 2026-11-23T07:55:00+08:00\nday: 2026-11-23\n'
                         'n: 010\nquoted: !!str 12\nflag: true\n')
    assert doc.data == {"time": "08:00", "ok": "yes", "when": "+1d", "start": "2026-11-23T07:55:00+08:00",
                        "day": "2026-11-23", "n": 10, "quoted": "12", "flag": True}


def test_yaml_11_directive_does_not_bring_back_sexagesimal_numbers():
    assert load_yaml_text("%YAML 1.1\n---\ntime: 08:00\nok: yes\n").data == {"time": "08:00", "ok": "yes"}


def test_data_is_plain_python():
    doc = load_yaml_text("a:\n  - {x: 1.5}\n  - |\n    two\n    lines\n")
    assert type(doc.data) is dict and type(doc.data["a"]) is list and type(doc.data["a"][0]) is dict
    assert type(doc.data["a"][0]["x"]) is float
    assert type(doc.data["a"][1]) is str and doc.data["a"][1] == "two\nlines\n"


def test_line_of_paths():
    doc = load_yaml_text(SPEC, "spec.yaml")
    assert doc.file == "spec.yaml"
    assert doc.line() == 1
    assert doc.line("until") == 2
    assert doc.line("rooms", 0) == 5
    assert doc.line("rooms", 0, "members") == 8
    assert doc.line("rooms", 0, "members", 2, "name") == 11
    assert doc.line("events", 1, "say", "mentions", 0) == 16
    assert doc.line("events", 5, "private", "text") == 24
    # a missing key or index: the deepest parent that exists
    assert doc.line("events", 3, "rename", "nope") == 20
    assert doc.line("events", 99) == 12
    assert doc.line("nope", "deeper") == 1


def test_line_of_a_block_mapping_entry_is_its_key_line():
    doc = load_yaml_text("events:\n  - at: +1m\n    say:\n      room: g1\n      text: |\n        hi\n")
    assert doc.line("events", 0) == 2
    assert doc.line("events", 0, "say") == 3
    assert doc.line("events", 0, "say", "text") == 5


def test_merged_keys_fall_back_to_their_mapping():
    doc = load_yaml_text("base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n")
    assert doc.data["m"] == {"y": 2, "x": 1}
    assert doc.line("m", "y") == 4
    assert doc.line("m", "x") == 2


def test_scalar_document_has_no_lines():
    doc = load_yaml_text("just text")
    assert doc.data == "just text" and doc.line() is None and doc.line("a") is None
    assert load_yaml_text("").data is None


def test_syntax_error_names_file_and_line():
    with pytest.raises(YamlError) as caught:
        load_yaml_text("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    assert caught.value.file == "bad.yaml" and caught.value.line == 3
    assert str(caught.value).startswith("bad.yaml:3: ")
    assert "从第 2 行开始" in caught.value.message


def test_tab_indent_gets_a_hint():
    with pytest.raises(YamlError) as caught:
        load_yaml_text("a:\n\tb: 1\n", "t.yaml")
    assert caught.value.line == 2 and caught.value.message == "这一行用了 Tab 缩进：YAML 只能用空格缩进"


def test_duplicate_key_is_an_error_at_the_second_key():
    with pytest.raises(YamlError) as caught:
        load_yaml_text("a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\n", "dup.yaml")
    assert caught.value.line == 5
    assert str(caught.value) == "dup.yaml:5: 键 c 写了两次（同一层只能写一次）"


def test_unreadable_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(YamlError) as caught:
        load_yaml(missing)
    assert caught.value.file == str(missing) and caught.value.line is None
    assert str(caught.value) == f"{missing}: 文件不存在"


def test_load_yaml_reads_utf8_with_bom(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffname: 小完子\n".encode())
    doc = load_yaml(path)
    assert doc.data == {"name": "小完子"} and doc.file == str(path) and doc.line("name") == 1


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room: str
    tags: list[str] | int = []


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[_Item]


def _first_error(doc, schema, data, **kwargs):
    with pytest.raises(ValidationError) as caught:
        schema.model_validate(data)
    return pydantic_error_to_yaml_error(doc, caught.value, **kwargs)


def test_pydantic_missing_key_points_at_its_parent():
    doc = load_yaml_text("items:\n  - room: g1\n  - tags: [a]\n", "x.yaml")
    err = _first_error(doc, _Doc, doc.data)
    assert str(err) == "x.yaml:3: items.1.room: 缺少这一项（必填）"


def test_pydantic_extra_key_points_at_the_key():
    doc = load_yaml_text("items:\n  - room: g1\n  - room: g2\n    romo: g3\n", "x.yaml")
    err = _first_error(doc, _Doc, doc.data, model=_Doc)
    assert (err.line, err.message) == (4, "items.1.romo: 不认识的键 romo，是不是想写 room？")


def test_pydantic_misspelt_key_is_reported_as_a_typo_not_as_missing():
    doc = load_yaml_text("items:\n  - room: g1\n  - rom: g2\n", "x.yaml")
    err = _first_error(doc, _Doc, doc.data)
    assert str(err) == "x.yaml:3: items.1.rom: 不认识的键 rom，是不是想写 room？"


def test_pydantic_error_with_root_and_union_member_names_dropped():
    doc = load_yaml_text("items:\n  - room: g1\n    tags:\n      - a\n      - [b]\n", "x.yaml")
    err = _first_error(doc, _Item, doc.data["items"][0], root=("items", 0))
    assert err.line == 5
    assert err.message == "items.0.tags.1: 要写文字"


# --- parse_offset -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("+10s", timedelta(seconds=10)),
    ("+5m", timedelta(minutes=5)),
    ("+2h", timedelta(hours=2)),
    ("+1d", timedelta(days=1)),
    ("+1d2h", timedelta(days=1, hours=2)),
    ("+90s", timedelta(seconds=90)),
    ("+1h30m15s", timedelta(hours=1, minutes=30, seconds=15)),
    ("-1d", timedelta(days=-1)),
    ("0", timedelta(0)),
    (" +3m ", timedelta(minutes=3)),
])
def test_parse_offset(text, expected):
    assert parse_offset(text) == expected


@pytest.mark.parametrize("text", ["", "+", "10s", "+10", "+1x", "+2h1d", "+1.5h", "1d", "+ 1d", "+1D", "--1d"])
def test_parse_offset_rejects(text):
    with pytest.raises(ValueError, match="看不懂：写成 \\+10s"):
        parse_offset(text)


# --- scenarios ---------------------------------------------------------------------------------------------


def test_spec_example_parses(tmp_path):
    path = write(tmp_path, SPEC)
    scenario = load_scenario(path)
    assert scenario.path == str(path)
    assert scenario.start == datetime(2026, 11, 23, 7, 55, tzinfo=CST)
    assert scenario.until == datetime(2026, 11, 25, 0, 0, tzinfo=CST)
    assert (scenario.bot_id, scenario.bot_name, scenario.seed) == ("bot", "小完子", 0)
    assert scenario.rooms == (ScenarioRoom("g1", "完子研究所1群", ("owner1",), (
        ScenarioMember("owner1", "群主"), ScenarioMember("u1", "Alice"), ScenarioMember("u2", "Bob"))),)
    assert [(e.kind, e.at, e.line) for e in scenario.events] == [
        ("say", datetime(2026, 11, 23, 7, 56, 0, tzinfo=CST), 13),
        ("say", datetime(2026, 11, 23, 7, 56, 10, tzinfo=CST), 15),
        ("join", datetime(2026, 11, 23, 7, 57, 10, tzinfo=CST), 17),
        ("rename", datetime(2026, 11, 23, 7, 58, 10, tzinfo=CST), 19),
        ("leave", datetime(2026, 11, 23, 8, 58, 10, tzinfo=CST), 21),
        ("private", datetime(2026, 11, 23, 8, 59, 10, tzinfo=CST), 23),
    ]
    say, mention, join, rename, leave, private = scenario.events
    assert (say.room, say.sender, say.text, say.mentions, say.file) == ("g1", "u1", "签到", (), None)
    assert (mention.text, mention.mentions) == ("@小完子 积分", ("bot",))
    assert (join.room, join.members, join.inviter) == ("g1", (ScenarioMember("u9", "小红"),), "u1")
    assert (rename.room, rename.member, rename.alias) == ("g1", "u9", "上海-小红-设计师")
    assert (leave.room, leave.member_ids) == ("g1", ("u9",))
    assert private == ScenarioEvent(datetime(2026, 11, 23, 8, 59, 10, tzinfo=CST), 23, "private",
                                    sender="u1", text="积分")


def test_relative_chains_and_missing_at(tmp_path):
    scenario = load_scenario(write(tmp_path, HEAD + """\
  - private: {from: u1, text: 开始}
  - at: +1d2h
    say: {room: g1, from: u1, text: a}
  - say: {room: g1, from: u1, text: same time}
  - at: +90s
    say: {room: g2, from: u7, text: not listed is fine}
  - at: 0
    private: {from: u1, text: zero}
  - at: 2026-11-25T00:00:00+08:00
    private: {from: u1, text: absolute again}
  - at: +1h30m
    private: {from: u1, text: b}
"""))
    assert [e.at for e in scenario.events] == [
        datetime(2026, 11, 23, 7, 55, tzinfo=CST),
        datetime(2026, 11, 24, 9, 55, tzinfo=CST),
        datetime(2026, 11, 24, 9, 55, tzinfo=CST),
        datetime(2026, 11, 24, 9, 56, 30, tzinfo=CST),
        datetime(2026, 11, 24, 9, 56, 30, tzinfo=CST),
        datetime(2026, 11, 25, 0, 0, tzinfo=CST),
        datetime(2026, 11, 25, 1, 30, tzinfo=CST),
    ]
    assert [e.line for e in scenario.events] == [7, 8, 10, 11, 13, 15, 17]
    assert scenario.until is None


def test_first_relative_event_counts_from_start(tmp_path):
    scenario = load_scenario(write(tmp_path, HEAD + "  - at: +5m\n    private: {from: u1, text: hi}\n"))
    assert scenario.events[0].at == datetime(2026, 11, 23, 8, 0, tzinfo=CST)


def test_times_without_offset_use_default_tz(tmp_path):
    path = write(tmp_path, """\
start: 2026-11-23T07:55:00
bot: {id: bot, name: B}
events:
  - at: 2026-11-23 08:00
    private: {from: u1, text: hi}
""")
    assert load_scenario(path).start == datetime(2026, 11, 23, 7, 55, tzinfo=ZoneInfo("Asia/Shanghai"))
    scenario = load_scenario(path, default_tz=ZoneInfo("Europe/Berlin"))
    assert scenario.start == datetime(2026, 11, 23, 7, 55, tzinfo=ZoneInfo("Europe/Berlin"))
    assert scenario.events[0].at == datetime(2026, 11, 23, 15, 0, tzinfo=CST)


def test_extensions_seed_topic_and_file(tmp_path):
    scenario = load_scenario(write(tmp_path, "seed: 7\n" + HEAD + """\
  - topic: {room: g1, topic: 新群名, by: u1}
  - say: {room: g1, from: u1, file: photo.jpg}
  - private: {from: u1, text: 看图, file: https://example.com/a.png}
  - say: {room: g1, from: u1, text: 42}
"""))
    assert scenario.seed == 7
    topic, photo, private, number = scenario.events
    assert (topic.kind, topic.room, topic.topic, topic.sender) == ("topic", "g1", "新群名", "u1")
    assert (photo.text, photo.file) == (None, "photo.jpg")
    assert (private.text, private.file) == ("看图", "https://example.com/a.png")
    assert number.text == "42"
    assert scenario.rooms[1] == ScenarioRoom("g2", "二群", (), ())


def test_no_events_and_no_rooms(tmp_path):
    scenario = load_scenario(write(tmp_path, "start: 2026-11-23T07:55:00+08:00\nbot: {id: bot, name: B}\n"
                                             "until: 2026-11-23T07:55:00+08:00\n"))
    assert (scenario.rooms, scenario.events) == ((), ())
    assert scenario.until == scenario.start


# --- scenario errors ---------------------------------------------------------------------------------------


def test_unknown_key_inside_an_action(tmp_path):
    err = scenario_error(tmp_path, HEAD + """\
  - at: +1m
    say:
      room: g1
      frm: u1
      text: hi
""")
    assert (err.line, err.message) == (10, "events.0.say.frm: 不认识的键 frm，是不是想写 from？")


def test_unknown_top_level_key(tmp_path):
    err = scenario_error(tmp_path, HEAD.replace("events:", "evnets:"))
    assert (err.line, err.message) == (6, "evnets: 不认识的键 evnets，是不是想写 events？")


def test_missing_required_field(tmp_path):
    err = scenario_error(tmp_path, HEAD + "  - at: +1m\n    say: {room: g1, text: hi}\n")
    assert (err.line, err.message) == (8, "events.0.say.from: 缺少这一项（必填）")


def test_missing_bot(tmp_path):
    err = scenario_error(tmp_path, "start: 2026-11-23T07:55:00+08:00\nevents: []\n")
    assert (err.line, err.message) == (1, "bot: 缺少这一项（必填）")


def test_two_actions_in_one_event(tmp_path):
    err = scenario_error(tmp_path, HEAD + """\
  - private: {from: u1, text: ok}
  - at: +1m
    say: {room: g1, from: u1, text: hi}
    leave: {room: g1, members: [u1]}
""")
    assert err.line == 10
    assert err.message == "每个事件只能写一个动作，这个写了 say、leave：请拆成两个事件"


def test_event_without_action(tmp_path):
    err = scenario_error(tmp_path, HEAD + "  - private: {from: u1, text: ok}\n  - at: +1m\n")
    assert (err.line, err.message) == (8, "每个事件要写一个动作：say、private、join、leave、rename、topic 之一")


def test_empty_action_and_say_without_text(tmp_path):
    err = scenario_error(tmp_path, HEAD + "  - at: +1m\n    say:\n")
    assert (err.line, err.message) == (8, "say 是空的")
    err = scenario_error(tmp_path, HEAD + "  - at: +1m\n    say: {room: g1, from: u1}\n")
    assert (err.line, err.message) == (8, "say 要写 text 或 file")


@pytest.mark.parametrize(("at", "message"), [
    ("8点", "时间 '8点' 看不懂：写成带时区的 ISO 8601 时间，如 2026-11-23T07:56:00+08:00，"
     "或相对时间，如 +10s、+5m、+2h、+1d"),
    ("08:00", "时间 '08:00' 看不懂：写成带时区的 ISO 8601 时间，如 2026-11-23T07:56:00+08:00，"
     "或相对时间，如 +10s、+5m、+2h、+1d"),
    ("+5x", "时间 '+5x' 看不懂：写成 +10s、+5m、+2h、+1d、+1d2h（正负号在前，"
            "d 天 h 小时 m 分钟 s 秒，按这个顺序）"),
    ("10m", "时间 '10m' 看不懂：写成带时区的 ISO 8601 时间，如 2026-11-23T07:56:00+08:00，"
     "或相对时间，如 +10s、+5m、+2h、+1d"),
])
def test_bad_time_string(tmp_path, at, message):
    err = scenario_error(tmp_path, HEAD + f"""\
  - private: {{from: u1, text: ok}}
  - at: {at}
    private: {{from: u1, text: later}}
""")
    assert (err.line, err.message) == (8, message)


def test_bad_start(tmp_path):
    err = scenario_error(tmp_path, HEAD.replace("2026-11-23T07:55:00+08:00", "明天早上") + "  - at: +1m\n")
    assert (err.line, err.message) == (
        1, "时间 '明天早上' 看不懂：写成带时区的 ISO 8601 时间，如 2026-11-23T07:56:00+08:00")


def test_unknown_room(tmp_path):
    err = scenario_error(tmp_path, HEAD + """\
  - say: {room: g1, from: u1, text: ok}
  - at: +1m
    rename:
      member: u1
      room: g9
      alias: x
""")
    assert (err.line, err.message) == (11, "没有群 'g9'（rooms 里有：g1、g2）")


def test_unknown_room_in_the_spec_example_points_at_its_line(tmp_path):
    err = scenario_error(tmp_path, SPEC.replace("leave: {room: g1", "leave: {room: g7"))
    assert (err.line, err.message) == (22, "没有群 'g7'（rooms 里有：g1）")


def test_absolute_time_before_the_previous_event(tmp_path):
    err = scenario_error(tmp_path, HEAD + """\
  - at: 2026-11-23T09:00:00+08:00
    private: {from: u1, text: nine}
  - at: 2026-11-23T08:30:00+08:00
    private: {from: u1, text: half past eight}
""")
    assert err.line == 9
    assert err.message == ("at 2026-11-23T08:30:00+08:00 早于上一个事件（2026-11-23T09:00:00+08:00）："
                           "事件按顺序处理，请按时间先后排列")


def test_absolute_time_before_start(tmp_path):
    err = scenario_error(tmp_path, HEAD + "  - at: 2026-11-23T07:00:00+08:00\n    private: {from: u1, text: x}\n")
    assert err.line == 7 and err.message.startswith("at 2026-11-23T07:00:00+08:00 早于开始时间 start（")


def test_relative_time_going_back(tmp_path):
    err = scenario_error(tmp_path, HEAD + "  - at: +1h\n    private: {from: u1, text: a}\n"
                                          "  - at: -5m\n    private: {from: u1, text: b}\n")
    assert (err.line, err.message) == (9, "at -5m 回到了上一个事件之前：事件按顺序处理，时间只能往后")


def test_until_before_the_last_event(tmp_path):
    err = scenario_error(tmp_path, SPEC.replace("until: 2026-11-25T00:00:00+08:00",
                                                "until: 2026-11-23T08:00:00+08:00"))
    assert (err.line, err.message) == (
        2, "until 2026-11-23T08:00:00+08:00 早于最后一个事件（2026-11-23T08:59:10+08:00）")


def test_duplicate_room_id(tmp_path):
    err = scenario_error(tmp_path, HEAD.replace("{id: g2,", "{id: g1,") + "  - at: +1m\n")
    assert (err.line, err.message) == (5, "群 'g1' 写了两次")


def test_yaml_syntax_error_is_a_scenario_error(tmp_path):
    err = scenario_error(tmp_path, HEAD + "  - say: {room: g1, from: u1, text: hi\n  - at: +1m\n")
    assert isinstance(err, YamlError)
    assert err.line == 8


def test_duplicate_key_is_a_scenario_error(tmp_path):
    err = scenario_error(tmp_path, HEAD + "  - at: +1m\n    at: +2m\n    private: {from: u1, text: hi}\n")
    assert err.line == 8 and err.message.startswith("键 at 写了两次")


def test_not_a_mapping(tmp_path):
    err = scenario_error(tmp_path, "- just\n- a list\n")
    assert (err.line, err.message) == (1, "场景文件的最外层要写 start、bot、rooms 和 events（见 docs/simulate.md）")


def test_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path / "nope.yaml")
    assert caught.value.line is None and caught.value.message == "文件不存在"
