"""The callback endpoint `qunbot run` serves for WeCom: URL verification (GET) and encrypted events (POST).

Anything that fails the signature, the timestamp window or the corp id gets 403 and is not processed.
A good POST is answered at once (WeCom retries after 5 s) and its XML handed to `on_event` in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.adapters.wecom._crypto import CallbackRefused, MsgCrypt

log = logging.getLogger("qunbot.wecom")

MAX_BODY = 256 * 1024
"""WeCom's event callbacks are a few kilobytes; anything far larger is refused before it is parsed."""


class CallbackServer:
    """One HTTP listener for one account's callbacks."""

    def __init__(self, crypt: MsgCrypt, on_event: Callable[[str], Awaitable[None]], *, host: str, port: int,
                 path: str, account: str) -> None:
        self.crypt, self.on_event, self.account = crypt, on_event, account
        self.host, self.port, self.path = host, port, path
        self.refused = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Starlette(routes=[Route(path, self._handle, methods=["GET", "POST"])])

    async def _handle(self, request: Request) -> PlainTextResponse:
        query = request.query_params
        signature, timestamp, nonce = (query.get("msg_signature", ""), query.get("timestamp", ""),
                                       query.get("nonce", ""))
        try:
            if request.method == "GET":
                return PlainTextResponse(self.crypt.verify_url(signature, timestamp, nonce, query.get("echostr", "")))
            body = await request.body()
            if len(body) > MAX_BODY:
                raise CallbackRefused(f"the body has {len(body)} bytes, more than a WeCom callback ever has")
            xml = self.crypt.decrypt_message(signature, timestamp, nonce, body)
        except CallbackRefused as err:
            self.refused += 1
            log.warning("account %s: refused a WeCom callback from %s: %s", self.account,
                        request.client.host if request.client else "?", err)
            return PlainTextResponse("forbidden", status_code=403)
        await self.on_event(xml)
        return PlainTextResponse("success")

    async def start(self) -> None:
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="off",
                                access_log=False)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # qunbot owns signals
        self._task = asyncio.create_task(self._server.serve(), name=f"wecom-callback-{self.account}")
        while not self._server.started:
            if self._task.done():
                error = self._task.exception() if not self._task.cancelled() else None
                raise OSError(f"cannot listen on {self.host}:{self.port} ({error or 'the server stopped'})")
            await asyncio.sleep(0.05)
        log.info("account %s: WeCom callbacks on http://%s:%d%s", self.account, self.host, self.port, self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=10)
        self._server, self._task = None, None
