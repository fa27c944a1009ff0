"""Drive `peer.mjs` (a real Wechaty puppet service on loopback) from a test: commands in, events out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

PEER_DIR = Path(__file__).resolve().parent
PEER_SCRIPT = PEER_DIR / "peer.mjs"
LINES = {"1.x": PEER_DIR, "0.x": PEER_DIR / "v0"}
"""Package lines the peer runs on: 1.x (what puppet providers run today) and the older 0.x."""

Record = dict[str, Any]


def unavailable() -> str | None:
    """Why the peer cannot run here (None if it can)."""
    if shutil.which("node") is None:
        return "node is not installed: the Wechaty real-peer test needs Node.js (see docs/wechaty.md)"
    return None


def missing_packages() -> str | None:
    for folder in LINES.values():
        if not (folder / "node_modules" / "wechaty-puppet-service").is_dir():
            return f"run `npm ci` in {folder} first (scripts/test does)"
    return None


def require_peer() -> None:
    """At a test module's top: skip it where Node.js or python-wechaty's client is missing; fail it where the
    peer's npm packages are (`scripts/test` installs them, so their absence is a broken set-up, not a skip)."""
    import pytest

    if reason := unavailable():
        pytest.skip(reason, allow_module_level=True)
    pytest.importorskip("wechaty_puppet_service", reason="install the wechaty extra: pip install -e '.[wechaty]'")
    if reason := missing_packages():
        pytest.fail(reason, pytrace=False)


class Peer:
    """One running peer: `await Peer.start()`, `await peer.cmd(...)`, `await peer.wait_for(...)`."""

    def __init__(self, process: asyncio.subprocess.Process, ready: Record) -> None:
        self.process = process
        self.endpoint: str = ready["endpoint"]
        self.token: str = ready["token"]
        self.versions: dict[str, str] = ready["versions"]
        self.records: list[Record] = []
        self._changed = asyncio.Condition()
        self._seq = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *, line: str = "1.x", token: str = "qunbot-test-token", timeout: float = 60,
                    tls: bool = False) -> Peer:
        """`tls=True`: the service speaks only TLS, as 1.x services do unless told not to."""
        env = {**os.environ, "PEER_TOKEN": token, "PEER_PACKAGES": str(LINES[line])}
        env.pop("PEER_TLS", None)
        if tls:
            env["PEER_TLS"] = "1"
        process = await asyncio.create_subprocess_exec(
            "node", str(PEER_SCRIPT), cwd=PEER_DIR, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None if os.environ.get("QB_PEER_STDERR") else asyncio.subprocess.DEVNULL)  # set it to debug
        assert process.stdout is not None
        async with asyncio.timeout(timeout):
            line = await process.stdout.readline()
        if not line:
            await process.wait()
            raise RuntimeError(f"the Wechaty peer exited with {process.returncode} before it was ready")
        return cls(process, json.loads(line))

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            record = json.loads(line)
            async with self._changed:
                self.records.append(record)
                self._changed.notify_all()
        async with self._changed:
            self.records.append({"event": "exit"})
            self._changed.notify_all()

    async def cmd(self, cmd: str, timeout: float = 60, **fields: Any) -> None:
        """Send one command and wait until the peer has carried it out."""
        assert self.process.stdin is not None
        self._seq += 1
        seq = self._seq
        self.process.stdin.write((json.dumps({"cmd": cmd, **fields}, ensure_ascii=False) + "\n").encode())
        await self.process.stdin.drain()
        record = await self.wait_for(lambda r: r.get("seq") == seq, timeout=timeout)
        if record["event"] == "error":
            raise RuntimeError(f"peer command {cmd} failed: {record['message']}")

    async def wait_for(self, predicate: Callable[[Record], bool], *, timeout: float = 60, start: int = 0) -> Record:
        """The first record (from index `start`) the predicate accepts, waiting for it if need be."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for record in self.records[start:]:
                    if predicate(record):
                        return record
                if self.records and self.records[-1].get("event") == "exit":
                    raise RuntimeError("the Wechaty peer exited")
                await self._changed.wait()

    def sent(self, kind: str | None = None) -> list[Record]:
        return [r for r in self.records if r["event"] == "sent" and (kind is None or r["kind"] == kind)]

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.cmd("stop", timeout=5)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
