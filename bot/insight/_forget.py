"""`qunbot member forget ID`: erase a member's personal data on request, keeping anonymous totals.

Every table is read from the database itself, so plugin tables are covered without knowing them:
- the member's name row is deleted, group nicknames cleared, their tags, stage and purchases deleted,
  their self-introductions and quiz answer texts blanked;
- every text and JSON column of every table is then scrubbed: the id, wherever it stands (id columns,
  keys such as `icebreak:intro:ID`, JSON lists), becomes one random pseudonym, so ledger totals,
  sign-in counts and idempotency keys stay consistent but point to nobody; her names (two characters or
  more everywhere, any length in messages addressed to or about her) and introductions become 某成员 /
  （已删除） in every text (outbox messages, ledger reasons, timer data).
All of it in one transaction: it completes or changes nothing. On SQLite `secure_delete` (set on every
connection by `bot._db`) zeroes the old bytes, and the WAL is checkpointed and truncated afterwards.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, MetaData, String, Table, Text, delete, or_, select, update
from sqlalchemy.engine import Connection, Engine

DELETE_FROM = ("insight_tag", "insight_stage", "insight_purchase")
PERSONAL_TEXT = {"icebreak_newcomer": "intro_text", "quiz_answer": "text"}
"""Columns holding what the member wrote, blanked in her rows (and found and cut from other texts)."""
PLACEHOLDER = "某成员"
REMOVED = "（已删除）"
MIN_TEXT = 4
"""Shorter texts she wrote (a quiz answer "B") are blanked but not searched for elsewhere."""


@dataclass
class ForgetReport:
    member_id: str
    pseudonym: str
    found: bool
    changed: dict[str, int] = field(default_factory=dict)


def forget_member(engine: Engine, member_id: str) -> ForgetReport:
    pseudonym = f"forgotten-{secrets.token_hex(6)}"
    report = ForgetReport(member_id, pseudonym, False)
    meta = MetaData()
    meta.reflect(bind=engine)
    with engine.begin() as conn:
        names = _names(conn, meta, member_id)
        written = _written(conn, meta, member_id)
        report.found = bool(names) or _appears(conn, meta, member_id)
        _redact_about_her(conn, meta, member_id, names, report)
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
        for table_name, column in PERSONAL_TEXT.items():
            if table_name in meta.tables:
                table = meta.tables[table_name]
                blank = None if table.c[column].nullable else ""
                conn.execute(update(table).where(table.c.member_id == member_id).values({column: blank}))
        scrub = _scrubber(member_id, pseudonym, [n for n in names if len(n) >= 2],
                          [t for t in written if len(t) >= MIN_TEXT])
        needles = [member_id, *(n for n in names if len(n) >= 2), *(t for t in written if len(t) >= MIN_TEXT)]
        for table in meta.sorted_tables:
            _scrub_table(conn, table, needles, scrub, report)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
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


def _written(conn: Connection, meta: MetaData, member_id: str) -> list[str]:
    found: set[str] = set()
    for table_name, column in PERSONAL_TEXT.items():
        if table_name in meta.tables:
            table = meta.tables[table_name]
            found.update(t for (t,) in conn.execute(select(table.c[column]).where(
                table.c.member_id == member_id)) if t)
    return sorted(found, key=len, reverse=True)


def _appears(conn: Connection, meta: MetaData, member_id: str) -> bool:
    """The id stands somewhere on its own (not only inside a longer id or a pseudonym)."""
    pattern = _id_pattern(member_id)
    for table in meta.sorted_tables:
        for column in _text_columns(table):
            candidates = conn.execute(select(column.cast(Text)).where(
                column.cast(Text).contains(member_id, autoescape=True))).scalars()
            if any(pattern.search(value) for value in candidates):
                return True
    return False


def _id_pattern(member_id: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![0-9A-Za-z_]){re.escape(member_id)}(?![0-9A-Za-z_])")


def _redact_about_her(conn: Connection, meta: MetaData, member_id: str, names: list[str],
                      report: ForgetReport) -> None:
    """In the messages sent to her or about her, every name of hers goes, even a one-character one."""
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


def _scrubber(member_id: str, pseudonym: str, names: list[str], written: list[str]) -> Callable[[str], str]:
    """Her id (not inside a longer id: `u1` leaves `u12` alone) -> pseudonym; her texts, then names, cut."""
    id_pattern = _id_pattern(member_id)

    def scrub(value: str) -> str:
        if value == member_id:
            return pseudonym
        for piece in written:
            value = value.replace(piece, REMOVED)
        value = id_pattern.sub(pseudonym, value)
        for name in names:
            value = value.replace(name, PLACEHOLDER)
        return value
    return scrub


def _walk(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, list):
        return [_walk(v, scrub) for v in value]
    if isinstance(value, dict):
        return {scrub(k): _walk(v, scrub) for k, v in value.items()}
    return scrub(value) if isinstance(value, str) else value


def _text_columns(table: Table) -> list[Any]:
    return [c for c in table.c if isinstance(c.type, String | Text | JSON)]


def _stored_forms(column: Any, needle: str) -> list[str]:
    """JSON columns store non-ASCII text escaped (`\\u5f20`), so search for that form too."""
    escaped = json.dumps(needle)[1:-1]
    return [needle, escaped] if isinstance(column.type, JSON) and escaped != needle else [needle]


def _scrub_table(conn: Connection, table: Table, needles: list[str], scrub: Callable[[str], str],
                 report: ForgetReport) -> None:
    key = list(table.primary_key.columns)
    columns = _text_columns(table)
    if not key or not columns:
        return
    hit = or_(*(c.cast(Text).contains(form, autoescape=True) for c in columns for n in needles
                for form in _stored_forms(c, n)))
    for row in conn.execute(select(*key, *columns).where(hit)).all():
        where = [k == row[i] for i, k in enumerate(key)]
        values: dict[str, Any] = {}
        for offset, column in enumerate(columns, start=len(key)):
            old = row[offset]
            if isinstance(old, str) and isinstance(column.type, JSON):
                old = json.loads(old)
            new = _walk(old, scrub)
            if new != old:
                values[column.name] = new
        if values:
            conn.execute(update(table).where(*where).values(values))
            _count(report, table.name, 1)

