"""Read a `qunbot simulate` scenario file (docs/simulate.md) into validated events at absolute times.

Admins write scenarios by hand, so every problem is a ScenarioError that names the file and line. Typos are
caught because unknown keys are rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal, NoReturn
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot._yaml import YamlDoc, YamlError, load_yaml, pydantic_error_to_yaml_error

Kind = Literal["say", "private", "join", "leave", "rename", "topic"]
KINDS: tuple[Kind, ...] = ("say", "private", "join", "leave", "rename", "topic")
SHANGHAI = ZoneInfo("Asia/Shanghai")
_ISO = "写成带时区的 ISO 8601 时间，如 2026-11-23T07:56:00+08:00"


@dataclass(frozen=True, slots=True)
class ScenarioMember:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ScenarioRoom:
    id: str
    topic: str
    admins: tuple[str, ...]
    members: tuple[ScenarioMember, ...]


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """One scenario event; which fields are set depends on `kind` (see the spec)."""

    at: datetime
    line: int | None
    kind: Kind
    room: str | None = None
    sender: str | None = None  # `from` for say/private, `by` for topic
    text: str | None = None
    mentions: tuple[str, ...] = ()
    members: tuple[ScenarioMember, ...] = ()  # join
    member_ids: tuple[str, ...] = ()  # leave
    inviter: str | None = None
    member: str | None = None  # rename
    alias: str | None = None
    topic: str | None = None
    file: str | None = None  # an image or file sent with say/private
    share: str | None = None  # extension: a card sent with say (mini_program, contact_card, link, channel)
    message_id: str | None = None  # `id:` of say/private: the transport's message id


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str
    start: datetime
    until: datetime | None
    bot_id: str
    bot_name: str
    rooms: tuple[ScenarioRoom, ...]
    events: tuple[ScenarioEvent, ...]
    seed: int  # extension: seeds the pacing jitter, default 0


class ScenarioError(YamlError):
    """A problem in a scenario file, as `file:line: message`."""


_OFFSET = re.compile(r"([+-])(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?")
MAX_OFFSET = timedelta(days=3660)


def parse_offset(text: str) -> timedelta:
    """A relative time: +10s, +5m, +2h, +1d, +1d2h, -1d (units in that order), or 0."""
    text = text.strip()
    if text == "0":
        return timedelta(0)
    match = _OFFSET.fullmatch(text)
    if match is None or not any(match.groups()[1:]):
        raise ValueError(f"时间 {text!r} 看不懂：写成 +10s、+5m、+2h、+1d、+1d2h（正负号在前，d 天 h 小时 m 分钟 s 秒，"
                         "按这个顺序）")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups()[1:])
    delta = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if delta > MAX_OFFSET:
        raise ValueError(f"时间 {text!r} 太远了：最多 {MAX_OFFSET.days} 天，是不是写错了？")
    return -delta if match[1] == "-" else delta


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class Member(_Model):
    id: str
    name: str


class Room(_Model):
    id: str
    topic: str = ""
    admins: list[str] = []
    members: list[Member] = []


class Say(_Model):
    room: str
    from_: str = Field(alias="from")
    text: str | None = None
    mentions: list[str] = []
    file: str | None = None
    share: Literal["mini_program", "contact_card", "link", "channel"] | None = None
    """Extension: the message is a shared card of this kind (`text` is its title)."""
    id: str | None = Field(None, min_length=1)
    """The transport's message id: the same id twice is one message delivered twice."""


class Private(_Model):
    from_: str = Field(alias="from")
    text: str | None = None
    file: str | None = None
    id: str | None = Field(None, min_length=1)


class Join(_Model):
    room: str
    members: list[Member] = Field(min_length=1)
    inviter: str | None = None


class Leave(_Model):
    room: str
    members: list[str] = Field(min_length=1)


class Rename(_Model):
    room: str
    member: str
    alias: str


class Topic(_Model):
    room: str
    topic: str
    by: str | None = None


class Event(_Model):
    at: str | None = None
    say: Say | None = None
    private: Private | None = None
    join: Join | None = None
    leave: Leave | None = None
    rename: Rename | None = None
    topic: Topic | None = None


class ScenarioFile(_Model):
    start: str
    until: str | None = None
    bot: Member
    rooms: list[Room] = []
    events: list[Event] = []
    seed: int = 0


def load_scenario(path: Path | str, *, default_tz: tzinfo = SHANGHAI) -> Scenario:
    """Parse and check a scenario file. Times need an offset (`+08:00`); one without is read in `default_tz`."""
    try:
        doc = load_yaml(path)
    except YamlError as err:
        raise ScenarioError(err.file, err.line, err.message) from None
    if not isinstance(doc.data, dict):
        raise ScenarioError(doc.file, doc.line(),
                            "场景文件的最外层要写 start、bot、rooms 和 events（见 docs/simulate.md）")
    try:
        model = ScenarioFile.model_validate(doc.data)
    except ValidationError as err:
        found = pydantic_error_to_yaml_error(doc, err, model=ScenarioFile)
        raise ScenarioError(found.file, found.line, found.message) from None
    return _Builder(doc, default_tz).build(model)


class _Builder:
    """Checks what a schema cannot (one action per event, known rooms, time order) and resolves times."""

    def __init__(self, doc: YamlDoc, tz: tzinfo) -> None:
        self.doc, self.tz = doc, tz

    def fail(self, message: str, *path: str | int) -> NoReturn:
        raise ScenarioError(self.doc.file, self.doc.line(*path), message)

    def build(self, model: ScenarioFile) -> Scenario:
        start = self.absolute(model.start, "start")
        room_ids: list[str] = []
        for index, room in enumerate(model.rooms):
            if room.id in room_ids:
                self.fail(f"群 {room.id!r} 写了两次", "rooms", index, "id")
            room_ids.append(room.id)
        now, events = start, []
        for index, event in enumerate(model.events):
            now = self.event_time(event.at, now, index)
            events.append(self.event(event, now, index, room_ids))
        until = None
        if model.until is not None:
            until = self.absolute(model.until, "until")
            if until < now:
                what = "最后一个事件" if events else "开始时间 start"
                self.fail(f"until {model.until} 早于{what}（{now.isoformat()}）", "until")
        rooms = tuple(ScenarioRoom(r.id, r.topic, tuple(r.admins), _members(r.members)) for r in model.rooms)
        return Scenario(self.doc.file, start, until, model.bot.id, model.bot.name, rooms, tuple(events),
                        model.seed)

    def absolute(self, text: str, *path: str | int, hint: str = _ISO) -> datetime:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"时间 {text!r} 看不懂：{hint}", *path)
        return value if value.tzinfo is not None else value.replace(tzinfo=self.tz)

    def event_time(self, at: str | None, previous: datetime, index: int) -> datetime:
        """`at` is absolute, or relative to the previous event (the first: to start); missing means no wait."""
        if at is None:
            return previous
        path = ("events", index, "at")
        earlier = "上一个事件" if index else "开始时间 start"
        if at.startswith(("+", "-")) or at.strip() == "0":
            try:
                delta = parse_offset(at)
            except ValueError as err:
                self.fail(str(err), *path)
            if delta < timedelta(0):
                self.fail(f"at {at} 回到了{earlier}之前：事件按顺序处理，时间只能往后", *path)
            try:
                return previous + delta
            except OverflowError:
                self.fail(f"相对时间 {at} 超出了 9999 年", *path)
        value = self.absolute(at, *path, hint=f"{_ISO}，或相对时间，如 +10s、+5m、+2h、+1d")
        if value < previous:
            self.fail(f"at {at} 早于{earlier}（{previous.isoformat()}）：事件按顺序处理，请按时间先后排列", *path)
        return value

    def event(self, event: Event, at: datetime, index: int, room_ids: list[str]) -> ScenarioEvent:
        raw: dict[str, Any] = self.doc.data["events"][index]
        kinds = [kind for kind in KINDS if kind in raw]
        if not kinds:
            self.fail(f"每个事件要写一个动作：{'、'.join(KINDS)} 之一", "events", index)
        if len(kinds) > 1:
            self.fail(f"每个事件只能写一个动作，这个写了 {'、'.join(kinds)}：请拆成两个事件",
                      "events", index, kinds[1])
        kind = kinds[0]
        action = getattr(event, kind)
        if action is None:
            self.fail(f"{kind} 是空的", "events", index, kind)
        room = getattr(action, "room", None)
        if room is not None and room not in room_ids:
            known = "、".join(room_ids) or "无"
            self.fail(f"没有群 {room!r}（rooms 里有：{known}）", "events", index, kind, "room")
        if isinstance(action, Say | Private) and action.text is None and action.file is None:
            self.fail(f"{kind} 要写 text 或 file", "events", index, kind)
        line = self.doc.line("events", index)
        match action:
            case Say():
                return ScenarioEvent(at, line, kind, room=room, sender=action.from_, text=action.text,
                                     mentions=tuple(action.mentions), file=action.file, share=action.share,
                                     message_id=action.id)
            case Private():
                return ScenarioEvent(at, line, kind, sender=action.from_, text=action.text, file=action.file,
                                     message_id=action.id)
            case Join():
                return ScenarioEvent(at, line, kind, room=room, members=_members(action.members),
                                     inviter=action.inviter)
            case Leave():
                return ScenarioEvent(at, line, kind, room=room, member_ids=tuple(action.members))
            case Rename():
                return ScenarioEvent(at, line, kind, room=room, member=action.member, alias=action.alias)
            case Topic():
                return ScenarioEvent(at, line, kind, room=room, topic=action.topic, sender=action.by)
        raise AssertionError(kind)  # pragma: no cover - KINDS and the models above match


def _members(members: list[Member]) -> tuple[ScenarioMember, ...]:
    return tuple(ScenarioMember(m.id, m.name) for m in members)
