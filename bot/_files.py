"""Files an admin names (an SOP step's `file:`, a template, an asset): inside the project, or fetched safely.

Group admins may write SOP files but must not be able to send the server's own files into a group,
nor make the bot fetch what only the server can reach. So a path must resolve (symlinks included) to a
file inside the project folder, and a URL must be http(s) to a public address, checked again after
every redirect, read with a size cap and a timeout. The connection goes to the address that was
checked, so a name that resolves differently the second time (DNS rebinding) gains nothing. `check`
and every adapter's sender use these same functions, so a file that passed `check` and was swapped
for a symlink later is still refused at send time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

_MAX_REDIRECTS = 5
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FileRefused(Exception):
    """A path or URL that may not be read or fetched; the message is for the admin who wrote it."""


@dataclass(frozen=True)
class FilePolicy:
    """Where the bot may read files from and fetch URLs (`[limits]` in qunbot.toml)."""

    project: Path
    private_hosts: tuple[str, ...] = ()
    """Host names, addresses or networks (`10.0.0.0/8`) the operator allows although they are not public."""
    max_bytes: int = 20_000_000
    timeout: float = 30.0


def file_policy(project: Path, limits: Any) -> FilePolicy:
    """The policy `[limits]` in qunbot.toml sets (a `LimitSettings`)."""
    return FilePolicy(project, tuple(limits.private_hosts), limits.download_bytes, limits.download_seconds)


def is_url(source: str) -> bool:
    return "://" in source


def project_file(project: Path, written: str) -> Path:
    """The file `written` names, relative to the project, with every symlink resolved; FileRefused
    unless that file is inside the project folder."""
    root = project.resolve()
    path = Path(written)
    try:
        resolved = (path if path.is_absolute() else root / path).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise FileRefused(f"文件 {written!r} 无法打开：{err}") from None
    if not resolved.is_relative_to(root):
        raise FileRefused(f"文件 {written!r} 不在项目文件夹里（符号链接也按它指向的位置算），不能发送")
    return resolved


def inside(folder: Path, path: Path) -> bool:
    """Whether `path`, symlinks resolved, lies in `folder` (itself resolved)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def check_url_syntax(url: str) -> None:
    """Refuse what is not an http(s) URL with a host: `file:`, `ftp:`, `gopher:`..."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise FileRefused(f"网址 {url!r} 只能以 http:// 或 https:// 开头")
    if not parts.hostname:
        raise FileRefused(f"网址 {url!r} 缺少主机名")


def _allowed(host: str, address: _Address, private_hosts: Iterable[str]) -> bool:
    if address.is_global:
        return True
    for entry in private_hosts:
        if entry.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


async def check_url_target(url: str, policy: FilePolicy) -> _Address:
    """Resolve the URL's host and refuse it if any address is private, loopback, link-local or reserved;
    return the address to connect to (connecting to it, not to the name, leaves no room for DNS rebinding)."""
    check_url_syntax(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise FileRefused(f"网址 {url!r} 的主机名无法解析：{err}") from None
    addresses: list[_Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not _allowed(host, address, policy.private_hosts):
            raise FileRefused(f"网址 {url!r} 指向内网或本机地址 {address}，不能下载"
                              "（确需使用请在 qunbot.toml 的 [limits] private_hosts 中允许）")
        addresses.append(address)
    if not addresses:
        raise FileRefused(f"网址 {url!r} 的主机名无法解析")
    return addresses[0]


def _pinned(url: str, address: _Address) -> tuple[str, dict[str, str], dict[str, str]]:
    """The request for `url` sent to `address`: the URL with the address as host, the original Host
    header, and for https the original name for SNI and certificate checks."""
    parts = urlsplit(url)
    netloc = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    if parts.port is not None:
        netloc += f":{parts.port}"
    host = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme.lower() == "https" else {}
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), {"Host": host}, extensions


async def fetch_url(url: str, policy: FilePolicy) -> bytes:
    """Download a URL within the policy: public addresses only (every redirect re-checked), at most
    `max_bytes`, within `timeout` seconds in all."""
    try:
        async with asyncio.timeout(policy.timeout):
            return await _fetch(url, policy)
    except TimeoutError:
        raise FileRefused(f"下载 {url!r} 超过 {policy.timeout:g} 秒，已放弃") from None


async def _fetch(url: str, policy: FilePolicy) -> bytes:
    async with httpx.AsyncClient(follow_redirects=False, timeout=policy.timeout, trust_env=False) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            pinned, headers, extensions = _pinned(url, await check_url_target(url, policy))
            async with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise FileRefused(f"下载 {url!r} 失败：HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > policy.max_bytes:
                    raise FileRefused(_too_big(url, policy))
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > policy.max_bytes:
                        raise FileRefused(_too_big(url, policy))
                return bytes(data)
    raise FileRefused(f"下载 {url!r} 跳转次数太多（超过 {_MAX_REDIRECTS} 次）")


def _too_big(url: str, policy: FilePolicy) -> str:
    return f"文件 {url!r} 超过 {policy.max_bytes} 字节（可在 qunbot.toml 的 [limits] download_bytes 调整）"


async def read_source(source: str, policy: FilePolicy) -> tuple[bytes, str]:
    """The bytes and file name of what a message's `file` names: a project file or a URL, re-checked now."""
    if is_url(source):
        data = await fetch_url(source, policy)
        return data, Path(urlsplit(source).path).name or "file"
    path = project_file(policy.project, source)
    if not path.is_file():
        raise FileRefused(f"项目文件夹里没有文件 {source!r}")
    size = path.stat().st_size
    if size > policy.max_bytes:
        raise FileRefused(f"文件 {source!r} 超过 {policy.max_bytes} 字节")
    return await asyncio.to_thread(path.read_bytes), path.name
