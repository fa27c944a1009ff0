"""`qunbot export` (CSV files) and `qunbot member forget` (erasure with anonymous totals kept)."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, select, text
from week_data import REPO

from bot._db import make_engine
from bot.cli import main


@pytest.fixture(scope="module")
def week(week_db, tmp_path_factory):
    """A copy of the shared week: forgetting members changes it."""
    url, simulated = week_db
    copy = tmp_path_factory.mktemp("forget") / "week.db"
    shutil.copy(url.removeprefix("sqlite:///"), copy)
    return f"sqlite:///{copy}", simulated


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_writes_members_ledger_draws_and_polls(week, tmp_path):
    url, simulated = week
    result = CliRunner().invoke(main, ["--project", str(REPO), "export", "--db", url, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    members = read(tmp_path / "members.csv")
    a1 = next(r for r in members if r["room_id"] == "g1" and r["member_id"] == "a1")
    assert a1["name"] == "阿1" and a1["stage"] == "loyal" and "active" in a1["tags"].split()
    assert {r["member_id"] for r in members if r["room_id"] == "g2" and r["left_at"]} == {"b6"}
    assert sum(int(r["messages_kept"]) for r in members if r["room_id"] == "g1") == \
        sum(simulated.messages["g1"].values())
    ledger = read(tmp_path / "ledger.csv")
    balances: dict[tuple[str, str], int] = {}
    for row in ledger:
        balances[(row["room_id"], row["member_id"])] = balances.get((row["room_id"], row["member_id"]), 0) + \
            int(row["amount"])
    assert balances[("g1", "a1")] == int(a1["points"]) > 0
    draws = read(tmp_path / "draws.csv")
    assert len(draws) == simulated.draws and draws[0]["prize"] == "口红" and draws[0]["seed"]
    polls = read(tmp_path / "polls.csv")
    assert [(p["option"], p["votes"]) for p in polls] == [("玫瑰口红", "2"), ("保湿面膜", "1")]
    assert f"{tmp_path / 'members.csv'}: {len(members)} rows" in result.output


def traces(engine, member_id: str, name: str) -> list[str]:
    """Every table.column holding the id (as a value or in a JSON list) or the name (in any text)."""
    meta = MetaData()
    meta.reflect(bind=engine)
    found = set()
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for column, value in row._mapping.items():
                    data = value
                    if isinstance(value, str) and value.startswith(("[", "{")):
                        with contextlib.suppress(ValueError):
                            data = json.loads(value)
                    if value == member_id or (isinstance(data, list) and member_id in data) or \
                            (isinstance(value, str) and name in value):
                        found.add(f"{table.name}.{column}")
    return sorted(found)


def test_forget_erases_the_member_and_keeps_anonymous_totals(week):
    url, _ = week
    engine = make_engine(url)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT SUM(amount), COUNT(*) FROM points_ledger")).one()
        points = conn.execute(text("SELECT balance FROM points_account WHERE member_id = 'a2'")).scalar()
    found = traces(engine, "a2", "阿2")
    assert {"core_member.id", "core_membership.member_id", "lottery_draw.entrants", "insight_purchase.member_id",
            "points_ledger.member_id", "poll_vote.member_id", "core_outbox.text"} <= set(found)

    result = CliRunner().invoke(main, ["--project", str(REPO), "member", "forget", "a2", "--db", url, "--yes"])
    assert result.exit_code == 0, result.output
    pseudonym = result.output.split("now ")[1].split()[0]
    assert pseudonym.startswith("forgotten-")
    assert traces(engine, "a2", "阿2") == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT SUM(amount), COUNT(*) FROM points_ledger")).one() == before
        assert conn.execute(text("SELECT balance FROM points_account WHERE member_id = :p"),
                            {"p": pseudonym}).scalar() == points
        assert conn.execute(text("SELECT COUNT(*) FROM insight_message WHERE member_id = :p"),
                            {"p": pseudonym}).scalar() > 0  # message counts stay, anonymous
        assert conn.execute(text("SELECT COUNT(*) FROM insight_tag WHERE member_id = :p"), {"p": pseudonym}
                            ).scalar() == 0

    again = CliRunner().invoke(main, ["--project", str(REPO), "member", "forget", "a2", "--db", url, "--yes"])
    assert again.exit_code == 1 and "no member a2" in again.output


def test_forget_keeps_who_invited_whom_anonymously(week):
    url, _ = week
    result = CliRunner().invoke(main, ["--project", str(REPO), "member", "forget", "a1", "--db", url, "--yes"])
    pseudonym = result.output.split("now ")[1].split()[0]
    with make_engine(url).connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM core_membership WHERE inviter_id = :p"),
                            {"p": pseudonym}).scalar() == 2  # a9 and a10 keep an anonymous inviter


def test_forget_of_an_unknown_member_changes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/empty.db"
    result = CliRunner().invoke(main, ["--project", str(REPO), "member", "forget", "nobody", "--db", url, "--yes"])
    assert result.exit_code == 1 and "nothing changed" in result.output
