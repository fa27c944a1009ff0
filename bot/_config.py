"""`qunbot.toml`: one validated source for the bot, its accounts, pacing, plugins and rooms.

Errors name the file, the line where the key stands and the dotted key, so an
operator can fix the file without reading Python. Secrets (puppet tokens) are
never in the file: an account names the environment variables that hold them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_FILE = "qunbot.toml"


class ConfigError(Exception):
    """A project file is invalid; `str()` reads `file:line: key: problem`."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line, self.message = file, line, message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotSettings(_Strict):
    name: str = "小完子"
    timezone: str = "Asia/Shanghai"
    operators: tuple[str, ...] = ()
    """Member ids allowed to run operator commands in every room."""
    handler_timeout: float = Field(10.0, gt=0)
    """Seconds a plugin handler may run before it is cancelled and logged."""
    permission_denied_reply: bool = True
    command_limit: int = Field(10, ge=0)
    """Commands one member may give in one room per `command_window`; beyond it they are ignored quietly.
    0 switches the limit off; operators are never limited."""
    command_window: float = Field(60.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DatabaseSettings(_Strict):
    url: str = "sqlite:///data/qunbot.db"


class PacingSettings(_Strict):
    """Per-account send limits. Defaults stay well under what gets accounts limited.

    Field reports: ~1 msg/s held on web WeChat while 0.5 s intervals failed after
    ~120 messages; bursts over 100+ groups got 发送消息过于频繁 and ~30 min locks.
    """

    min_interval: float = Field(2.0, ge=0)
    """Seconds between two sends of one account, before jitter."""
    jitter: float = Field(1.5, ge=0)
    """Up to this many random extra seconds per send, so sends do not look machine-timed."""
    room_interval: float = Field(3.0, ge=0)
    """Seconds between two sends into the same room."""
    hourly_cap: int = Field(400, gt=0)
    """At most this many sends per account in any rolling hour."""
    retry_base: float = Field(5.0, gt=0)
    max_attempts: int = Field(5, gt=0)
    cooldown: float = Field(1800.0, ge=0)
    """Seconds an account pauses after the platform says it sends too fast."""
    reconnect_min: float = Field(2.0, gt=0)
    """Seconds before the first reconnect after the connection dropped; doubles per failed try."""
    reconnect_max: float = Field(300.0, gt=0)
    max_mentions: int = Field(20, ge=1, le=100)
    """At most this many members @-mentioned in one merged reply (and in one welcome greeting)."""
    merge_quiet: float = Field(3.0, ge=0)
    """A merged reply (签到, 抽奖参与 …) waits until no new one joined it for this many seconds …"""
    merge_wait: float = Field(15.0, ge=0)
    """… but at most this long after its first member; it goes at once when it holds `max_mentions`."""


class AccountSettings(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    adapter: Literal["simulated", "wechaty"] = "simulated"
    token_env: str = "WECHATY_PUPPET_SERVICE_TOKEN"
    endpoint_env: str = "WECHATY_PUPPET_SERVICE_ENDPOINT"
    authority_env: str = "WECHATY_PUPPET_SERVICE_AUTHORITY"
    """Wechaty: where a token-only account's service is looked up when the endpoint variable is unset."""
    pacing: PacingSettings | None = None


class PluginsSettings(BaseModel):
    """`enabled` lists plugin names; every other key is one plugin's own settings table."""

    model_config = ConfigDict(extra="allow", frozen=True)

    enabled: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ("plugins",)

    def settings_for(self, plugin: str) -> dict[str, Any]:
        extra = self.model_extra or {}
        value = extra.get(plugin, {})
        return dict(value) if isinstance(value, dict) else {}


class RoomSettings(_Strict):
    tags: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    plugins_disabled: tuple[str, ...] = ()
    plugins: dict[str, dict[str, Any]] = {}
    """Per-room overrides of plugin settings, merged over `[plugins.<name>]`."""


class ClusterSettings(_Strict):
    """Leases that give each account to exactly one live `qunbot run` process (see docs/scaling.md)."""

    lease_ttl: float = Field(30.0, gt=0)
    """Seconds a lease lasts without renewal: a dead process's accounts are taken over within about this."""
    heartbeat: float = Field(10.0, gt=0)
    """Seconds between renewals, and between a standby process's tries to take an account over."""
    node: str = ""
    """A name for this process in the lease table (default: host name and process id)."""

    @model_validator(mode="after")
    def _renew_in_time(self) -> ClusterSettings:
        if self.heartbeat * 2 > self.lease_ttl:
            raise ValueError(f"heartbeat ({self.heartbeat}s) must be at most half of lease_ttl ({self.lease_ttl}s)")
        return self


class SopSettings(_Strict):
    dir: str = "sop"
    marketing_share: float = Field(0.2, ge=0, le=1)


class DashboardSettings(_Strict):
    """`qunbot dashboard`: a read-only web page for operators, on this machine only by default."""

    host: str = "127.0.0.1"
    port: int = Field(8470, gt=0, lt=65536)
    password_env: str = "QUNBOT_DASHBOARD_PASSWORD"
    """The environment variable holding the login password; the dashboard refuses to start without one."""
    session_hours: float = Field(12.0, gt=0)


class ProjectConfig(_Strict):
    bot: BotSettings = BotSettings()
    database: DatabaseSettings = DatabaseSettings()
    accounts: tuple[AccountSettings, ...] = (AccountSettings(id="default"),)
    pacing: PacingSettings = PacingSettings()
    plugins: PluginsSettings = PluginsSettings()
    rooms: dict[str, RoomSettings] = {}
    sop: SopSettings = SopSettings()
    cluster: ClusterSettings = ClusterSettings()
    dashboard: DashboardSettings = DashboardSettings()
    templates_dir: str = "scripts_templates"
    data_dir: str = "data"

    @model_validator(mode="after")
    def _unique_accounts(self) -> ProjectConfig:
        ids = [a.id for a in self.accounts]
        if len(ids) != len(set(ids)):
            raise ValueError(f"account ids must be unique, got {ids}")
        return self

    def pacing_for(self, account: str) -> PacingSettings:
        for settings in self.accounts:
            if settings.id == account and settings.pacing is not None:
                return settings.pacing
        return self.pacing

    def room(self, room_id: str) -> RoomSettings:
        return self.rooms.get(room_id, _NO_ROOM)


_NO_ROOM = RoomSettings()


def load_config(project: Path) -> ProjectConfig:
    """Load `qunbot.toml` from a project directory; a missing file means all defaults."""
    path = project / CONFIG_FILE
    if not path.exists():
        return ProjectConfig()
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.search(r"line (\d+)", str(err))
        raise ConfigError(str(path), int(match.group(1)) if match else None, str(err)) from None
    return parse_config(raw, file=str(path), text=text)


def parse_config(raw: dict[str, Any], *, file: str = CONFIG_FILE, text: str = "") -> ProjectConfig:
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        key = ".".join(str(part) for part in loc) or "(top level)"
        raise ConfigError(file, toml_line(text, loc), f"{key}: {first['msg']}") from None


def toml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of a dotted key in TOML text: the key under its table, else the table."""
    if not text or not loc:
        return None
    names = [str(part) for part in loc if not isinstance(part, int)]
    lines = text.splitlines()
    for split in range(len(names), 0, -1):
        table, key = names[: split - 1], names[split - 1]
        header = re.compile(r"^\s*\[\[?\s*" + r"\s*\.\s*".join(map(re.escape, table)) + r"\s*\]\]?\s*$")
        in_table = not table
        for number, line in enumerate(lines, start=1):
            if line.lstrip().startswith("["):
                in_table = bool(table) and bool(header.match(line))
                continue
            if in_table and re.match(r"^\s*" + re.escape(key) + r"\s*=", line):
                return number
        if table:
            for number, line in enumerate(lines, start=1):
                if header.match(line):
                    return number
    return None
