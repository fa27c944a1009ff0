"""The README's plugin quick start passes as pasted (issue 15): its files, copied into a fresh project,
pass the project's own ruff and pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
_PATH = re.compile(r"^(?:#|\{#)\s*([\w./]+\.(?:py|j2|toml))\b")


def quickstart_files() -> dict[str, str]:
    """Every code block in README's "Writing a plugin" section whose first line names its file."""
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Writing a plugin"):readme.index("### Testing a plugin")]
    files = {}
    for _, body in _BLOCK.findall(section):
        first, _, rest = body.partition("\n")
        if (found := _PATH.match(first)) is not None:
            files[found.group(1)] = rest if found.group(1).endswith(".j2") else body
    return files


def test_the_quickstart_names_all_four_files():
    assert set(quickstart_files()) == {"plugins/hello.py", "scripts_templates/hello/answer.j2", "qunbot.toml",
                                       "tests/test_hello.py"}


def test_the_plugin_quickstart_passes_ruff_and_pytest_as_pasted(tmp_path):
    for name, text in quickstart_files().items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    bin_dir = Path(sys.executable).parent
    # This repository's rules, with `bot` first-party as it is here (where scripts/test lints a pasted plugin).
    lint = subprocess.run([str(bin_dir / "ruff"), "check", "--config", str(REPO / "pyproject.toml"),
                           "--config", "lint.isort.known-first-party = ['bot']", "--no-cache", "plugins", "tests"],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_hello.py"],
                           cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout
