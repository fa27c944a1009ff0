"""`qunbot run`: starts, logs, and stops cleanly on SIGTERM; JSON logs on request."""

from __future__ import annotations

import json
import signal
import subprocess
import sys


def test_run_starts_and_stops_on_sigterm_with_json_logs(repo, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "qunbot.toml").write_text('[database]\nurl = "sqlite:///data/bot.db"\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--project", str(project), "--log-json", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # blocks until the bot says it runs: no sleeping
        lines.append(json.loads(line))
        if lines[-1]["message"].startswith("running"):
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=30) == 0
    messages = [entry["message"] for entry in lines] + [json.loads(x)["message"] for x in rest.splitlines()]
    assert any(m.startswith("qunbot started") for m in messages)
    assert "stopping" in messages
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert (project / "data" / "bot.db").exists()


def test_run_reports_a_bad_config_in_one_line(tmp_path):
    (tmp_path / "qunbot.toml").write_text("[bot]\ntimezone = 'Nowhere/City'\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(tmp_path), "run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "qunbot.toml:2: bot.timezone" in proc.stderr
