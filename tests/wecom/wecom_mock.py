"""A local WeCom server API, written from the official docs (developer.work.weixin.qq.com), on 127.0.0.1.

Shapes as documented: every answer carries `errcode`/`errmsg`; `gettoken` gives `access_token` and
`expires_in`; a missing, unknown or expired token is 41001 / 40014 / 42001; a secret without 客户联系
permission gets 48002 on externalcontact calls; `groupchat/list` pages with `cursor`/`next_cursor`;
`add_msg_template` (chat_type group) answers a `msgid`; `get_groupmsg_task` lists the sender with
status 0 (not sent) / 2 (sent); `get_groupmsg_send_result` lists each group with status 0/1/2/3.
The owner confirming a task in the WeCom app is `confirm(msgid)`; tests flip the rest by attribute.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

OK = {"errcode": 0, "errmsg": "ok"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Task:
    msgid: str
    sender: str
    chat_ids: list[str]
    text: str
    attachments: list[dict[str, Any]]
    confirmed_at: int | None = None
    cancelled: bool = False
    reminders: int = 0
    results: dict[str, int] = field(default_factory=dict)


@dataclass
class WecomMock:
    corp_id: str = "wwmockcorp"
    secret: str = "mock-contact-secret"
    expires_in: int = 7200
    contact_permission: bool = True
    max_page: int = 1000
    rate_limited: int = 0
    """The next this-many calls answer 45009 (接口调用超过限制)."""
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    media: dict[str, float] = field(default_factory=dict)
    media_names: dict[str, str] = field(default_factory=dict)
    """The file name each upload carried (its multipart part's filename)."""
    welcome: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, float] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- what tests do -------------------------------------------------------------------

    def add_group(self, chat_id: str, name: str, owner: str, members: list[dict[str, Any]] | None = None) -> None:
        self.groups[chat_id] = {"chat_id": chat_id, "name": name, "owner": owner, "create_time": int(time.time()),
                                "notice": "", "admin_list": [],
                                "member_list": [{"userid": owner, "type": 1, "join_time": int(time.time()),
                                                 "join_scene": 1, "invitor": {"userid": owner}, "name": owner},
                                                *(members or [])]}

    def remove_member(self, chat_id: str, userid: str) -> None:
        group = self.groups[chat_id]
        group["member_list"] = [m for m in group["member_list"] if m["userid"] != userid]

    def add_member(self, chat_id: str, userid: str, name: str, invitor: str) -> None:
        self.groups[chat_id]["member_list"].append({"userid": userid, "type": 2, "join_time": int(time.time()),
                                                    "join_scene": 1, "invitor": {"userid": invitor}, "name": name})

    def confirm(self, msgid: str, status: int = 1, *, except_for: dict[str, int] | None = None) -> None:
        """The owner taps 发送 in the WeCom app: every group of the task gets `status` (1 sent), those in
        `except_for` their own (2 not a friend, 3 already got a group message today)."""
        task = self.tasks[msgid]
        task.results = {**dict.fromkeys(task.chat_ids, status), **(except_for or {})}
        task.confirmed_at = int(time.time())

    def expire_tokens(self) -> None:
        for token in self._tokens:
            self._tokens[token] = 0.0

    def called(self, name: str) -> list[dict[str, Any]]:
        return [body for call, body in self.calls if call == name]

    # --- the API ---------------------------------------------------------------------------

    async def _gettoken(self, request: Request) -> JSONResponse:
        query = request.query_params
        self.calls.append(("gettoken", dict(query)))
        if query.get("corpid") != self.corp_id:
            return JSONResponse({"errcode": 40013, "errmsg": "invalid corpid"})
        if query.get("corpsecret") != self.secret:
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        token = f"tok{next(self._ids)}"
        self._tokens[token] = time.monotonic() + self.expires_in
        return JSONResponse({**OK, "access_token": token, "expires_in": self.expires_in})

    async def _api(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name == "media/upload":
            raw = await request.body()  # multipart/form-data with a part named "media" (no form parser needed)
            multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
            body: dict[str, Any] = {"type": request.query_params.get("type"),
                                    "media": raw if multipart and b'name="media"' in raw else None}
        else:
            body = await request.json() if request.method == "POST" else {}
        self.calls.append((name, body))
        token = request.query_params.get("access_token")
        if not token:
            return JSONResponse({"errcode": 41001, "errmsg": "access_token missing"})
        if token not in self._tokens:
            return JSONResponse({"errcode": 40014, "errmsg": "invalid access_token"})
        if self._tokens[token] < time.monotonic():
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return JSONResponse({"errcode": 45009, "errmsg": "api freq out of limit"})
        if name.startswith("externalcontact/") and not self.contact_permission:
            return JSONResponse({"errcode": 48002, "errmsg": "api forbidden"})
        handler = getattr(self, "_" + name.replace("/", "_"), None)
        if handler is None:
            return JSONResponse({"errcode": 60020, "errmsg": f"mock: no {name}"}, status_code=404)
        return JSONResponse(handler(body))

    def _externalcontact_groupchat_list(self, body: dict[str, Any]) -> dict[str, Any]:
        limit = int(body.get("limit", 0))
        if not 1 <= limit <= 1000:
            return {"errcode": 40058, "errmsg": "limit must be 1-1000"}
        ids = sorted(self.groups)
        start = int(body.get("cursor") or 0)
        page = ids[start:start + min(limit, self.max_page)]
        more = start + len(page) < len(ids)
        return {**OK, "group_chat_list": [{"chat_id": i, "status": 0} for i in page],
                "next_cursor": str(start + len(page)) if more else ""}

    def _externalcontact_groupchat_get(self, body: dict[str, Any]) -> dict[str, Any]:
        group = self.groups.get(body.get("chat_id", ""))
        if group is None:
            return {"errcode": 40050, "errmsg": "chatid not found"}
        members = [dict(m) for m in group["member_list"]]
        if not body.get("need_name"):
            for m in members:
                m.pop("name", None)
        return {**OK, "group_chat": {**group, "member_list": members}}

    def _externalcontact_add_msg_template(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("chat_type") != "group" or not body.get("sender"):
            return {"errcode": 41048, "errmsg": "group tasks need chat_type group and a sender"}
        chat_ids = list(body.get("chat_id_list") or [])
        if len(chat_ids) > 2000:
            return {"errcode": 40011, "errmsg": "too many chat_id_list"}
        fail = [c for c in chat_ids if self.groups.get(c, {}).get("owner") != body["sender"]]
        msgid = f"msg{next(self._ids)}"
        good = [c for c in chat_ids if c not in fail]
        self.tasks[msgid] = Task(msgid, body["sender"], good, (body.get("text") or {}).get("content", ""),
                                 list(body.get("attachments") or []))
        return {**OK, "fail_list": fail, "msgid": msgid}

    def _externalcontact_get_groupmsg_task(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self.tasks.get(body.get("msgid", ""))
        if task is None:
            return {"errcode": 41063, "errmsg": "msgid not found"}
        entry: dict[str, Any] = {"userid": task.sender, "status": 2 if task.confirmed_at else 0}
        if task.confirmed_at:
            entry["send_time"] = task.confirmed_at
        return {**OK, "next_cursor": "", "task_list": [entry]}

    def _externalcontact_get_groupmsg_send_result(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self.tasks.get(body.get("msgid", ""))
        if task is None:
            return {"errcode": 41063, "errmsg": "msgid not found"}
        return {**OK, "next_cursor": "", "send_list": [
            {"chat_id": c, "userid": task.sender, "status": task.results.get(c, 0),
             **({"send_time": task.confirmed_at} if task.confirmed_at else {})} for c in task.chat_ids]}

    def _externalcontact_remind_groupmsg_send(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self.tasks.get(body.get("msgid", ""))
        if task is None:
            return {"errcode": 41063, "errmsg": "msgid not found"}
        task.reminders += 1
        return dict(OK)

    def _externalcontact_cancel_groupmsg_send(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self.tasks.get(body.get("msgid", ""))
        if task is None:
            return {"errcode": 41063, "errmsg": "msgid not found"}
        task.cancelled = True
        return dict(OK)

    def _media_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("type") != "image" or body.get("media") is None:
            return {"errcode": 40004, "errmsg": "invalid media type"}
        media_id = f"media{next(self._ids)}"
        self.media[media_id] = time.time()
        named = re.search(rb'name="media"; filename="([^"]*)"', body["media"])
        self.media_names[media_id] = named.group(1).decode() if named else ""
        return {**OK, "type": "image", "media_id": media_id, "created_at": str(int(time.time()))}

    def _externalcontact_group_welcome_template_add(self, body: dict[str, Any]) -> dict[str, Any]:
        template_id = f"tpl{next(self._ids)}"
        self.welcome[template_id] = (body.get("text") or {}).get("content", "")
        return {**OK, "template_id": template_id}

    def _externalcontact_group_welcome_template_edit(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("template_id") not in self.welcome:
            return {"errcode": 41073, "errmsg": "template not found"}
        self.welcome[body["template_id"]] = (body.get("text") or {}).get("content", "")
        return dict(OK)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/cgi-bin/gettoken", self._gettoken),
                                 Route("/cgi-bin/{name:path}", self._api, methods=["GET", "POST"])])


class MockServer:
    """Serves a `WecomMock` on 127.0.0.1 from a thread, so a `qunbot run` subprocess can reach it."""

    def __init__(self, mock: WecomMock) -> None:
        self.mock = mock
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/cgi-bin"
        self._server = uvicorn.Server(uvicorn.Config(mock.app(), host="127.0.0.1", port=self.port,
                                                     log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve()), daemon=True)

    def __enter__(self) -> MockServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the WeCom mock did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
