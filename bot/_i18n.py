"""Library errors in the admin's language: pydantic and jinja2 wording becomes plain Chinese here.

Admins and members are not programmers; they read `check` output and the bot's replies, never
tracebacks. Every pydantic or jinja message on its way to a person passes through this module (the
Koishi idea: user-facing text in one place). Key names stay English, as the admin typed them.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

# --- pydantic ----------------------------------------------------------------------------------

_KINDS = {"int": "整数", "float": "数字", "decimal": "数字", "bool": "true 或 false", "str": "文字",
          "string": "文字", "list": "列表（如 [a, b]）", "tuple": "列表（如 [a, b]）", "set": "列表（如 [a, b]）",
          "dict": "键值表（如 {a: 1}）", "model": "键值表（如 {a: 1}）", "datetime": "日期时间（如 2026-12-12 20:00）",
          "date": "日期（如 2026-12-12）", "time": "时间（如 08:00）", "timedelta": "时长（如 10m）"}


def _kind(error_type: str) -> str | None:
    for suffix in ("_type", "_parsing", "_attributes_type"):
        if error_type.endswith(suffix):
            return _KINDS.get(error_type.removesuffix(suffix).removesuffix("_from_datetime"))
    return None


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = ("「」" if value == "" else value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _choices(expected: str) -> str:
    """pydantic's `'a', 'b' or 'c'` as `a、b、c`."""
    return "、".join(part.strip().strip("'") for part in re.split(r",| or ", expected) if part.strip())


def _now(value: Any) -> str:
    """`（现在是 x）` for a scalar the admin wrote; nothing for a whole table or list."""
    return "" if isinstance(value, dict | list | tuple) else f"（现在是 {_shown(value)}）"


_BY_TYPE: dict[str, Callable[[dict[str, Any], Any], str]] = {
    "missing": lambda c, v: "缺少这一项（必填）",
    "greater_than": lambda c, v: f"要大于 {_shown(c['gt'])}（现在是 {_shown(v)}）",
    "greater_than_equal": lambda c, v: f"不能小于 {_shown(c['ge'])}（现在是 {_shown(v)}）",
    "less_than": lambda c, v: f"要小于 {_shown(c['lt'])}（现在是 {_shown(v)}）",
    "less_than_equal": lambda c, v: f"不能大于 {_shown(c['le'])}（现在是 {_shown(v)}）",
    "too_short": lambda c, v: f"至少要写 {c['min_length']} 项",
    "too_long": lambda c, v: f"最多只能写 {c['max_length']} 项",
    "string_too_short": lambda c, v: f"至少要 {c['min_length']} 个字",
    "string_too_long": lambda c, v: f"最多 {c['max_length']} 个字",
    "string_pattern_mismatch": lambda c, v: f"{_shown(v)} 的格式不对（要符合 {c['pattern']}）",
    "literal_error": lambda c, v: f"只能是 {_choices(c['expected'])} 之一（现在是 {_shown(v)}）",
    "enum": lambda c, v: f"只能是 {_choices(c['expected'])} 之一（现在是 {_shown(v)}）",
    "multiple_of": lambda c, v: f"要是 {c['multiple_of']} 的倍数（现在是 {_shown(v)}）",
    "int_from_float": lambda c, v: f"要是整数（现在是 {_shown(v)}）",
    "finite_number": lambda c, v: "要是有限的数字",
    "union_tag_invalid": lambda c, v: f"只能是 {c.get('expected_tags')} 之一",
}


def explain_error(error: ErrorDetails, *, allowed: Iterable[str] = ()) -> str:
    """One pydantic error in Chinese, without its location. `allowed`: the keys the enclosing table
    takes, so an unknown key gets a "是不是想写 …？" suggestion."""
    kind, ctx, value = error["type"], dict(error.get("ctx") or {}), error.get("input")
    if kind == "extra_forbidden":
        key = str(error["loc"][-1]) if error["loc"] else ""
        return unknown_key(key, allowed)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error") or error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _BY_TYPE:
        try:
            return _BY_TYPE[kind](ctx, value)
        except KeyError:
            pass
    if (wanted := _kind(kind)) is not None:
        return f"要写{' ' if wanted[0].isascii() else ''}{wanted}{_now(value)}"
    return f"写得不对{_now(value)}"


def unknown_key(key: str, allowed: Iterable[str]) -> str:
    """`cooldwn` → "不认识的键 cooldwn，是不是想写 cooldown？"."""
    choices = sorted(set(allowed))
    guess = did_you_mean(key, choices)
    if guess is not None:
        return f"不认识的键 {key}，是不是想写 {guess}？"
    if choices:
        return f"不认识的键 {key}（这里能写的键：{'、'.join(choices)}）"
    return f"不认识的键 {key}（写错了，或放错了位置）"


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """The closest of `choices` to a misspelt `word`, if any is close enough."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not found:
        found = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
        found = [c for c in choices if found and c.lower() == found[0]]
    return found[0] if found else None


def keys_at(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str]:
    """The field names of the model found by following `loc` from `model` (for did-you-mean)."""
    current: Any = model
    for part in loc:
        current = _step_into(current, part)
        if current is None:
            return []
    model = _model_of(current)
    return [field.alias or name for name, field in model.model_fields.items()] if model is not None else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in _flatten(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _flatten(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _flatten(arg)]
    return [annotation]


def _step_into(annotation: Any, part: str | int) -> Any:
    model = _model_of(annotation)
    if model is not None and isinstance(part, str):
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
    for candidate in _flatten(annotation):
        origin, args = typing.get_origin(candidate), typing.get_args(candidate)
        if origin in (list, tuple, set, frozenset) and args and isinstance(part, int):
            return args[0]
        if origin is dict and len(args) == 2:
            return args[1]
    return None


def explain_validation(err: ValidationError, model: type[BaseModel] | None = None, *,
                       names: Mapping[str, str] | None = None) -> str:
    """The first error of a ValidationError in Chinese, as `key.path: 说明`, for replies to members and
    plugin-made messages. `names` shows a field as the member typed it (`{"prize": "奖品"}`)."""
    error = err.errors(include_url=False)[0]
    loc = [part for part in error["loc"] if isinstance(part, str | int)]
    parent = loc[:-1] if error["type"] == "extra_forbidden" else loc
    if names and error["type"] == "missing" and loc:
        return f"缺少{names.get(str(loc[-1]), str(loc[-1]))}"
    text = explain_error(error, allowed=keys_at(model, parent) if model is not None else ())
    shown = [names.get(str(part), str(part)) if names else str(part) for part in loc]
    return f"{'.'.join(shown)}: {text}" if shown else text


# --- jinja2 ------------------------------------------------------------------------------------

_TOKENS = {"end of print statement": "}}", "end of statement block": "%}", "end of template": "模板结尾",
           "name": "一个名字", "end of comment": "#}", "begin of print statement": "{{",
           "begin of statement block": "{%", "string": "文字", "integer": "数字"}


_CJK = re.compile(r"[\u4e00-\u9fff]")


def _token(text: str) -> str:
    return _TOKENS.get(text, text)


_JINJA: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"'([^']+)' is undefined"), lambda m: f"变量 {m[1]} 没有定义"),
    (re.compile(r"'None' has no attribute '([^']+)'"), lambda m: f"这里的值是空的，没有 .{m[1]}"),
    (re.compile(r"'(?:[\w.]+\.)?(\w+) object' has no attribute '([^']+)'"),
     lambda m: f"{_OBJECT_NAMES.get(m[1], m[1])}没有 .{m[2]} 这一项"),
    (re.compile(r"expected token '([^']+)', got '([^']+)'"),
     lambda m: f"这里应该是 {_token(m[1])}，却写了 {_token(m[2])}（检查括号是否成对、变量名里有没有空格）"),
    (re.compile(r"Expected an expression, got '([^']+)'"),
     lambda m: f"{_token(m[1])} 前面缺少内容（比如 {{% if %}} 后面要写条件）"),
    (re.compile(r"Unexpected end of template\. Jinja was looking for the following tags: (.+?)\. "
                r"The innermost block that needs to be closed is '(\w+)'"),
     lambda m: f"{{% {m[2]} %}} 没有结束：模板写完了还没找到 {{% end{m[2]} %}}"),
    (re.compile(r"Encountered unknown tag '(\w+)'\. Jinja was looking for the following tags: (.+?)\. "
                r"The innermost block that needs to be closed is '(\w+)'"),
     lambda m: f"这里不能写 {{% {m[1]} %}}：{{% {m[3]} %}} 还没有结束（应该先写 {{% end{m[3]} %}}）"),
    (re.compile(r"Encountered unknown tag '(else|elif|endif|endfor|endmacro|endset|endblock)'"),
     lambda m: f"多了一个 {{% {m[1]} %}}：前面没有和它配对的开头"),
    (re.compile(r"Encountered unknown tag '([^']+)'"), lambda m: f"不认识的标签 {{% {m[1]} %}}"),
    (re.compile(r"unexpected end of template, expected '([^']+)'"),
     lambda m: f"模板写完了还缺 {_token(m[1])}"),
    (re.compile(r"unexpected '([^']+)', expected '([^']+)'"),
     lambda m: f"这里应该是 {_token(m[2])}，却写了 {_token(m[1])}"),
    (re.compile(r"unexpected '([^']+)'"), lambda m: f"多余的 {_token(m[1])}（括号要成对：{{{{ … }}}}、{{% … %}}）"),
    (re.compile(r"unexpected char '(.+)' at \d+"), lambda m: f"这里不能用字符 {m[1]}"),
    (re.compile(r"No filter named '([^']+)'"), lambda m: f"没有叫 {m[1]} 的过滤器"),
    (re.compile(r"No test named '([^']+)'"), lambda m: f"没有叫 {m[1]} 的判断（is 后面）"),
    (re.compile(r"access to attribute '([^']+)' of '([^']+)' object is unsafe"),
     lambda m: f"模板里不能访问 {m[1]}（出于安全考虑）"),
    (re.compile(r"template not found: (.+)"), lambda m: f"找不到模板 {m[1]}"),
    (re.compile(r"^(?:RecursionError|maximum recursion depth)"),
     lambda m: "模板嵌套太深（是不是自己 include 了自己？）"),
    (re.compile(r"^ZeroDivisionError"), lambda m: "除数是 0"),
    (re.compile(r"^(?:MemoryError|OverflowError)"), lambda m: "算出的内容太大了"),
    (re.compile(r"^tag name expected"), lambda m: "{% 后面要写标签名（如 if、for）"),
    (re.compile(r"^expected name"), lambda m: "这里要写一个名字"),
    (re.compile(r"^(?:missing end of|unexpected end of) (?:comment|raw directive)"),
     lambda m: "注释 {# … #} 或 raw 块没有结束"),
    (re.compile(r"^syntax error$"), lambda m: "模板语法有错"),
]

_OBJECT_NAMES = {"RoomInfo": "room（群）", "MemberInfo": "member（成员）", "View": "这个值", "dict": "这个值",
                 "str": "文字",
                 "int": "数字", "float": "数字", "list": "列表", "date": "日期", "datetime": "时间"}


def explain_template(message: str, *, available: Iterable[str] | None = None) -> str:
    """A jinja2 error message in Chinese; for an undefined variable, `available` lists what exists."""
    if _CJK.search(message):
        return message  # ours already
    for pattern, render in _JINJA:
        match = pattern.search(message)
        if match is not None:
            text = render(match)
            if available is not None and pattern.pattern.startswith("'([^']+)' is undefined"):
                text += f"（可以用的变量：{'、'.join(sorted(set(available)))}）"
            return text
    return f"模板出错：{message}" if message else "模板出错"


def is_translated(text: str) -> bool:
    """True if `text` carries no pydantic or jinja English wording (tests use it on every message)."""
    return not any(fragment in text for fragment in ENGLISH_FRAGMENTS)


ENGLISH_FRAGMENTS = (
    "Field required", "Extra inputs", "Input should", "Value error", "validation error", "String should",
    "List should", "Tuple should", "Dictionary should", "Assertion failed", "is undefined", "has no attribute",
    "expected token", "Expected an expression", "unexpected '", "Unexpected end", "unexpected end",
    "Encountered unknown tag", "No filter named", "No test named", "is unsafe", "template not found",
    "Jinja was looking", "unexpected char", "object'", "RecursionError", "UndefinedError",
    "TemplateSyntaxError", "UnicodeDecodeError", "codec can't decode",
)


# --- YAML (ruamel) and encodings ---------------------------------------------------------------

_YAML: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"found character '\\t' that cannot start any token"),
     lambda m: "这一行用了 Tab 缩进：YAML 只能用空格缩进"),
    (re.compile(r'found duplicate key "([^"]*)"'), lambda m: f"键 {m[1]} 写了两次（同一层只能写一次）"),
    (re.compile(r"mapping values are not allowed here"),
     lambda m: "这里不能再有冒号：值里有冒号时请加引号（如 \"08:00\"），或检查缩进"),
    (re.compile(r"expected ',' or '([\]}])', but got '<stream end>'"), lambda m: f"括号没有关上：缺少 {m[1]}"),
    (re.compile(r"expected ',' or '([\]}])', but got"), lambda m: f"括号里的项之间要用逗号隔开，最后要有 {m[1]}"),
    (re.compile(r"found unexpected end of stream"), lambda m: "引号没有关上"),
    (re.compile(r"expected <block end>, but found"), lambda m: "缩进对不齐：同一层的内容要从同一列开始"),
    (re.compile(r"could not find expected ':'"), lambda m: "缺少冒号（键: 值），或引号没有关上"),
    (re.compile(r"found undefined alias '([^']*)'"), lambda m: f"*{m[1]} 引用的 &{m[1]} 不存在"),
    (re.compile(r"found unknown escape character '(.)'"),
     lambda m: f"双引号里的 \\{m[1]} 不是合法的转义：改用单引号，或写成 \\\\{m[1]}"),
    (re.compile(r"while scanning a (?:simple key|quoted scalar)"), lambda m: "引号没有关上，或缺少冒号"),
    (re.compile(r"found a tab character"), lambda m: "这一行用了 Tab：YAML 只能用空格缩进"),
]


def explain_yaml(problem: str) -> str:
    """A ruamel.yaml parse problem in Chinese."""
    for pattern, render in _YAML:
        match = pattern.search(problem)
        if match is not None:
            return render(match)
    return f"YAML 格式有错（{problem}）" if problem else "YAML 格式有错"


def not_utf8() -> str:
    return ("文件不是 UTF-8 编码（多半是 GBK）：请用 UTF-8 重新保存，比如记事本「另存为」时把编码选成 UTF-8，"
            "这一行是第一处读不懂的字")


_CRON_FIELDS = {"minute": "分", "hour": "时", "day": "日", "month": "月", "day_of_week": "星期", "week": "周",
                "year": "年", "second": "秒"}
_CRON: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"the (?:first|last) value \((\d+)\) is higher than the maximum value \((\d+)\)"),
     lambda m: f"{m[1]} 超出范围（最大 {m[2]}）"),
    (re.compile(r"the (?:first|last) value \((\d+)\) is lower than the minimum value \((\d+)\)"),
     lambda m: f"{m[1]} 超出范围（最小 {m[2]}）"),
    (re.compile(r'Unrecognized expression "([^"]*)" for field "(\w+)"'),
     lambda m: f"「{_CRON_FIELDS.get(m[2], m[2])}」这一段写不懂：{m[1]}"),
    (re.compile(r"The minimum value in a range must not be higher than the maximum"),
     lambda m: "范围要从小写到大（如 1-5）"),
    (re.compile(r"[Ii]ncorrect step value"), lambda m: "/ 后面的步长写得不对"),
]


def explain_cron(message: str) -> str:
    """An APScheduler cron-field complaint in Chinese (our own messages pass through unchanged)."""
    for pattern, render in _CRON:
        match = pattern.search(message)
        if match is not None:
            return "cron 写得不对：" + render(match)
    return message


def template_text(err: Any, *, available: Iterable[str] | None = None) -> str:
    """A `TemplateError` as `file:line: 中文` (its own file and line, the wording translated)."""
    where = err.file if err.line is None else f"{err.file}:{err.line}"
    return f"{where}: {explain_template(err.message, available=available)}"


_TOML: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"Invalid value"), lambda m: "值写得不对：文字要加引号（如 name = \"小完子\"），true/false 小写"),
    (re.compile(r"Cannot overwrite a value"), lambda m: "同一个键写了两次"),
    (re.compile(r"Cannot declare \((.*)\) twice"), lambda m: "同一个 [表] 写了两次"),
    (re.compile(r"Expected ']' at the end of a table"), lambda m: "[表名] 缺少 ]"),
    (re.compile(r"Unterminated string"), lambda m: "引号没有关上"),
    (re.compile(r"Expected '=' after a key"), lambda m: "键后面要有 =（键名里不能有空格）"),
    (re.compile(r"Illegal character"), lambda m: "这里有不能用的字符（检查是不是用了中文引号或全角符号）"),
]


def explain_toml(message: str) -> str:
    """A `tomllib` complaint about qunbot.toml in Chinese (the line is reported separately)."""
    for pattern, render in _TOML:
        if (match := pattern.search(message)) is not None:
            return "qunbot.toml 格式有错：" + render(match)
    return f"qunbot.toml 格式有错（{message}）"


def os_error(err: OSError) -> str:
    """Why a file could not be read, in Chinese."""
    if isinstance(err, FileNotFoundError):
        return "文件不存在"
    if isinstance(err, IsADirectoryError):
        return "这是一个文件夹，不是文件"
    if isinstance(err, PermissionError):
        return "没有权限读这个文件"
    return f"读不了这个文件（{err.strerror or err}）"
