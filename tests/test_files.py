"""Files admins name stay inside the project; URLs reach public addresses only, within a size and a time limit."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from plugin_modules import plugin_module
from test_sop_engine import project

from bot._config import load_config
from bot._files import FilePolicy, FileRefused, fetch_url, project_file, read_source
from bot._yaml import YamlError
from bot.adapters import _wechaty_compat as compat
from bot.adapters._base import SendError
from bot.adapters.wecom import WecomAdapter
from bot.sop._check import load_project

NOW = datetime.fromisoformat("2026-11-23T09:00:00+08:00")
MB = 1_000_000


def _sop_problems(root: Path, file: str) -> list[str]:
    (root / "sop").mkdir(exist_ok=True)
    (root / "sop" / "x.yaml").write_text(f'targets: {{rooms: [g1]}}\nsteps:\n  - id: m\n    at: "08:00"\n'
                                         f'    text: 早\n    file: "{file}"\n', encoding="utf-8")
    return load_project(root, load_config(root), now=NOW)[1]


@pytest.fixture
def root(tmp_path):
    base = tmp_path / "project"
    base.mkdir()
    project(base, {})
    (base / "assets").mkdir()
    (base / "assets" / "poster.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("server secret", encoding="utf-8")
    (base / "assets" / "leak.png").symlink_to(tmp_path / "secret.txt")
    return base


@pytest.mark.parametrize("file", ["/etc/passwd", "../secret.txt", "assets/../../secret.txt", "assets/leak.png"])
def test_sop_check_refuses_a_file_outside_the_project_with_file_and_line(root, file):
    [problem] = _sop_problems(root, file)
    assert problem.startswith("sop/x.yaml:6: steps.m.file:") and "不在项目文件夹里" in problem


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/a.png", "gopher://x/"])
def test_sop_check_refuses_urls_that_are_not_http(root, url):
    [problem] = _sop_problems(root, url)
    assert problem.startswith("sop/x.yaml:6: steps.m.file:") and "http" in problem


def test_a_file_inside_the_project_passes(root):
    assert _sop_problems(root, "assets/poster.png") == []
    assert project_file(root, "assets/poster.png") == (root / "assets" / "poster.png").resolve()


async def test_the_wechaty_file_loader_rechecks_at_send_time(root, tmp_path):
    # check passed while the file was real; then it was swapped for a symlink to a server file
    (root / "assets" / "poster.png").unlink()
    (root / "assets" / "poster.png").symlink_to("/etc/passwd")
    for source in ("assets/poster.png", "/etc/passwd", "../secret.txt", "assets/leak.png"):
        with pytest.raises(FileRefused, match="不在项目文件夹里"):
            await compat.file_box(tmp_path / "cache", source, FilePolicy(root))
    with pytest.raises(FileRefused, match="内网或本机"):
        await compat.file_box(tmp_path / "cache", "http://127.0.0.1:9/x.png", FilePolicy(root))


# --- URLs, against a local server ---------------------------------------------------------------

class _Server:
    """A tiny HTTP server on 127.0.0.1 with the answers the tests need."""

    def __init__(self) -> None:
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()
        self.port = 0
        self.hosts: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        path = request.split()[1]
        self.hosts += [line.split(":", 1)[1].strip() for line in request.splitlines()
                       if line.lower().startswith("host:")]
        if path == "/ok":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        elif path.startswith("/redirect"):
            target = path.split("to=", 1)[1]
            writer.write(f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
        elif path == "/big":
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {2 * MB}\r\nConnection: close\r\n\r\n".encode())
            writer.write(b"x" * 2 * MB)
        elif path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            for _ in range(40):
                writer.write(b"%x\r\n%s\r\n" % (50_000, b"y" * 50_000))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif path == "/stall":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
            await writer.drain()
            self.stalled.set()
            await self.release.wait()
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


@pytest.fixture
async def server():
    state = _Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    yield state
    state.release.set()
    listener.close()


def _policy(root: Path, **kwargs) -> FilePolicy:
    return FilePolicy(root, **{"private_hosts": ("127.0.0.1",), **kwargs})


async def test_loopback_is_refused_unless_the_operator_allows_it(root, server):
    url = f"http://127.0.0.1:{server.port}/ok"
    with pytest.raises(FileRefused, match=r"内网或本机地址 127\.0\.0\.1"):
        await fetch_url(url, FilePolicy(root))
    with pytest.raises(FileRefused, match="内网或本机"):
        await fetch_url(f"http://localhost:{server.port}/ok", FilePolicy(root))
    assert await fetch_url(url, _policy(root)) == b"hello"
    assert await fetch_url(url, _policy(root, private_hosts=("127.0.0.0/8",))) == b"hello"


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/ok", "http://169.254.169.254/latest/meta-data/",
                                    "http://10.1.2.3/", "http://[::1]:{port}/ok", "file:///etc/passwd"])
async def test_a_redirect_is_checked_again(root, server, target):
    url = f"http://127.0.0.1:{server.port}/redirect?to={target.format(port=server.port)}"
    with pytest.raises(FileRefused):
        await fetch_url(url, _policy(root))


async def test_an_allowed_redirect_is_followed(root, server):
    url = f"http://127.0.0.1:{server.port}/redirect?to=/ok"
    assert await fetch_url(url, _policy(root)) == b"hello"


@pytest.mark.parametrize("path", ["/big", "/chunked"])
async def test_a_download_over_the_size_cap_is_refused(root, server, path):
    with pytest.raises(FileRefused, match="超过 1000000 字节"):
        await fetch_url(f"http://127.0.0.1:{server.port}{path}", _policy(root, max_bytes=MB))


async def test_a_stalled_download_gives_up_at_the_timeout(root, server):
    task = asyncio.create_task(fetch_url(f"http://127.0.0.1:{server.port}/stall", _policy(root, timeout=0.5)))
    await server.stalled.wait()
    with pytest.raises(FileRefused, match=r"超过 0\.5 秒"):
        await task


async def test_read_source_reads_project_files_and_refuses_missing_ones(root):
    assert await read_source("assets/poster.png", FilePolicy(root)) == (b"png", "poster.png")
    with pytest.raises(FileRefused, match="没有文件"):
        await read_source("assets/none.png", FilePolicy(root))


def test_a_question_bank_behind_a_symlink_out_of_its_folder_is_refused(root, tmp_path):
    bank = plugin_module("quiz", "bank")
    banks = root / "data" / "quiz"
    banks.mkdir(parents=True)
    (tmp_path / "outside.yaml").write_text("name: 泄露\nquestions:\n  - {question: 密码?, answers: [x]}\n",
                                           encoding="utf-8")
    (banks / "leak.yaml").symlink_to(tmp_path / "outside.yaml")
    [problem] = list(bank.check_banks(banks))
    assert problem.startswith(str(banks / "leak.yaml")) and "符号链接" in problem
    with pytest.raises(LookupError, match="符号链接"):
        bank.find_bank(banks, "leak")


@pytest.mark.parametrize("name", ["/etc/passwd", "../../secret.txt", "leak.j2"])
def test_a_template_name_or_symlink_leading_out_of_the_templates_folder_is_a_check_error(root, tmp_path, name):
    (root / "scripts_templates").mkdir(exist_ok=True)
    (root / "scripts_templates" / "leak.j2").symlink_to(tmp_path / "secret.txt")
    (root / "sop").mkdir(exist_ok=True)
    (root / "sop" / "x.yaml").write_text(f'targets: {{rooms: [g1]}}\nsteps:\n  - id: m\n    at: "08:00"\n'
                                         f'    template: "{name}"\n', encoding="utf-8")
    [problem] = load_project(root, load_config(root), now=NOW)[1]
    assert problem.startswith("sop/x.yaml:5: steps.m:") and "server secret" not in problem
    assert "符号链接" in problem or "not found" in problem


def test_a_points_catalog_behind_a_symlink_out_of_its_folder_is_refused(root, tmp_path):
    catalog = plugin_module("points", "catalog")
    (tmp_path / "outside.yaml").write_text("items:\n  - {name: 口红, cost: 1, stock: 1}\n", encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "points_catalog.yaml").symlink_to(tmp_path / "outside.yaml")
    with pytest.raises(YamlError, match="符号链接"):
        catalog.load_catalog(root / "data" / "points_catalog.yaml")


async def test_the_connection_goes_to_the_address_that_was_checked(root, server, monkeypatch):
    """A name is resolved once: the request is sent to that address (DNS rebinding gains nothing)."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers = iter(["127.0.0.1", "169.254.169.254"])  # a rebinding resolver: allowed first, metadata after

    async def rebinding(host, *args, **kwargs):
        if host == "files.example":
            return [(2, 1, 6, "", (next(answers), 0))]
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    policy = _policy(root, private_hosts=("127.0.0.1",))
    assert await fetch_url(f"http://files.example:{server.port}/ok", policy) == b"hello"
    assert server.hosts == [f"files.example:{server.port}"]


@pytest.mark.parametrize("file", ["assets/leak.png", "/etc/passwd.png", "../secret.png"])
async def test_the_wecom_adapter_rechecks_an_image_path_at_send_time(root, tmp_path, file):
    (tmp_path / "secret.png").write_bytes(b"server secret")
    (root / "assets" / "leak.png").unlink()
    (root / "assets" / "leak.png").symlink_to(tmp_path / "secret.png")
    uploads = []
    adapter = SimpleNamespace(project=root, _media_id=lambda path: uploads.append(path))
    with pytest.raises(SendError, match="不在项目文件夹里"):
        await WecomAdapter._attachment(adapter, file, "早安")
    assert uploads == []
