"""scripts/test installs system packages only when CI opts in; otherwise it says the command (issue 15)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "system-packages"
BASH = next(p for p in ("/bin/bash", "/usr/bin/bash") if Path(p).exists())


def fake_system(tmp_path: Path) -> dict[str, str]:
    """A PATH with no chromium nor nginx, a root `id` and an `apt-get` that only records that it ran."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"id": "echo 0", "apt-get": f'echo "$@" >> {tmp_path}/apt.log'}.items():
        (bin_dir / name).write_text(f"#!{BASH}\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}  # only the fakes: a real chromium stays out of sight



def test_a_user_is_told_the_command_and_nothing_is_installed(tmp_path):
    env = fake_system(tmp_path)
    result = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    wanted = "sudo apt-get install chromium chromium-driver fonts-noto-cjk fonts-noto-color-emoji nginx-light"
    assert wanted in result.stderr
    assert not (tmp_path / "apt.log").exists()


def test_ci_opts_in_and_gets_the_packages(tmp_path):
    env = {**fake_system(tmp_path), "QUNBOT_INSTALL_SYSTEM_PACKAGES": "1"}
    result = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "install -y -qq chromium chromium-driver fonts-noto-cjk fonts-noto-color-emoji nginx-light" in (
        tmp_path / "apt.log").read_text()


def test_only_what_is_missing_is_installed(tmp_path):
    env = {**fake_system(tmp_path), "QUNBOT_INSTALL_SYSTEM_PACKAGES": "1"}
    for name in ("chromium", "chromedriver"):  # the browser is there already: only nginx is missing
        (tmp_path / "bin" / name).write_text(f"#!{BASH}\n")
        (tmp_path / "bin" / name).chmod(0o755)
    result = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "install -y -qq nginx-light" in (tmp_path / "apt.log").read_text()
    assert "chromium" not in (tmp_path / "apt.log").read_text()


def test_ci_run_opts_in_and_scripts_test_uses_the_helper():
    assert "QUNBOT_INSTALL_SYSTEM_PACKAGES=1" in (REPO / ".ci" / "run").read_text()
    script = (REPO / "scripts" / "test").read_text()
    assert "scripts/system-packages" in script and "apt-get" not in script
    assert os.access(SCRIPT, os.X_OK)
