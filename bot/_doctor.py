"""`qunbot doctor`: can each account in qunbot.toml actually connect? Plain words for what is wrong.

A WeCom account is checked in `bot/adapters/wecom/_doctor.py` (token, 客户联系 permission, groups, callback URL).

For a Wechaty account it checks, in order: the environment variables are set,
something answers at the endpoint, the service accepts the token, an account is
logged in, and how many rooms it is in. It stops at the first failing step and
says what to do about it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from bot._clock import RealClock
from bot._config import AccountSettings, ProjectConfig, load_config
from bot._events import Event
from bot.adapters._base import AdapterError


@dataclass
class AccountReport:
    account: str
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def good(self, text: str) -> None:
        self.lines.append(f"  ok    {text}")

    def bad(self, text: str, hint: str) -> None:
        self.lines.append(f"  FAIL  {text}")
        self.lines.append(f"        → {hint}")
        self.ok = False


async def diagnose(project: Path, *, account: str | None = None, login_timeout: float = 20.0) -> list[AccountReport]:
    config = load_config(project)
    accounts = [a for a in config.accounts if account is None or a.id == account]
    if not accounts:
        raise AdapterError(f"no account {account!r} in qunbot.toml (accounts: "
                           f"{', '.join(a.id for a in config.accounts)})")
    return [await _diagnose_one(project, config, settings, login_timeout) for settings in accounts]


async def _diagnose_one(project: Path, config: ProjectConfig, settings: AccountSettings,
                        login_timeout: float) -> AccountReport:
    report = AccountReport(settings.id)
    if settings.adapter == "wecom":
        from bot.adapters.wecom._doctor import diagnose_wecom

        await diagnose_wecom(project, config, settings, report)
        return report
    if settings.adapter != "wechaty":
        report.lines.append(f"account {settings.id}: simulated (a dry run: `qunbot run` only logs what it would send)")
        return report
    report.lines.append(f"account {settings.id}: Wechaty puppet service "
                        f"(endpoint in ${settings.endpoint_env}, token in ${settings.token_env})")
    try:
        from bot.adapters.wechaty import WechatyAdapter

        clock = RealClock(config.bot.tz)
        adapter = WechatyAdapter.from_settings(settings, clock=clock, project=project, config=config)
    except AdapterError as err:
        report.bad(str(err).removeprefix(f"account {settings.id}: "),
                   "export the variables in the shell or service unit that runs qunbot (docs/wechaty.md)")
        return report
    if adapter.authority is None:
        report.good(f"settings: endpoint {adapter.endpoint}")
    else:
        from bot.adapters._wechaty_discovery import UnknownToken, discovery_base

        base = discovery_base(adapter.authority)
        report.good(f"settings: token only (${settings.endpoint_env} unset): asking the discovery service {base}")
        try:
            await adapter.resolve_endpoint()
        except AdapterError as err:
            hint = (f"ask your puppet provider for a valid token and put it in ${settings.token_env}"
                    if isinstance(err, UnknownToken) else
                    f"is {base} reachable from this machine? set ${settings.authority_env} to your provider's "
                    f"discovery service, or ${settings.endpoint_env} to the service's host:port")
            report.bad(str(err).removeprefix(f"account {settings.id}: "), hint)
            return report
        report.good(f"discovery: the token's puppet service is at {adapter.endpoint}")
    try:
        await adapter.check_reachable()
    except AdapterError as err:
        report.bad(str(err).removeprefix(f"account {settings.id}: ").split(": is the gateway")[0],
                   f"is the gateway running? ${settings.endpoint_env} must be host:port of its gRPC port, "
                   "without http://; from a container, 127.0.0.1 is the container itself")
        return report
    report.good("the endpoint answers")
    adapter.login_timeout = login_timeout

    async def ignore(event: Event) -> None:
        pass

    try:
        await adapter.start(ignore)
    except AdapterError as err:
        message = str(err).removeprefix(f"account {settings.id}: ")
        if "refused the token" in message:
            report.bad(message, f"copy the token into ${settings.token_env} again from your puppet provider; "
                                "a token works with its own service only")
        elif "one event stream at a time" in message:
            report.good("the service accepted the token")
            report.bad(message, "stop that client first (doctor needs the connection for itself while it checks), "
                                "and make sure no other bot uses this token")
        elif "did not log in" in message:
            report.good("the service accepted the token")
            report.bad(message, "log the WeChat account in on the puppet service (scan its QR code), then retry")
        elif "speaks only TLS" in message:
            report.bad(message, "run the TLS-opening proxy from docs/wechaty.md (\"TLS\") and set "
                                f"${settings.endpoint_env} to its host:port")
        else:
            report.bad(message, "the endpoint answers but does not speak the Wechaty puppet protocol as expected: "
                                "check the port, and that TLS is off or terminated before qunbot")
        return report
    try:
        report.good("the service accepted the token")
        me = await adapter.self_member()
        report.good(f"logged in as {me.name if me else '?'} ({me.id if me else '?'})")
        if me and me.name != config.bot.name:
            report.lines.append(f"  note  [bot] name is {config.bot.name!r}: set it to {me.name!r} so replies "
                                "and @-mention handling use the account's real name")
        rooms = await adapter.room_ids()
        report.good(f"in {len(rooms)} room(s)")
    except Exception as err:  # reported, not raised: doctor explains
        report.bad(f"connected, but reading the account failed: {err}", "retry; if it persists, the service "
                   "may run a protocol version qunbot does not know (docs/wechaty.md)")
    finally:
        await adapter.stop()
        await clock.aclose()
    return report


def run_doctor(project: Path, *, account: str | None, login_timeout: float) -> tuple[list[str], bool]:
    reports = asyncio.run(diagnose(project, account=account, login_timeout=login_timeout))
    lines = [line for report in reports for line in report.lines]
    return lines, all(report.ok for report in reports)
