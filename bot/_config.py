"""`qunbot.toml`: one validated source for the bot, its accounts, pacing, plugins and rooms.

Errors name the file, the line where the key stands and the dotted key, so an
operator can fix the file without reading Python. Secrets (puppet tokens) are
never in the file: an account names the environment variables that hold them.
"""

from __future__ import annotations

import re
import tomllib
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot._i18n import explain_error, explain_toml, keys_at, not_utf8

CONFIG_FILE = "qunbot.toml"
_MAX_BYTES = 1_000_000
_MAX_DEPTH = 64


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
            raise ValueError(f"不认识的时区 {value!r}（写 IANA 名称，如 Asia/Shanghai）") from None
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


class RoomQuotaSettings(_Strict):
    """`[accounts.room_quota]`: how many posts each room of the account may receive per period."""

    per: Literal["month", "week", "day", "none"] = "month"
    """The WeCom console's 群发规则: month (default), week or day; "none" switches the quota off."""
    limit: int | None = Field(None, gt=0)
    """Posts per period; unset means as many as the period has days (month: 28-31, week: 7, day: 1)."""


class WecomSettings(_Strict):
    """`[accounts.wecom]`: a WeCom (企业微信) corp's customer groups through the official API (docs/wecom.md).

    Secrets stay out of the file: each `*_env` names the environment variable that holds one.
    """

    corp_id_env: str = "WECOM_CORP_ID"
    secret_env: str = "WECOM_SECRET"
    """The 客户联系 secret (管理后台 → 客户与上下游 → 客户联系 → API), not an app's secret."""
    callback_token_env: str = "WECOM_CALLBACK_TOKEN"
    aes_key_env: str = "WECOM_ENCODING_AES_KEY"
    api_base: str = "https://qyapi.weixin.qq.com/cgi-bin"
    """Where the API is; a proxy (or the test mock) goes here."""
    callback_host: str = "127.0.0.1"
    callback_port: int = Field(8471, ge=0, lt=65536)
    callback_path: str = "/wecom/callback"
    public_url: str = ""
    """The callback URL as WeCom reaches it (behind your HTTPS proxy); `qunbot doctor` checks it answers."""
    callback_max_age: float = Field(300.0, gt=0)
    """Seconds a callback's timestamp may be off; older ones are refused as replays."""
    poll_interval: float = Field(60.0, gt=0)
    """Seconds between two looks at the group-message tasks waiting for the owner."""
    remind_every: float = Field(3600.0, gt=0)
    """Seconds between reminders to an owner who has not confirmed a task (at most 3 in 24 h)."""
    confirm_within: float = Field(86400.0, gt=0)
    """Seconds a task without a deadline of its own (not from an SOP step) waits for the owner."""
    batch_window: float = Field(2.0, ge=0)
    """Seconds a post's rooms wait for the rest of its fan-out before each owner's rooms become one task."""
    welcome_template: bool = True
    """Make the welcome plugin's greeting the corp's 入群欢迎语 template."""


class AccountSettings(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    adapter: Literal["simulated", "wechaty", "wecom"] = "simulated"
    token_env: str = "WECHATY_PUPPET_SERVICE_TOKEN"
    endpoint_env: str = "WECHATY_PUPPET_SERVICE_ENDPOINT"
    authority_env: str = "WECHATY_PUPPET_SERVICE_AUTHORITY"
    """Wechaty: where a token-only account's service is looked up when the endpoint variable is unset."""
    pacing: PacingSettings | None = None
    emulate: Literal["wechaty", "workpro", "wecom"] | None = None
    """A simulated account that can do only what this kind of account can (docs/adapters.md)."""
    room_quota: RoomQuotaSettings | None = None
    """Replaces the adapter's own per-room post quota (WeCom: as many a month as the month has days)."""
    max_rooms_per_post: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _emulate_simulated_only(self) -> AccountSettings:
        if self.emulate is not None and self.adapter != "simulated":
            raise ValueError(f"emulate only works with adapter = \"simulated\" (account {self.id} uses "
                             f"{self.adapter!r}, which is a real connection)")
        return self


    wecom: WecomSettings = WecomSettings()


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
    account: str | None = None
    """The account that serves this room (needed for checks only when there are several accounts)."""
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
            raise ValueError(f"heartbeat（{self.heartbeat} 秒）最多是 lease_ttl（{self.lease_ttl} 秒）的一半")
        return self


class SopSettings(_Strict):
    dir: str = "sop"
    marketing_share: float = Field(0.2, ge=0, le=1)


class RetentionSettings(_Strict):
    """`[retention]`: how long finished work is kept (bot/_retention.py). Durations like "30d", "12h"."""

    enabled: bool = True
    sent_texts: str = "30d"
    """Texts of sent (or failed, skipped) messages, their mentions and merged parts are blanked after this; the
    row and its key stay."""
    outbox: str = "90d"
    """Finished outbox rows are deleted after this (counted per day first)."""
    deliveries: str = "180d"
    """Finished SOP delivery rows are deleted after this (counted per day first)."""
    tasks: str = "30d"
    """Finished plugin timers are deleted after this."""
    keep_sources: tuple[str, ...] = ("lottery",)
    """Outbox rows of these plugins are never pruned (a draw is verified against what was posted)."""
    at: str = "04:30"
    """Local time of the daily run."""
    batch: int = Field(2000, ge=100, le=100_000)
    """Rows per transaction: small, so pruning never holds the database for long."""

    @model_validator(mode="after")
    def _sane(self) -> RetentionSettings:
        ages = {name: _age(getattr(self, name)) for name in ("sent_texts", "outbox", "deliveries", "tasks")}
        if ages["outbox"] < ages["sent_texts"]:
            raise ValueError("outbox must be at least as long as sent_texts")
        if min(ages.values()) < timedelta(days=8):
            raise ValueError("keep finished work at least 8 days (keys must outlive redelivery and catch-up windows)")
        time.fromisoformat(self.at)
        return self

    @property
    def sent_texts_age(self) -> timedelta:
        return _age(self.sent_texts)

    @property
    def outbox_age(self) -> timedelta:
        return _age(self.outbox)

    @property
    def deliveries_age(self) -> timedelta:
        return _age(self.deliveries)

    @property
    def tasks_age(self) -> timedelta:
        return _age(self.tasks)

    @property
    def at_time(self) -> time:
        return time.fromisoformat(self.at)


def _age(value: str) -> timedelta:
    from bot._durations import parse_duration

    return parse_duration(value)


class DashboardSettings(_Strict):
    """`qunbot dashboard`: a read-only web page for operators, on this machine only by default."""

    host: str = "127.0.0.1"
    port: int = Field(8470, gt=0, lt=65536)
    password_env: str = "QUNBOT_DASHBOARD_PASSWORD"
    """The environment variable holding the login password; the dashboard refuses to start without one."""
    session_hours: float = Field(12.0, gt=0)


class LimitSettings(_Strict):
    """Bounds on what admins' files can make the bot do (see docs/security.md)."""

    template_loop_iterations: int = Field(100_000, gt=0)
    """Per render: loop iterations, calls and collection items read or built, together."""
    template_output_chars: int = Field(200_000, gt=0)
    """Per render: characters written, read or built by filters, methods and operators, together."""
    template_seconds: float = Field(5.0, gt=0)
    """Per render: wall-clock backstop."""
    download_bytes: int = Field(20_000_000, gt=0)
    """Largest file an SOP step's `file:` URL may download."""
    download_seconds: float = Field(30.0, gt=0)
    private_hosts: tuple[str, ...] = ()
    """Hosts, addresses or networks (`10.0.0.0/8`) that `file:` URLs may reach although they are not public."""


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
    limits: LimitSettings = LimitSettings()
    retention: RetentionSettings = RetentionSettings()
    templates_dir: str = "scripts_templates"
    data_dir: str = "data"

    @model_validator(mode="after")
    def _unique_accounts(self) -> ProjectConfig:
        ids = [a.id for a in self.accounts]
        if len(ids) != len(set(ids)):
            raise ValueError(f"accounts 的 id 不能重复，现在是 {ids}")
        for room_id, room in self.rooms.items():
            if room.account is not None and room.account not in ids:
                raise ValueError(f"rooms.{room_id}.account: 没有叫 {room.account!r} 的账号"
                                 f"（accounts 里有：{'、'.join(ids)}）")
        return self

    def room_account(self, room_id: str) -> str | None:
        """The account serving a room as configured: its `account`, or the only account there is."""
        pinned = self.room(room_id).account
        if pinned is not None:
            return pinned
        return self.accounts[0].id if len(self.accounts) == 1 else None

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
    with path.open("rb") as stream:
        data = stream.read(_MAX_BYTES + 1)
    if len(data) > _MAX_BYTES:
        raise ConfigError(str(path), None, f"文件太大：超过 {_MAX_BYTES} 字节")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), data[:err.start].count(b"\n") + 1, not_utf8()) from None
    too_deep = _too_deep(text)
    if too_deep is not None:  # tomllib recurses per level: refuse before it does, whatever the recursion limit
        raise ConfigError(str(path), too_deep, f"嵌套太深（数组和内联表最多 {_MAX_DEPTH} 层）")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.search(r"line (\d+)", str(err))
        raise ConfigError(str(path), int(match.group(1)) if match else None, explain_toml(str(err))) from None
    except RecursionError:
        raise ConfigError(str(path), None, "嵌套太深") from None
    return parse_config(raw, file=str(path), text=text)


def _too_deep(text: str) -> int | None:
    """The line where arrays and inline tables first nest deeper than _MAX_DEPTH (strings and comments skipped)."""
    depth, line, quote, index = 0, 1, "", 0
    while index < len(text):
        char = text[index]
        if char == "\n":
            line, quote = line + 1, "" if len(quote) == 1 else quote
        elif quote:
            if char == "\\" and quote.startswith('"'):
                index += 1
            elif text.startswith(quote, index):
                index, quote = index + len(quote) - 1, ""
        elif char == "#":
            while index + 1 < len(text) and text[index + 1] != "\n":
                index += 1
        elif char in "\"'":
            quote = char * 3 if text.startswith(char * 3, index) else char
            index += len(quote) - 1
        elif char in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return line
        elif char in "]}":
            depth -= 1
        index += 1
    return None


def parse_config(raw: dict[str, Any], *, file: str = CONFIG_FILE, text: str = "") -> ProjectConfig:
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = tuple(first["loc"])
        key = ".".join(str(part) for part in loc) or "（最外层）"
        parent = loc[:-1] if first["type"] == "extra_forbidden" else loc
        message = explain_error(first, allowed=keys_at(ProjectConfig, parent))
        raise ConfigError(file, toml_line(text, loc), f"{key}: {message}") from None


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
