"""`qunbot member forget ID`: erase a member's personal data on request, keeping anonymous totals.

Every table is read from the database itself, so plugin tables are covered without knowing them:
- the member's name row is deleted, group nicknames cleared, their tags, stage and purchases deleted;
- every id column (`member_id`, `inviter_id`, `actor_id`, …) and every JSON list (mentions, lottery
  entrants and winners) holding the id gets a random pseudonym instead, so points ledger totals, sign-in
  counts and message counts stay correct but point to nobody;
- quiz answer texts are blanked, and the member's names are cut out of the bot's stored messages.
All of it in one transaction: it completes or changes nothing.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, MetaData, String, Table, Text, delete, or_, select, update
from sqlalchemy.engine import Connection, Engine

ID_COLUMNS = ("member_id", "inviter_id", "actor_id", "opened_by", "started_by", "set_by", "owner_id", "to")
DELETE_FROM = ("insight_tag", "insight_stage", "insight_purchase")
PLACEHOLDER = "某成员"


@dataclass
class ForgetReport:
    member_id: str
    pseudonym: str
    found: bool
    changed: dict[str, int] = field(default_factory=dict)


def _replace(value: Any, member_id: str, pseudonym: str) -> Any:
    if isinstance(value, list):
        return [_replace(v, member_id, pseudonym) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, member_id, pseudonym) for k, v in value.items()}
    return pseudonym if value == member_id else value


def forget_member(engine: Engine, member_id: str) -> ForgetReport:
    pseudonym = f"forgotten-{secrets.token_hex(6)}"
    report = ForgetReport(member_id, pseudonym, False)
    meta = MetaData()
    meta.reflect(bind=engine)
    with engine.begin() as conn:
        names = _names(conn, meta, member_id)
        report.found = bool(names) or _mentioned(conn, meta, member_id)
        _redact_outbox(conn, meta, member_id, names, report)
        for name in DELETE_FROM:
            if name in meta.tables:
                table = meta.tables[name]
                _count(report, name, conn.execute(delete(table).where(table.c.member_id == member_id)).rowcount)
        if "core_member" in meta.tables:
            member = meta.tables["core_member"]
            _count(report, "core_member", conn.execute(delete(member).where(member.c.id == member_id)).rowcount)
        if "core_membership" in meta.tables:
            ms = meta.tables["core_membership"]
            conn.execute(update(ms).where(ms.c.member_id == member_id).values(alias=None))
        if "quiz_answer" in meta.tables:
            answers = meta.tables["quiz_answer"]
            conn.execute(update(answers).where(answers.c.member_id == member_id).values(text=""))
        for table in meta.sorted_tables:
            _pseudonymise(conn, table, member_id, pseudonym, report)
    return report


def _count(report: ForgetReport, table: str, rows: int) -> None:
    if rows:
        report.changed[table] = report.changed.get(table, 0) + rows


def _names(conn: Connection, meta: MetaData, member_id: str) -> list[str]:
    found: set[str] = set()
    if "core_member" in meta.tables:
        member = meta.tables["core_member"]
        found.update(n for (n,) in conn.execute(select(member.c.name).where(member.c.id == member_id)) if n)
    if "core_membership" in meta.tables:
        ms = meta.tables["core_membership"]
        found.update(a for (a,) in conn.execute(select(ms.c.alias).where(ms.c.member_id == member_id)) if a)
    return sorted(found, key=len, reverse=True)


def _mentioned(conn: Connection, meta: MetaData, member_id: str) -> bool:
    for table in meta.sorted_tables:
        for column in ID_COLUMNS:
            if column in table.c and conn.execute(select(table.c[column]).where(
                    table.c[column] == member_id).limit(1)).first():
                return True
    return False


def _redact_outbox(conn: Connection, meta: MetaData, member_id: str, names: list[str],
                   report: ForgetReport) -> None:
    """Cut the member's names out of the messages the bot sent to them or about them."""
    if "core_outbox" not in meta.tables or not names:
        return
    outbox = meta.tables["core_outbox"]
    rows = conn.execute(select(outbox.c.id, outbox.c.text).where(or_(
        outbox.c.to == member_id, outbox.c.member_id == member_id,
        outbox.c.mentions.cast(Text).contains(json.dumps(member_id))))).all()
    for row_id, body in rows:
        redacted = body
        for name in names:
            redacted = redacted.replace(name, PLACEHOLDER)
        if redacted != body:
            conn.execute(update(outbox).where(outbox.c.id == row_id).values(text=redacted))
            _count(report, "core_outbox", 1)


def _pseudonymise(conn: Connection, table: Table, member_id: str, pseudonym: str, report: ForgetReport) -> None:
    for column in ID_COLUMNS:
        if column in table.c and isinstance(table.c[column].type, String | Text):
            _count(report, table.name, conn.execute(update(table).where(
                table.c[column] == member_id).values({column: pseudonym})).rowcount)
    key = list(table.primary_key.columns)
    for column in table.c:
        if not isinstance(column.type, JSON) or not key:
            continue
        needle = json.dumps(member_id)
        for row in conn.execute(select(*key, column).where(column.cast(Text).contains(needle))).all():
            value = row[-1]
            data = json.loads(value) if isinstance(value, str) else value
            new = _replace(data, member_id, pseudonym)
            if new != data:
                conn.execute(update(table).where(*(k == row[i] for i, k in enumerate(key)))
                             .values({column.name: new}))
                _count(report, table.name, 1)
