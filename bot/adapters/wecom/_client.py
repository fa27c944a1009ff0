"""The WeCom server API over httpx: access_token cached and refreshed, rate limits backed off, errors named.

Every call answers `{"errcode": 0, ...}` or an errcode with WeCom's `errmsg`. The token is refreshed
five minutes before `expires_in` runs out and at once on 40014 (invalid) / 42001 (expired); the rate
limit errcodes wait and retry with doubling back-off; every other errcode raises `WecomApiError`
naming the call, the code and WeCom's message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bot.adapters._base import RateLimited, SendError

log = logging.getLogger("qunbot.wecom")

TOKEN_ERRORS = frozenset({40014, 42001, 41001})
"""invalid access_token, access_token expired, access_token missing: fetch a new one and retry once."""
RATE_LIMIT_ERRORS = frozenset({-1, 45009, 45011, 45033})
"""系统繁忙, 接口调用超过限制, API 频率超过限制, 接口并发调用超过限制: wait and retry."""
_REFRESH_MARGIN = 300.0
_PAGE = 1000


class WecomApiError(SendError):
    """WeCom refused a call; the message names the call and carries WeCom's errcode and errmsg."""

    def __init__(self, call: str, errcode: int, errmsg: str) -> None:
        self.call, self.errcode, self.errmsg = call, errcode, errmsg
        super().__init__(f"WeCom {call}: errcode {errcode}: {errmsg}")


class WecomRateLimited(WecomApiError, RateLimited):
    """Still rate-limited after the back-off: the outbox cools the account down."""


class WecomClient:
    """One corp and one secret (the 客户联系 secret)."""

    def __init__(self, corp_id: str, secret: str, *, base_url: str, http: httpx.AsyncClient | None = None,
                 monotonic: Callable[[], float] = time.monotonic, retries: int = 4,
                 backoff: tuple[float, float] = (1.0, 30.0),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.corp_id, self._secret = corp_id, secret
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.AsyncClient(timeout=30.0)
        self._monotonic, self._sleep = monotonic, sleep
        self._retries, self._backoff = retries, backoff
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- token and calls ------------------------------------------------------------------

    async def token(self, *, fresh: bool = False) -> str:
        async with self._token_lock:
            if fresh or self._token is None or self._monotonic() >= self._token_until:
                data = await self._request("gettoken", "GET", params={"corpid": self.corp_id,
                                                                      "corpsecret": self._secret})
                self._token = str(data["access_token"])
                self._token_until = self._monotonic() + max(0.0, float(data.get("expires_in", 7200))
                                                            - _REFRESH_MARGIN)
            return self._token

    async def call(self, name: str, body: dict[str, Any] | None = None, *, params: dict[str, str] | None = None,
                   files: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST (or GET, without body and files) `name` with the access_token; the answer, errcode 0."""
        refreshed = False
        while True:
            token = await self.token(fresh=refreshed)
            try:
                return await self._request(name, "GET" if body is None and files is None else "POST",
                                           params={**(params or {}), "access_token": token}, json=body, files=files)
            except WecomApiError as err:
                if err.errcode in TOKEN_ERRORS and not refreshed:
                    log.info("WeCom %s: access_token %s; fetching a new one", name, err.errmsg)
                    refreshed = True
                    continue
                raise

    async def _request(self, name: str, method: str, **kwargs: Any) -> dict[str, Any]:
        delay = self._backoff[0]
        for attempt in range(self._retries + 1):
            try:
                response = await self._http.request(method, f"{self.base_url}/{name}", **kwargs)
                data = response.json()
            except (httpx.HTTPError, ValueError) as err:
                raise SendError(f"WeCom {name}: no answer from {self.base_url} ({type(err).__name__}: {err})"
                                ) from err
            code = int(data.get("errcode", 0) or 0)
            if code == 0:
                return data
            message = str(data.get("errmsg", ""))
            if code in RATE_LIMIT_ERRORS:
                if attempt == self._retries:
                    raise WecomRateLimited(name, code, message)
                log.warning("WeCom %s: errcode %d (%s); retrying in %.0fs", name, code, message, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            raise WecomApiError(name, code, message)
        raise AssertionError("unreachable")

    # --- customer groups ------------------------------------------------------------------

    async def group_chat_ids(self) -> list[str]:
        """Every customer group the secret can see (externalcontact/groupchat/list, all pages)."""
        ids: list[str] = []
        cursor = ""
        while True:
            body: dict[str, Any] = {"status_filter": 0, "limit": _PAGE}
            if cursor:
                body["cursor"] = cursor
            data = await self.call("externalcontact/groupchat/list", body)
            ids.extend(str(item["chat_id"]) for item in data.get("group_chat_list", []))
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                return ids

    async def group_chat(self, chat_id: str) -> dict[str, Any]:
        """Name, owner, admins and members (with join_time, join_scene, invitor) of one group."""
        data = await self.call("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})
        return dict(data["group_chat"])

    # --- group-message tasks --------------------------------------------------------------

    async def add_group_task(self, sender: str, chat_ids: list[str], text: str,
                             attachments: list[dict[str, Any]]) -> tuple[str, set[str]]:
        """One task to `sender`'s groups; its msgid and the groups WeCom refused at once (`fail_list`)."""
        body: dict[str, Any] = {"chat_type": "group", "sender": sender, "chat_id_list": chat_ids}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = attachments
        data = await self.call("externalcontact/add_msg_template", body)
        return str(data["msgid"]), {str(chat) for chat in data.get("fail_list") or []}

    async def task_senders(self, msgid: str) -> list[dict[str, Any]]:
        """Per sender: status 0 not yet sent (unconfirmed), 2 sent (confirmed)."""
        return await self._paged("externalcontact/get_groupmsg_task", {"msgid": msgid}, "task_list")

    async def send_results(self, msgid: str, userid: str) -> list[dict[str, Any]]:
        """Per group: status 0 not sent, 1 sent, 2/3 failed (not a friend / already got a group message)."""
        return await self._paged("externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": userid},
                                 "send_list")

    async def remind(self, msgid: str) -> None:
        await self.call("externalcontact/remind_groupmsg_send", {"msgid": msgid})

    async def cancel(self, msgid: str) -> None:
        await self.call("externalcontact/cancel_groupmsg_send", {"msgid": msgid})

    async def _paged(self, name: str, body: dict[str, Any], field: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            data = await self.call(name, {**body, "limit": _PAGE, **({"cursor": cursor} if cursor else {})})
            items.extend(data.get(field, []))
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                return items

    # --- media and welcome ----------------------------------------------------------------

    async def upload_image(self, path: Path) -> str:
        """media/upload: a temporary media id, valid for 3 days."""
        data = await self.call("media/upload", params={"type": "image"},
                               files={"media": (path.name, path.read_bytes(), "application/octet-stream")})
        return str(data["media_id"])

    async def welcome_template(self, text: str, template_id: str | None) -> str:
        """Create (or edit) the corp's 入群欢迎语 template; its id."""
        if template_id:
            await self.call("externalcontact/group_welcome_template/edit",
                            {"template_id": template_id, "text": {"content": text}})
            return template_id
        data = await self.call("externalcontact/group_welcome_template/add", {"text": {"content": text}})
        return str(data["template_id"])
