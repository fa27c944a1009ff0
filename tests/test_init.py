"""`qunbot init DIR` makes a project that runs at once, from the files shipped in the package (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main

REPO = Path(__file__).resolve().parent.parent


def qunbot(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The installed command, run from a folder that is not this repository."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=120, env=env)


def test_init_creates_a_project_that_chat_and_check_run_at_once(tmp_path):
    made = qunbot("init", "brand_a", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "brand_a"
    for part in ("qunbot.toml", "sop/daily.yaml", "scripts_templates/daily/morning.j2", "plugins/points/__init__.py",
                 "data/points_catalog.yaml", ".gitignore"):
        assert (project / part).is_file() and not (project / part).is_symlink(), part
    assert not list(project.rglob("__pycache__"))
    check = qunbot("check", "--project", "brand_a", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    chat = qunbot("chat", "--project", "brand_a", cwd=tmp_path,
                  stdin="签到\n/wait 1d\n/as owner1\n调整积分 @Bob +50 活动\n/quit\n")
    assert chat.returncode == 0, chat.stderr
    for expected in ("签到成功", "☀️ 早安！", "已为 Bob 增加 50 积分"):
        assert expected in chat.stdout, chat.stdout


def test_init_never_overwrites_a_project(tmp_path):
    (tmp_path / "qunbot.toml").write_text("# mine\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert result.exit_code == 1 and "已经是一个 qunbot 项目" in result.stderr
    assert (tmp_path / "qunbot.toml").read_text(encoding="utf-8") == "# mine\n"


def test_the_sample_is_this_repositorys_own_project():
    sample = REPO / "bot" / "_sample"
    for part in ("qunbot.toml", "sop", "scripts_templates", "plugins", "data", "assets"):
        assert (sample / part).resolve() == (REPO / part).resolve(), part


def test_the_package_data_patterns_ship_every_sample_file():
    """A wheel carries only what pyproject's package-data patterns name: a new data file or template
    folder in the sample must be covered, or `qunbot init` from an installed wheel would miss it."""
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]["bot"]
    bot_dir = REPO / "bot"
    shipped = {path.resolve() for pattern in patterns if pattern.startswith("_sample/")
               for path in bot_dir.glob(pattern) if path.is_file()}
    sample = set()
    for folder, _, names in os.walk(bot_dir / "_sample", followlinks=True):  # the parts are links
        if "__pycache__" in folder or ".wechaty" in folder:
            continue
        sample |= {(Path(folder) / name).resolve() for name in names
                   if not name.endswith((".db", ".db-wal", ".db-shm", ".pyc"))}
    assert len(sample) > 50 and sample - shipped == set()
