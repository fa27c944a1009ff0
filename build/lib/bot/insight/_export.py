"""`qunbot export`: members, the points ledger, lottery draws and polls as CSV files for spreadsheets.

Plain reads of the tables; a plugin the project does not run gives no file for its table.
UTF-8 with a byte-order mark, so Excel opens the Chinese text correctly.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, select

from bot._models import Member, Membership
from bot.insight._facts import existing_tables
from bot.insight._models import InsightMessage, InsightStage, InsightTag


def _write(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
    return count


def _time(value: Any, tz: tzinfo) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:  # raw SQL reads of UTC columns
            value = value.replace(tzinfo=UTC)
        return value.astimezone(tz).isoformat(timespec="seconds")
    return str(value)


def export_csv(session: Session, out: Path, tz: tzinfo) -> dict[str, int]:
    """Write the CSV files into `out`; returns file name -> rows written."""
    out.mkdir(parents=True, exist_ok=True)
    tables = existing_tables(session)
    written: dict[str, int] = {}
    names = dict(session.exec(select(Member.id, Member.name)).all())
    tags: dict[tuple[str, str], list[str]] = defaultdict(list)
    for room_id, member_id, tag in session.exec(select(InsightTag.room_id, InsightTag.member_id, InsightTag.tag)):
        tags[(room_id, member_id)].append(tag)
    stages = {(s.room_id, s.member_id): s.stage for s in session.exec(select(InsightStage))}
    messages: dict[tuple[str, str], int] = defaultdict(int)
    for room_id, member_id in session.exec(select(InsightMessage.room_id, InsightMessage.member_id)):
        messages[(room_id, member_id)] += 1
    points: dict[tuple[str, str], int] = {}
    if "points_account" in tables:
        points = {(r, m): b for r, m, b in session.execute(text(
            "SELECT room_id, member_id, balance FROM points_account"))}
    memberships = session.exec(select(Membership).order_by(Membership.room_id, Membership.member_id)).all()
    written["members.csv"] = _write(out / "members.csv", [
        "room_id", "member_id", "name", "alias", "is_admin", "joined_at", "inviter_id", "left_at", "last_spoke_at",
        "messages_kept", "points", "stage", "tags"], (
        [m.room_id, m.member_id, names.get(m.member_id, ""), m.alias, int(m.is_admin), _time(m.joined_at, tz),
         m.inviter_id, _time(m.left_at, tz), _time(m.last_spoke_at, tz), messages[(m.room_id, m.member_id)],
         points.get((m.room_id, m.member_id), 0), stages.get((m.room_id, m.member_id), ""),
         " ".join(sorted(tags[(m.room_id, m.member_id)]))] for m in memberships))
    if "points_ledger" in tables:
        written["ledger.csv"] = _write(out / "ledger.csv", [
            "id", "room_id", "member_id", "amount", "kind", "reason", "source", "key", "actor_id", "created_at"], (
            [*row[:9], _time(row[9], tz)] for row in session.execute(text(
                "SELECT id, room_id, member_id, amount, kind, reason, source, key, actor_id, created_at "
                "FROM points_ledger ORDER BY id"))))
    if "lottery_draw" in tables:
        written["draws.csv"] = _write(out / "draws.csv", [
            "id", "room_id", "prize", "winners_count", "keyword", "status", "opened_at", "deadline", "drawn_at",
            "entrants", "winners", "commitment", "seed"], (
            [r[0], r[1], r[2], r[3], r[4], r[5], _time(r[6], tz), _time(r[7], tz), _time(r[8], tz),
             len(_json(r[9])), " ".join(_json(r[10])), r[11], r[12] if r[5] == "drawn" else ""]
            for r in session.execute(text(
                "SELECT id, room_id, prize, winners_count, keyword, status, opened_at, deadline, drawn_at, "
                "entrants, winners, commitment, seed FROM lottery_draw ORDER BY id"))))
    if {"poll_poll", "poll_vote"} <= tables:
        rows = []
        for pid, room_id, title, options, status, opened_at in session.execute(text(
                "SELECT id, room_id, title, options, status, opened_at FROM poll_poll ORDER BY id")):
            votes = dict(session.execute(text("SELECT option, COUNT(*) FROM poll_vote WHERE poll_id = :p "
                                              "GROUP BY option"), {"p": pid}).all())
            for index, option in enumerate(_json(options)):
                rows.append([pid, room_id, title, status, _time(opened_at, tz), index + 1, option,
                             votes.get(index, 0)])
        written["polls.csv"] = _write(out / "polls.csv", [
            "poll_id", "room_id", "title", "status", "opened_at", "option_number", "option", "votes"], rows)
    return written


def _json(value: Any) -> list[Any]:
    return json.loads(value) if isinstance(value, str) else list(value or ())
