"""Token discovery for token-only Wechaty accounts, against a local discovery service (no WeChat, no Node)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from wechaty_peer.discovery import Discovery

from bot._clock import RealClock
from bot._config import load_config
from bot.adapters import AdapterError, make_adapter
from bot.adapters._wechaty_discovery import (
    DEFAULT_AUTHORITY,
    DiscoveryUnavailable,
    UnknownToken,
    discover,
    discovery_url,
)

TOKEN = "puppet_workpro_0123abcd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sleeps:
    """Records the back-off instead of waiting it out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.mark.parametrize("key", ["ip", "host", "both"])
async def test_a_token_resolves_to_its_service(key):
    async with Discovery({TOKEN: "10.1.2.3:8788"}, address_key=key) as service:
        assert await discover(TOKEN, service.authority) == "10.1.2.3:8788"
    assert service.requests == [TOKEN]


async def test_the_token_never_reaches_the_log(caplog):
    caplog.set_level(logging.DEBUG)
    async with Discovery({TOKEN: "10.1.2.3:8788"}) as service:
        await discover(TOKEN, service.authority)
    assert any("/v0/hosties/***" in r.getMessage() for r in caplog.records)  # httpx's request line, masked
    assert not any(TOKEN in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("unknown", "key"), [("zero", "ip"), ("zero", "both"), ("404", "both")])
async def test_an_unknown_or_expired_token_is_named_at_once(unknown, key):
    sleeps = Sleeps()
    async with Discovery({}, unknown=unknown, address_key=key) as service:
        with pytest.raises(UnknownToken, match="knows no puppet service for this token") as raised:
            await discover(TOKEN, service.authority, sleep=sleeps)
    assert "the token is unknown or has expired" in str(raised.value)
    if unknown == "zero":
        assert '"ip": "0.0.0.0"' in str(raised.value) and '"port": 0}' in str(raised.value)
    assert service.requests == [TOKEN] and sleeps.delays == []  # a definite answer: not retried


async def test_a_failing_authority_is_retried_with_back_off():
    sleeps = Sleeps()
    async with Discovery({TOKEN: "10.1.2.3:8788"}, fail_first=3) as service:
        endpoint = await discover(TOKEN, service.authority, delays=(0.5, 1.5), sleep=sleeps)
    assert endpoint == "10.1.2.3:8788"
    assert service.requests == [TOKEN] * 4
    assert sleeps.delays == [0.5, 1.0, 1.5]


async def test_an_authority_that_stays_down_is_a_clear_error_after_the_tries():
    sleeps = Sleeps()
    authority = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DiscoveryUnavailable, match=r"could not ask the discovery service http://127\.0\.0\.1:\d+ "
                                                   r"where the token's puppet service runs \(.*; 4 tries\)"):
        await discover(TOKEN, authority, attempts=4, delays=(2, 60), sleep=sleeps)
    assert sleeps.delays == [2, 4, 8]


async def test_discovery_does_not_block_the_event_loop():
    """The authority answers only after another task ran meanwhile: a blocking lookup would never see it."""
    other_ran = asyncio.Event()

    class Slow(Discovery):
        async def _serve(self, reader, writer):
            await other_ran.wait()
            await super()._serve(reader, writer)

    async with Slow({TOKEN: "10.1.2.3:8788"}) as service:
        lookup = asyncio.create_task(discover(TOKEN, service.authority))
        await asyncio.sleep(0)  # let the lookup start and wait on the network
        assert not lookup.done()
        other_ran.set()
        assert await asyncio.wait_for(lookup, 30) == "10.1.2.3:8788"


def test_the_authority_forms():
    assert discovery_url("api.chatie.io", "a/b") == "https://api.chatie.io/v0/hosties/a%2Fb"
    assert discovery_url("http://127.0.0.1:9/", "t") == "http://127.0.0.1:9/v0/hosties/t"
    assert discovery_url("https://discovery.example:8443", "t") == "https://discovery.example:8443/v0/hosties/t"
    with pytest.raises(AdapterError, match="is not host"):
        discovery_url("http://127.0.0.1:9/some/path", "t")


def write_project(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "qunbot.toml").write_text('''
[bot]
name = "小完子"

[database]
url = "sqlite:///data/bot.db"

[[accounts]]
id = "wx1"
adapter = "wechaty"
token_env = "QB_TEST_TOKEN"
endpoint_env = "QB_TEST_ENDPOINT"
authority_env = "QB_TEST_AUTHORITY"

[pacing]
reconnect_min = 0.1
reconnect_max = 0.2
''', encoding="utf-8")
    return path


def test_an_account_with_only_a_token_uses_the_authority_or_wechatys_default(tmp_path, monkeypatch):
    project = write_project(tmp_path / "proj")
    monkeypatch.setenv("QB_TEST_TOKEN", TOKEN)
    monkeypatch.delenv("QB_TEST_ENDPOINT", raising=False)
    monkeypatch.delenv("QB_TEST_AUTHORITY", raising=False)
    config = load_config(project)
    adapter = make_adapter(config.accounts[0], RealClock(config.bot.tz), project=project, config=config)
    assert adapter.authority == DEFAULT_AUTHORITY == "api.chatie.io" and adapter.endpoint == ""
    monkeypatch.setenv("QB_TEST_AUTHORITY", "http://127.0.0.1:8080")
    adapter = make_adapter(config.accounts[0], RealClock(config.bot.tz), project=project, config=config)
    assert adapter.authority == "http://127.0.0.1:8080"
    monkeypatch.setenv("QB_TEST_ENDPOINT", "10.0.0.5:8788")  # an endpoint wins: no discovery
    adapter = make_adapter(config.accounts[0], RealClock(config.bot.tz), project=project, config=config)
    assert adapter.authority is None and adapter.endpoint == "10.0.0.5:8788"


async def _qunbot(project: Path, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QB_TEST_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "--project", str(project), *args, env={**environment, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_an_unknown_token_gets_a_plain_error_from_doctor_and_run(tmp_path):
    pytest.importorskip("wechaty_puppet_service", reason="install the wechaty extra: pip install -e '.[wechaty]'")
    project = write_project(tmp_path / "proj")
    async with Discovery({}, address_key="ip") as service:  # the answer issue 12 quotes
        env = {"QB_TEST_TOKEN": TOKEN, "QB_TEST_AUTHORITY": service.authority}
        code, out, _ = await _qunbot(project, "doctor", env=env)
        assert code == 1, out
        assert f"ok    settings: token only ($QB_TEST_ENDPOINT unset): asking the discovery service " \
               f"{service.authority}" in out
        assert (f"FAIL  the discovery service {service.authority} knows no puppet service for this token (it "
                'answered {"ip": "0.0.0.0", "port": 0}): the token is unknown or has expired (the token in '
                "$QB_TEST_TOKEN)") in out
        assert "→ ask your puppet provider for a valid token and put it in $QB_TEST_TOKEN" in out

        code, _, err = await _qunbot(project, "run", env=env)
        assert code == 2
        assert err.strip().splitlines()[-1] == (
            f"error: account wx1: the discovery service {service.authority} knows no puppet service for this token "
            '(it answered {"ip": "0.0.0.0", "port": 0}): the token is unknown or has expired (the token in '
            "$QB_TEST_TOKEN)")
    assert service.requests == [TOKEN, TOKEN]


async def test_doctor_says_when_the_authority_cannot_be_asked(tmp_path):
    project = write_project(tmp_path / "proj")
    authority = f"http://127.0.0.1:{free_port()}"
    code, out, _ = await _qunbot(project, "doctor", env={"QB_TEST_TOKEN": TOKEN, "QB_TEST_AUTHORITY": authority})
    assert code == 1
    assert f"FAIL  could not ask the discovery service {authority} where the token's puppet service runs (" in out
    assert f"→ is {authority} reachable from this machine? set $QB_TEST_AUTHORITY" in out


def test_qunbot_run_without_a_token_names_the_variable(tmp_path):
    project = write_project(tmp_path / "proj")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QB_TEST_")}
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(project), "run"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: account wx1: set QB_TEST_TOKEN (")
