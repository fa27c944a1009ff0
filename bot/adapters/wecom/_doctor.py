"""`qunbot doctor` for a WeCom account: secrets set, token, 客户联系 permission, groups seen, callback reachable."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bot._clock import RealClock
from bot.adapters._base import AdapterError
from bot.adapters.wecom._adapter import WecomAdapter
from bot.adapters.wecom._client import WecomApiError
from bot.adapters.wecom._crypto import signature

if TYPE_CHECKING:
    from bot._config import AccountSettings, ProjectConfig
    from bot._doctor import AccountReport

_TOKEN_HINTS = {40013: "the corp id is wrong: 管理后台 → 我的企业 → 企业信息 → 企业ID",
                40001: "the secret is wrong: copy it again from 客户与上下游 → 客户联系 → API → Secret",
                40091: "the secret is wrong: copy it again from 客户与上下游 → 客户联系 → API → Secret"}


async def diagnose_wecom(project: Path, config: ProjectConfig, settings: AccountSettings,
                         report: AccountReport) -> None:
    wecom = settings.wecom
    report.lines.append(f"account {settings.id}: WeCom official API at {wecom.api_base} (corp id in "
                        f"${wecom.corp_id_env}, 客户联系 secret in ${wecom.secret_env})")
    clock = RealClock(config.bot.tz)
    try:
        adapter = WecomAdapter.from_settings(settings, clock=clock, project=project, config=config)
    except AdapterError as err:
        report.bad(str(err).removeprefix(f"account {settings.id}: "),
                   "export the variables in the shell or service unit that runs qunbot (docs/wecom.md)")
        await clock.aclose()
        return
    client = adapter.client
    try:
        try:
            await client.token()
        except WecomApiError as err:
            report.bad(f"no access_token: {err}", _TOKEN_HINTS.get(err.errcode, "check the corp id and the secret"))
            return
        except Exception as err:
            report.bad(f"no answer from {wecom.api_base}: {err}", "check the network or the api_base proxy")
            return
        report.good("the corp id and secret give an access_token")
        try:
            groups = await client.group_chat_ids()
        except WecomApiError as err:
            if err.errcode in (48002, 48001, 60011):
                report.bad(f"the secret may not read customer groups: {err}",
                           "use the 客户联系 secret (客户与上下游 → 客户联系 → API), not an app's secret, and give "
                           "it the group owners in 客户联系 → 权限配置 / 可调用接口的应用")
            else:
                report.bad(f"reading the customer groups failed: {err}", "see WeCom's errcode list for this code")
            return
        report.good("the secret has 客户联系 permission")
        if groups:
            report.good(f"sees {len(groups)} customer group(s)")
        else:
            report.lines.append("  note  sees no customer group: the owners must be members in the secret's "
                                "可见范围, and their groups 客户群 (not internal groups)")
        await _check_callback(adapter, report)
    finally:
        await client.aclose()
        await clock.aclose()


async def _check_callback(adapter: WecomAdapter, report: AccountReport) -> None:
    """Send the callback URL a URL verification signed like WeCom's: a running `qunbot run` must echo it."""
    wecom = adapter.settings
    url = wecom.public_url or f"http://{wecom.callback_host}:{wecom.callback_port}{wecom.callback_path}"
    plain = secrets.token_hex(8)
    echostr = adapter.crypt.encrypt(plain)
    timestamp, nonce = str(int(time.time())), secrets.token_hex(4)
    params = {"msg_signature": signature(adapter.crypt.token, timestamp, nonce, echostr), "timestamp": timestamp,
              "nonce": nonce, "echostr": echostr}
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            answer = await http.get(url, params=params)
    except httpx.HTTPError as err:
        report.bad(f"the callback URL {url} does not answer ({type(err).__name__})",
                   "start `qunbot run` first (it serves the callbacks); with public_url, check the HTTPS proxy "
                   f"forwards {wecom.callback_path} to {wecom.callback_host}:{wecom.callback_port}")
        return
    if answer.status_code == 200 and answer.text == plain:
        report.good(f"the callback URL {url} answers WeCom's URL verification")
        if not wecom.public_url:
            report.lines.append("  note  checked the local address only: set public_url to the HTTPS URL you "
                                "enter in the WeCom console, so doctor checks the way WeCom comes in")
        return
    report.bad(f"the callback URL {url} answers HTTP {answer.status_code}, not the verification",
               "the Token or EncodingAESKey there differ from this account's, or another service answers there")
