"""What starts a draw: one typed model for the admin command and the SOP action alike."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot import parse_duration

_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})")
COMMAND_KEYS = {"奖品": "prize", "名额": "winners", "人数": "winners", "口令": "keyword", "时长": "duration",
                "截止": "deadline", "等级": "min_level", "签到": "signed_in_today", "入群早于": "joined_before",
                "含管理员": "include_admins", "开奖方式": "mode", "公布来源": "announce_source"}
POSTED_KEYS = {**COMMAND_KEYS, "信标轮次": "beacon_round"}
"""The posted terms line also names the beacon round, which the bot chooses (admins cannot)."""
MODES = {"种子": "seed", "信标": "beacon", "公布": "announced", "seed": "seed", "beacon": "beacon",
         "announced": "announced"}
_YES = {"是", "要", "需要", "yes", "true", "1", "y"}


class StartDraw(BaseModel):
    """Parameters of a draw. Give `duration` ("10m") or `deadline` ("20:00" / "2026-11-23 20:00")."""

    model_config = ConfigDict(extra="forbid")

    prize: str = Field(min_length=1)
    winners: int = Field(1, ge=1, le=500)
    keyword: str | None = None
    duration: str | None = None
    deadline: str | None = None
    min_level: int | None = Field(None, ge=1)
    signed_in_today: bool = False
    joined_before: str | None = None
    include_admins: bool | None = None
    mode: str | None = None
    """seed (种子) | beacon (信标) | announced (公布); default: the plugin's `mode` setting."""
    announce_source: str | None = Field(None, min_length=2, max_length=100)
    """announced mode: where the value will be published, e.g. "11月23日 福彩3D 开奖号码"."""
    beacon_round: int | None = Field(None, ge=1)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        if value is not None and value not in MODES:
            raise ValueError("开奖方式只能是 种子、信标 或 公布")
        return None if value is None else MODES[value]

    @field_validator("prize", "keyword", "announce_source")
    @classmethod
    def _no_equals(cls, value: str | None) -> str | None:
        if value is not None and "=" in unicodedata.normalize("NFKC", value):
            raise ValueError("不能含有 = 号")
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("deadline", "joined_before")
    @classmethod
    def _moment(cls, value: str | None) -> str | None:
        if value is not None:
            parse_moment(value, datetime(2000, 1, 1).astimezone())
        return value

    def deadline_at(self, now: datetime, default_duration: str) -> datetime:
        if self.deadline is not None:
            return parse_moment(self.deadline, now, future=True)
        return now + parse_duration(self.duration or default_duration)


def parse_moment(text: str, now: datetime, *, future: bool = False) -> datetime:
    """"20:00" (today; tomorrow if `future` and already past), "2026-11-23", "2026-11-23 20:00", in the bot's zone."""
    cleaned = unicodedata.normalize("NFKC", text).strip()
    if match := _TIME_OF_DAY.fullmatch(cleaned):
        hour, minute = int(match[1]), int(match[2])
        if hour > 23 or minute > 59:
            raise ValueError(f"时间 {text} 不对（时 0–23，分 0–59）")
        moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return moment + timedelta(days=1) if future and moment <= now else moment
    try:
        parsed = datetime.fromisoformat(cleaned.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"时间 {text} 看不懂：写 20:00、2026-11-23 或 2026-11-23 20:00") from None
    return parsed.replace(tzinfo=now.tzinfo) if parsed.tzinfo is None else parsed


def parse_command(args: str, *, posted: bool = False) -> StartDraw:
    """`奖品=口红 名额=3 口令=我要抽奖 时长=10m 等级=2 签到=是 入群早于=2026-11-20 12:00`.

    A word without `=` continues the previous value, so times with a space need no quotes."""
    values: dict[str, str] = {}
    last: str | None = None
    for token in unicodedata.normalize("NFKC", args).split():
        key, sep, value = token.partition("=")
        if sep:
            keys = POSTED_KEYS if posted else COMMAND_KEYS
            if key not in keys:
                raise ValueError(f"不认识「{key}」：能写的有 {'、'.join(keys)}")
            last = keys[key]
            values[last] = value
        elif last is not None:
            values[last] = f"{values[last]} {token}"
        else:
            raise ValueError(f"「{token}」要写成 名称=值，如 奖品=口红")
    data: dict[str, object] = dict(values)
    for flag in ("signed_in_today", "include_admins"):
        if flag in values:
            data[flag] = values[flag].lower() in _YES
    return StartDraw.model_validate(data)
