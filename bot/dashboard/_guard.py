"""The guard plugin's records (`guard_record`) for the dashboard: every detection and action, newest first.

Read with plain SQL so the dashboard does not import the plugin; the page exists only where the table does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect, text
from sqlmodel import Session

TABLE = "guard_record"
PAGE_SIZE = 50
ACTIONS = {"warn": "警告", "remove": "移出", "notify_owner": "通知群主移出", "flag": "提醒管理员", "revoke": "撤销"}


def has_guard(session: Session) -> bool:
    return inspect(session.get_bind()).has_table(TABLE)


@dataclass
class GuardRow:
    id: int
    room_id: str
    room: str
    member_id: str
    member: str
    rule: str
    label: str
    action: str
    strike: int
    actor: str | None
    revoked: bool
    evidence_hash: str
    at: datetime

    @property
    def action_name(self) -> str:
        return ACTIONS.get(self.action, self.action)


@dataclass
class GuardPage:
    rows: list[GuardRow]
    matched: int
    page: int
    pages: int
    rooms: list[tuple[str, str]]
    """(id, topic) of every room with records, for the filter."""
    rules: list[tuple[str, str]]
    """(rule, label) of every rule with records."""
    counts: dict[tuple[str, str], int]
    """(rule, action) → records, over the filtered records."""


def guard_page(session: Session, params: Mapping[str, str], *, size: int = PAGE_SIZE) -> GuardPage:
    """Records filtered by `room` and `rule` (exact ids from the filter lists), `page` of `size`."""
    where, bound = [], {}
    for key, column in (("room", "g.room_id"), ("rule", "g.rule")):
        if params.get(key):
            where.append(f"{column} = :{key}")
            bound[key] = params[key]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    counts = {(rule, action): int(n) for rule, action, n in session.execute(text(
        f"SELECT g.rule, g.action, COUNT(*) FROM guard_record g {clause} GROUP BY g.rule, g.action"), bound)}
    matched = sum(counts.values())
    pages = max(1, -(-matched // size))
    try:
        page = min(max(1, int(params.get("page", "1"))), pages)
    except ValueError:
        page = 1
    rows = [GuardRow(r[0], r[1], r[2] or r[1], r[3], r[4] or r[3], r[5], r[6], r[7], int(r[8]), r[9], bool(r[10]),
                     r[11], _utc(r[12])) for r in session.execute(text(
        "SELECT g.id, g.room_id, r.topic, g.member_id, m.name, g.rule, g.label, g.action, g.strike, g.actor_id, "
        f"g.revoked, g.evidence_hash, g.created_at FROM guard_record g LEFT JOIN core_room r ON r.id = g.room_id "
        f"LEFT JOIN core_member m ON m.id = g.member_id {clause} ORDER BY g.created_at DESC, g.id DESC "
        "LIMIT :limit OFFSET :offset"), {**bound, "limit": size, "offset": (page - 1) * size})]
    from bot.dashboard._groups import natural_key

    rooms = sorted(((room_id, topic or room_id) for room_id, topic in session.execute(text(
        "SELECT DISTINCT g.room_id, r.topic FROM guard_record g LEFT JOIN core_room r ON r.id = g.room_id"))),
        key=lambda pair: natural_key(pair[1]))
    rules = sorted((rule, label) for rule, label in session.execute(text(
        "SELECT rule, MIN(label) FROM guard_record GROUP BY rule")))
    return GuardPage(rows, matched, page, pages, rooms, rules, counts)


def _utc(value: Any) -> datetime:
    value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
