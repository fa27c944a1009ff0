"""`qunbot doctor` on a WeCom account, against the mock API and the callback endpoint `qunbot run` serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from wecom_mock import free_port

from bot._doctor import diagnose
from bot.adapters.wecom import MsgCrypt
from bot.adapters.wecom._callback import CallbackServer

TOKEN, KEY = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


@pytest.fixture
def project(tmp_path, wecom, monkeypatch) -> tuple[Path, int]:
    port = free_port()
    (tmp_path / "qunbot.toml").write_text(f'''
[[accounts]]
id = "corp"
adapter = "wecom"

[accounts.wecom]
api_base = "{wecom.url}"
callback_port = {port}
''', encoding="utf-8")
    for name, value in (("WECOM_CORP_ID", wecom.mock.corp_id), ("WECOM_SECRET", wecom.mock.secret),
                        ("WECOM_CALLBACK_TOKEN", TOKEN), ("WECOM_ENCODING_AES_KEY", KEY)):
        monkeypatch.setenv(name, value)
    return tmp_path, port


async def serving(port: int, corp: str, token: str = TOKEN) -> CallbackServer:
    async def ignore(xml: str) -> None:
        pass

    server = CallbackServer(MsgCrypt(token, KEY, corp), ignore, host="127.0.0.1", port=port,
                            path="/wecom/callback", account="corp")
    await server.start()
    return server


async def test_all_good_with_qunbot_run_serving_the_callback(project, wecom):
    path, port = project
    server = await serving(port, wecom.mock.corp_id)
    try:
        [report] = await diagnose(path)
    finally:
        await server.stop()
    text = "\n".join(report.lines)
    assert report.ok, text
    for expected in ("access_token", "客户联系 permission", "sees 2 customer group(s)", "answers WeCom's URL"):
        assert expected in text


async def test_a_secret_without_contact_permission_is_named(project, wecom):
    wecom.mock.contact_permission = False
    [report] = await diagnose(project[0])
    assert not report.ok and "48002" in "\n".join(report.lines) and "客户联系 secret" in "\n".join(report.lines)


async def test_a_wrong_secret_is_named(project, wecom, monkeypatch):
    monkeypatch.setenv("WECOM_SECRET", "nope")
    [report] = await diagnose(project[0])
    assert not report.ok and "40001" in "\n".join(report.lines) and "客户联系 → API" in "\n".join(report.lines)


async def test_an_unreachable_or_foreign_callback_is_a_failure(project, wecom):
    path, port = project
    [report] = await diagnose(path)
    assert not report.ok and "does not answer" in report.lines[-2] and "qunbot run" in report.lines[-1]
    server = await serving(port, wecom.mock.corp_id, token="another-token")
    try:
        [report] = await diagnose(path)
    finally:
        await server.stop()
    assert not report.ok and "HTTP 403" in report.lines[-2]


async def test_missing_secrets_are_listed(project, monkeypatch):
    monkeypatch.delenv("WECOM_ENCODING_AES_KEY")
    [report] = await diagnose(project[0])
    assert not report.ok and "WECOM_ENCODING_AES_KEY" in "\n".join(report.lines)


def test_qunbot_run_with_a_wrong_secret_stops_with_a_plain_error(project, monkeypatch):
    import os
    import subprocess
    import sys

    monkeypatch.setenv("WECOM_SECRET", "nope")
    done = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(project[0]), "run"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: account corp:") and "gettoken: errcode 40001: invalid credential" in last
