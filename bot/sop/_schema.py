"""The SOP file format (`sop/*.yaml`), as strict pydantic models: unknown keys are typos, not silence.

Keys are English (as in `qunbot.toml`), values and comments are the admin's Chinese. docs/sop.md is
the reference. Each step says *when* (exactly one of `at`, `cron`, `offset`, `after_join`) and *what*
(exactly one of `template`, `text`, `variants`, `action`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot._scenario import parse_offset
from bot._yaml import YamlDoc, YamlError, load_yaml, pydantic_error_to_yaml_error

Kind = Literal["content", "interaction", "marketing"]
WHEN_KEYS = ("at", "cron", "offset", "after_join")
WHAT_KEYS = ("template", "text", "variants", "action")
_DAYS = {"mon": "mon", "tue": "tue", "wed": "wed", "thu": "thu", "fri": "fri", "sat": "sat", "sun": "sun",
         "周一": "mon", "周二": "tue", "周三": "wed", "周四": "thu", "周五": "fri", "周六": "sat", "周日": "sun",
         "周天": "sun", "工作日": "mon-fri", "周末": "sat,sun", "每天": "*"}
_ID = re.compile(r"[A-Za-z0-9_\-\u4e00-\u9fff]+")
_HM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def parse_duration(text: str | int, *, signed: bool) -> timedelta:
    """`10m`, `1d`, `+2h`, `-1d`, `0`; `signed` allows a negative value (sequence offsets)."""
    raw = str(text).strip()
    value = parse_offset(raw if raw.startswith(("+", "-")) or raw == "0" else f"+{raw}")
    if value < timedelta(0) and not signed:
        raise ValueError(f"{raw!r} 不能是负数")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Targets(_Strict):
    """Which rooms a file posts to: any room matching any entry."""

    rooms: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    """Glob patterns on the room topic: `完子研究所*` is every room whose topic starts so."""
    tags: tuple[str, ...] = ()
    """Tags from `[rooms.<id>] tags` in qunbot.toml."""

    @field_validator("rooms", "topics", "tags", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value  # `topics: 快闪*` means `topics: [快闪*]`

    @model_validator(mode="after")
    def _some(self) -> Targets:
        if not (self.rooms or self.topics or self.tags):
            raise ValueError("至少写 rooms、topics、tags 中的一项（发到哪些群）")
        return self


class ActionSpec(_Strict):
    """Start a plugin action (`@plugin.action(name, params=Model)`) instead of posting text."""

    plugin: str
    name: str
    params: dict[str, Any] = {}


class Step(_Strict):
    id: str
    at: str | None = None
    days: str | tuple[str, ...] | None = None
    cron: str | None = None
    offset: str | None = None
    after_join: str | None = None
    template: str | None = None
    text: str | None = None
    variants: tuple[str, ...] | None = Field(None, min_length=2)
    action: ActionSpec | None = None
    vars: dict[str, Any] = {}
    file: str | None = None
    """An image or file sent after the text: a path under the project or a URL."""
    kind: Kind | None = None
    grace: str | None = None
    to: Literal["room", "dm"] = "room"
    mention: bool = True
    """Join steps in a room @-mention the new member."""
    from_: str | None = Field(None, alias="from")
    """Recurring steps only: first moment (or day) it may post; see `DateRange` and docs/sop.md."""
    until: str | None = None
    """Recurring steps only: last moment (or day) it may post; `never` lifts the default of a file with start:."""
    member_tags: tuple[str, ...] = ()
    """Join steps only: sent only to a new member who has all these insight tags when the step comes due
    (e.g. `[silent]` for a nudge); others are skipped. Needs the insight plugin."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError(f"步骤 id {value!r} 只能用字母、数字、_、- 和汉字，不能有空格"
                             "（它在日志里指这一步，也保证每条只发一次）")
        return value

    @field_validator("at")
    @classmethod
    def _hm(cls, value: str | None) -> str | None:
        if value is not None and not _HM.fullmatch(value.strip()):
            raise ValueError(f"时间 {value!r} 要写成 时:分，如 \"08:00\"")
        return value

    @field_validator("offset")
    @classmethod
    def _offset(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value, signed=True)
        return value

    @field_validator("after_join", "grace")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value, signed=False)
        return value

    @model_validator(mode="after")
    def _one_each(self) -> Step:
        when = [k for k in WHEN_KEYS if getattr(self, k) is not None]
        what = [k for k in WHAT_KEYS if getattr(self, k) is not None]
        if len(when) != 1:
            raise ValueError(f"步骤 {self.id} 要写且只写 {'、'.join(WHEN_KEYS)} 中的一个（什么时候发），"
                             f"现在{'写了 ' + '、'.join(when) if when else '一个也没写'}")
        if len(what) != 1:
            raise ValueError(f"步骤 {self.id} 要写且只写 {'、'.join(WHAT_KEYS)} 中的一个（发什么），"
                             f"现在{'写了 ' + '、'.join(what) if what else '一个也没写'}")
        if self.days is not None and self.at is None:
            raise ValueError("days 只能和 at 一起用")
        if (self.from_ is not None or self.until is not None) and self.at is None and self.cron is None:
            raise ValueError("from / until 只用于 at 或 cron 步骤（每天、每周重复的步骤）")
        if self.member_tags and self.after_join is None:
            raise ValueError("member_tags 只用于 after_join 步骤（它决定哪些新成员收到）")
        if self.to == "dm" and self.after_join is None:
            raise ValueError("to: dm 只用于 after_join 步骤（私聊新成员）")
        if self.action is not None and self.file is not None:
            raise ValueError("action 步骤不能带 file")
        if self.days is not None:
            day_of_week(self.days)
        return self

    @property
    def when(self) -> str:
        return next(k for k in WHEN_KEYS if getattr(self, k) is not None)

    @property
    def effective_kind(self) -> Kind:
        return self.kind or ("interaction" if self.action is not None else "content")

    @property
    def templates(self) -> tuple[str, ...]:
        return self.variants or ((self.template,) if self.template else ())


class SopFile(_Strict):
    name: str = ""
    description: str = ""
    enabled: bool = True
    group: Literal["long-term", "flash"] = "long-term"
    """A long-term group (长期群) keeps marketing under `[sop] marketing_share`; a flash group (快闪群) may sell."""
    targets: Targets
    start: str | None = None
    """The anchor of `offset` steps: `2026-12-12T20:00:00+08:00` or `2026-12-12 20:00` (bot time zone)."""
    from_: str | None = Field(None, alias="from")
    """Every recurring step of the file posts from then on (a step's own `from` narrows it further)."""
    until: str | None = None
    """Every recurring step of the file posts until then."""
    grace: str = "10m"
    """Default lateness allowed for every step: later than this, a post is skipped and logged."""
    steps: tuple[Step, ...] = Field(min_length=1)

    @field_validator("grace")
    @classmethod
    def _grace(cls, value: str) -> str:
        parse_duration(value, signed=False)
        return value

    @field_validator("start")
    @classmethod
    def _start(cls, value: str | None) -> str | None:
        if value is not None:
            parse_start(value, None)
        return value

    def grace_of(self, step: Step) -> timedelta:
        return parse_duration(step.grace or self.grace, signed=False)


def day_of_week(days: str | tuple[str, ...] | None = None) -> str:
    """APScheduler's `day_of_week` from `[周一, 周三]`, `工作日`, `mon-fri`…"""
    if days is None:
        return "*"
    items = [days] if isinstance(days, str) else list(days)
    out = []
    for item in items:
        key = str(item).strip().lower()
        if key in _DAYS:
            out.append(_DAYS[key])
        elif re.fullmatch(r"(mon|tue|wed|thu|fri|sat|sun)-(mon|tue|wed|thu|fri|sat|sun)", key):
            out.append(key)
        else:
            raise ValueError(f"不认识的日子 {item!r}：请写 周一…周日、工作日、周末（或 mon…sun）")
    return ",".join(out)


def parse_start(text: str, tz: tzinfo | None) -> datetime:
    """A sequence anchor; without an offset it is in the bot's time zone."""
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"start {text!r} 要写成日期和时间，如 \"2026-12-12 20:00\"") from None
    if value.tzinfo is None and tz is not None:
        value = value.replace(tzinfo=tz)
    return value


def parse_sop(doc: YamlDoc) -> SopFile:
    """Validate one loaded YAML document; a problem is a YamlError with the line."""
    if not isinstance(doc.data, dict):
        raise YamlError(doc.file, doc.line(), "SOP 文件的最外层要写 targets: 和 steps:（见 docs/sop.md）")
    try:
        sop = SopFile.model_validate(doc.data)
    except ValidationError as err:
        raise _step_ids(doc, pydantic_error_to_yaml_error(doc, err, model=SopFile)) from None
    seen: set[str] = set()
    for index, step in enumerate(sop.steps):  # on the duplicate's own line: the first one is fine
        if step.id in seen:
            raise YamlError(doc.file, doc.line("steps", index, "id"),
                            f"steps.{step.id}.id: 步骤 id {step.id} 重复了（同一个文件里每个步骤的 id 要不同）")
        seen.add(step.id)
    if sop.start is None:
        for index, step in enumerate(sop.steps):
            if step.offset is not None:
                raise YamlError(doc.file, doc.line("steps", index, "offset"), f"steps.{step.id}.offset: 用 offset "
                                "的步骤需要在文件开头写 start:（开场时间，如 start: \"2026-12-12 20:00\"）")
    bounds = [(("from",), "from", sop.from_), (("until",), "until", sop.until)]
    for index, step in enumerate(sop.steps):
        bounds += [(("steps", index, "from"), f"steps.{step.id}.from", step.from_),
                   (("steps", index, "until"), f"steps.{step.id}.until", step.until)]
    for path, where, value in bounds:
        if value is not None:
            try:
                parse_bound(value, None, None, end=False, has_start=sop.start is not None)
            except ValueError as err:
                raise YamlError(doc.file, doc.line(*path), f"{where}: {err}") from None
    return sop


def _step_ids(doc: YamlDoc, err: YamlError) -> YamlError:
    """`steps.2.at` → `steps.morning.at`: admins know their steps by id, as every other SOP error names them."""
    found = re.match(r"steps\.(\d+)\b", err.message)
    steps = doc.data.get("steps") if isinstance(doc.data, dict) else None
    if found is None or not isinstance(steps, list):
        return err
    step = steps[int(found.group(1))]
    step_id = step.get("id") if isinstance(step, dict) else None
    if not isinstance(step_id, str | int) or not str(step_id).strip():
        return err
    return YamlError(err.file, err.line, f"steps.{step_id}{err.message[found.end():]}")


UNBOUNDED = ("any", "不限")
_RELATIVE = re.compile(r"start\s*(?:([+-])\s*(\S+))?")
_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")


def parse_bound(text: str, tz: tzinfo | None, anchor: datetime | None, *, end: bool,
                has_start: bool = True) -> datetime | None:
    """The moment a `from:` / `until:` value means (None: unbounded, `any` or 不限). A bare date is the
    whole day: `from` its first moment, `until` its last. `start+3d` is relative to the file's start."""
    raw = str(text).strip()
    if raw.lower() in UNBOUNDED:
        return None
    if (relative := _RELATIVE.fullmatch(raw)) is not None:
        if not has_start:
            raise ValueError(f"{raw} 是相对开场的时间，需要文件开头写 start:")
        sign, amount = relative.groups()
        offset = parse_duration(f"{sign}{amount}", signed=True) if amount else timedelta(0)
        return None if anchor is None else anchor + offset
    try:
        if (day := _DATE.fullmatch(raw)) is not None:
            moment = datetime(*map(int, day.groups()))
            moment += timedelta(days=1, microseconds=-1) if end else timedelta(0)
        else:
            moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} 要写成日期（2026-12-01）、日期和时间（2026-12-01 08:00）、"
                         "相对开场的时间（start+3d、start-1d），或 不限") from None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None and tz is not None else moment


def load_sop(path: Any) -> tuple[YamlDoc, SopFile]:
    doc = load_yaml(path)
    return doc, parse_sop(doc)
