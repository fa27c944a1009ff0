"""The simulated week on PostgreSQL: dashboard pages, export and forget (raw SQL and JSON casts differ there)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import text
from starlette.testclient import TestClient
from week_data import REPO, ROOMS, simulate_week

from bot._config import load_config
from bot._db import make_engine
from bot.cli import main
from bot.dashboard import build_app


async def test_week_on_postgresql(postgres_url, tmp_path):
    week = await simulate_week(REPO, postgres_url)
    app = build_app(REPO, load_config(REPO), db_url=postgres_url, now=lambda: week.end,
                    environ={"QUNBOT_DASHBOARD_PASSWORD": "pw"})
    with TestClient(app) as client:
        client.post("/login", data={"password": "pw"})
        pages = {p: client.get(p) for p in ("/", "/rooms/g1", "/sop", "/draws", "/variants", "/guard",
                                            "/?q=完子*&sort=-change&page=2", "/?quiet=1")}
    assert {p: r.status_code for p, r in pages.items()} == dict.fromkeys(pages, 200)
    charts = json.loads(re.search(r'id="chart-data">(.*?)</script>', pages["/"].text, re.S)[1])
    days = [week.end.date() - timedelta(days=13 - i) for i in range(14)]
    assert charts["messages"]["data"]["datasets"][0]["data"] == [sum(week.messages[r][d] for r in ROOMS) for d in days]
    assert charts["signins"]["data"]["datasets"][0]["data"] == [sum(week.signins[r][d] for r in ROOMS) for d in days]
    assert sum(charts["sent"]["data"]["datasets"][0]["data"]) > 0
    variants = json.loads(re.search(r'id="chart-data">(.*?)</script>', pages["/variants"].text, re.S)[1])
    assert variants["variants-0"]["data"]["datasets"][0]["data"] == [week.noon_replies["g1"] / 5,
                                                                      week.noon_replies["g2"] / 5]
    assert "✔ 一致" in pages["/draws"].text and "玫瑰口红：2" in pages["/draws"].text

    runner = CliRunner()
    result = runner.invoke(main, ["--project", str(REPO), "export", "--db", postgres_url, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "members.csv").read_text(encoding="utf-8-sig").splitlines()) == 1 + sum(
        len(members) + 1 for _, members in ROOMS.values()) + 2  # + the bot per room, + two who joined g1
    result = runner.invoke(main, ["--project", str(REPO), "member", "forget", "a2", "--db", postgres_url, "--yes"])
    assert result.exit_code == 0, result.output
    with make_engine(postgres_url).connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM core_member WHERE id = 'a2'")).scalar() == 0
        entrants = conn.execute(text("SELECT entrants FROM lottery_draw")).scalar()
        assert "a2" not in entrants and any(e.startswith("forgotten-") for e in entrants)
        assert conn.execute(text("SELECT COUNT(*) FROM core_outbox WHERE text LIKE '%阿2%'")).scalar() == 0
