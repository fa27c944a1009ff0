"""A Wechaty token discovery service on 127.0.0.1, for tests (written from Wechaty's docs and clients).

`GET /v0/hosties/<token>` answers where the token's puppet service runs. Wechaty's token spec says
HTTP 200 when the token is in service and 404 when not; the community authority answers an unknown or
expired token with 200 `{"host": "0.0.0.0", "ip": "0.0.0.0", "port": 0}` (python-wechaty #293); python-wechaty
reads `ip`, wechaty-token 1.x reads `host`. `address_key` picks which the answers carry, `unknown`
how unknown tokens are answered; `fail_first` makes the first requests fail with 503 (an authority
having trouble).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Literal
from urllib.parse import unquote


class Discovery:
    """`async with Discovery({"token": "127.0.0.1:1234"}) as d:` serves on `d.authority` (http://127.0.0.1:PORT)."""

    def __init__(self, services: dict[str, str], *, port: int = 0, unknown: Literal["zero", "404"] = "zero",
                 address_key: Literal["ip", "host", "both"] = "both", fail_first: int = 0) -> None:
        self.services = services
        self.port = port
        self.unknown = unknown
        self.address_key = address_key
        self.fail_first = fail_first
        self.requests: list[str] = []
        """The tokens asked for, in order."""
        self._server: asyncio.Server | None = None

    @property
    def authority(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Discovery:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            method, target, _version = request.split(b"\r\n", 1)[0].decode().split(" ")
            status, body = self._answer(method, target)
            payload = json.dumps(body).encode() if body is not None else b""
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                         "Connection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def _answer(self, method: str, target: str) -> tuple[str, object]:
        prefix = "/v0/hosties/"
        if method != "GET" or not target.startswith(prefix):
            return "404 Not Found", {"error": "not found"}
        token = unquote(target.removeprefix(prefix))
        self.requests.append(token)
        if len(self.requests) <= self.fail_first:
            return "503 Service Unavailable", {"error": "try later"}
        endpoint = self.services.get(token)
        if endpoint is None:
            if self.unknown == "404":
                return "404 Not Found", None
            return "200 OK", self._address("0.0.0.0", 0)
        host, port = endpoint.rsplit(":", 1)
        return "200 OK", self._address(host, int(port))

    def _address(self, host: str, port: int) -> dict[str, object]:
        keys = ("host", "ip") if self.address_key == "both" else (self.address_key,)
        return {**{key: host for key in keys}, "port": port}
