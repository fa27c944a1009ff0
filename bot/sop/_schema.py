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
        raise ValueError(f"{raw!r} must not be negative")
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
            raise ValueError("give at least one of rooms, topics or tags")
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
    member_tags: tuple[str, ...] = ()
    """Join steps only: sent only to a new member who has all these insight tags when the step comes due
    (e.g. `[silent]` for a nudge); others are skipped. Needs the insight plugin."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError(f"step id {value!r} may use letters, digits, _, - and Chinese characters, no spaces "
                             "(it names the step in logs and keeps each post sent once)")
        return value

    @field_validator("at")
    @classmethod
    def _hm(cls, value: str | None) -> str | None:
        if value is not None and not _HM.fullmatch(value.strip()):
            raise ValueError(f"time {value!r} must be HH:MM, such as \"08:00\"")
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
            raise ValueError(f"step {self.id!r} needs exactly one of {', '.join(WHEN_KEYS)} (has {when or 'none'})")
        if len(what) != 1:
            raise ValueError(f"step {self.id!r} needs exactly one of {', '.join(WHAT_KEYS)} (has {what or 'none'})")
        if self.days is not None and self.at is None:
            raise ValueError("days only goes with at")
        if self.member_tags and self.after_join is None:
            raise ValueError("member_tags only works for after_join steps (it picks which new members get it)")
        if self.to == "dm" and self.after_join is None:
            raise ValueError("to: dm only works for after_join steps (a direct message to the new member)")
        if self.action is not None and self.file is not None:
            raise ValueError("an action step cannot carry a file")
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
    grace: str = "10m"
    """Default lateness allowed for every step: later than this, a post is skipped and logged."""
    steps: tuple[Step, ...] = Field(min_length=1)

    @field_validator("grace")
    @classmethod
    def _grace(cls, value: str) -> str:
        parse_duration(value, signed=False)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SopFile:
        ids = [s.id for s in self.steps]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"step ids must be unique in a file: {', '.join(dup)}")
        if self.start is not None:
            parse_start(self.start, None)
        elif any(s.offset is not None for s in self.steps):
            raise ValueError("steps with offset need a start: at the top of the file")
        return self

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
            raise ValueError(f"unknown day {item!r}: use mon…sun, 周一…周日, 工作日 or 周末")
    return ",".join(out)


def parse_start(text: str, tz: tzinfo | None) -> datetime:
    """A sequence anchor; without an offset it is in the bot's time zone."""
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"start {text!r} must be a date and time such as 2026-12-12T20:00:00+08:00") from None
    if value.tzinfo is None and tz is not None:
        value = value.replace(tzinfo=tz)
    return value


def parse_sop(doc: YamlDoc) -> SopFile:
    """Validate one loaded YAML document; a problem is a YamlError with the line."""
    if not isinstance(doc.data, dict):
        raise YamlError(doc.file, doc.line(), "an SOP file is a mapping with targets: and steps:")
    try:
        return SopFile.model_validate(doc.data)
    except ValidationError as err:
        raise _readable(doc, pydantic_error_to_yaml_error(doc, err)) from None


_PLAINER = {"Extra inputs are not permitted": "unknown key (docs/sop.md lists the keys an SOP file takes)",
            "Input should be a valid tuple": "should be a list, such as [a, b]"}


def _readable(doc: YamlDoc, err: YamlError) -> YamlError:
    """`steps.2.at` → `steps.morning.at` (admins know their steps by id, as every other SOP error names
    them), and pydantic's wording made plainer."""
    message = err.message
    for wording, plainer in _PLAINER.items():
        message = message.replace(wording, plainer)
    err = YamlError(err.file, err.line, message)
    found = re.match(r"steps\.(\d+)\b", err.message)
    steps = doc.data.get("steps") if isinstance(doc.data, dict) else None
    if found is None or not isinstance(steps, list):
        return err
    step = steps[int(found.group(1))]
    step_id = step.get("id") if isinstance(step, dict) else None
    if not isinstance(step_id, str | int) or not str(step_id).strip():
        return err
    return YamlError(err.file, err.line, f"steps.{step_id}{err.message[found.end():]}")


def load_sop(path: Any) -> tuple[YamlDoc, SopFile]:
    doc = load_yaml(path)
    return doc, parse_sop(doc)
