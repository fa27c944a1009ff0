"""A hostile SOP template cannot take the dashboard down: the SOP page reports it, and /login answers meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import threading
from datetime import datetime

import httpx

import bot.sop._check
from bot._config import load_config
from bot.dashboard import build_app

ENV = {"QUNBOT_DASHBOARD_PASSWORD": "s3cret-pw"}
NOW = datetime.fromisoformat("2026-11-23T09:00:00+08:00")


def _project(tmp_path, text: str):
    (tmp_path / "sop").mkdir()
    (tmp_path / "qunbot.toml").write_text('[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    (tmp_path / "sop" / "x.yaml").write_text(textwrap.dedent(f"""\
        targets: {{rooms: [g1]}}
        steps:
          - {{id: m, at: "10:00", text: "{text}"}}
    """), encoding="utf-8")
    return tmp_path


@contextlib.asynccontextmanager
async def _client(project):
    app = build_app(project, load_config(project), db_url=f"sqlite:///{project}/d.db", now=lambda: NOW,
                    environ=dict(ENV))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash") as client:
        response = await client.post("/login", data={"password": ENV["QUNBOT_DASHBOARD_PASSWORD"]})
        assert response.status_code == 303
        yield client


async def test_the_sop_page_reports_a_template_over_budget_instead_of_building_it(tmp_path):
    async with _client(_project(tmp_path, "{{ 'a' * 10**8 }}")) as client:
        response = await client.get("/sop")
    assert response.status_code == 200
    assert "sop/x.yaml:3" in response.text and "文字太多" in response.text
    assert len(response.text) < 1_000_000


async def test_login_answers_while_the_sop_page_is_loading(tmp_path, monkeypatch):
    release, finished = threading.Event(), []
    real = bot.sop._check.load_project

    def slow_load(*args, **kwargs):
        release.wait(timeout=10)  # only the broken (blocking) version ever waits this long
        return real(*args, **kwargs)

    monkeypatch.setattr(bot.sop._check, "load_project", slow_load)
    async with _client(_project(tmp_path, "早")) as client:
        async def get(path: str) -> None:
            response = await client.get(path)
            finished.append((path, response.status_code))
            if path == "/login":
                release.set()

        await asyncio.gather(get("/sop"), get("/login"))
    assert finished == [("/login", 200), ("/sop", 200)]
