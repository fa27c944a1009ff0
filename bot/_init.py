"""`qunbot init DIR`: a new, working project folder from the sample shipped inside the package.

An agency runs many brands, each its own folder; none of them needs a clone of this repository. The
sample is this repository's own project (config, SOP files, templates, built-in plugins, data), so what
`init` creates is exactly what the demo and the tests run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "_sample"
_PARTS = ("qunbot.toml", "sop", "scripts_templates", "plugins", "data", "assets")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.db-wal", "*.db-shm", ".wechaty")
_GITIGNORE = "data/*.db\ndata/*.db-wal\ndata/*.db-shm\n__pycache__/\n"


class InitError(Exception):
    """The folder cannot be made a project (it already is one, or a file is in the way)."""


def init_project(target: Path) -> list[str]:
    """Copy the sample project into `target` (created if missing); return what was created."""
    if (target / "qunbot.toml").exists():
        raise InitError(f"{target} 已经是一个 qunbot 项目（有 qunbot.toml），不会覆盖")
    if target.exists() and not target.is_dir():
        raise InitError(f"{target} 是一个文件，不是文件夹")
    missing = [part for part in _PARTS if not (SAMPLE / part).exists()]
    if missing:
        raise InitError(f"这个 qunbot 安装里缺少示例文件：{', '.join(missing)}（请重新安装 qunbot）")
    target.mkdir(parents=True, exist_ok=True)
    made = []
    for part in _PARTS:
        source, dest = SAMPLE / part, target / part
        if source.is_dir():
            shutil.copytree(source, dest, ignore=_SKIP, dirs_exist_ok=True)
            made.append(f"{part}/")
        else:
            shutil.copyfile(source, dest)
            made.append(part)
    if not (target / ".gitignore").exists():
        (target / ".gitignore").write_text(_GITIGNORE, encoding="utf-8")
    return made
