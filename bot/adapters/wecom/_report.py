"""Per post, how the owners' confirmations went: what `qunbot sop status` and the dashboard's SOP page show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, distinct, func, inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.adapters.wecom._models import WecomTaskRoom


@dataclass(frozen=True, slots=True)
class PostCounts:
    """One post (an SOP step's occurrence) over every group it went to: its tasks (one per owner, up to 2,000
    groups each) and, in groups, how they ended."""

    account: str
    post: str
    created_at: datetime
    tasks: int
    groups: int
    confirmed: int
    sent: int
    failed: int
    cancelled: int
    waiting: int
    """Groups whose owner has not confirmed yet (or whose task is still being made)."""

    def line(self) -> str:
        return (f"{self.post}（{self.account}）：{self.tasks} 个群发任务，{self.groups} 个群：已确认 {self.confirmed}，"
                f"送达 {self.sent}，失败 {self.failed}，未确认取消 {self.cancelled}，等群主确认 {self.waiting}")


def post_counts(engine: Engine, *, limit: int = 50) -> list[PostCounts]:
    """The latest posts first; empty where no WeCom account ever ran (no table)."""
    if not inspect(engine).has_table(WecomTaskRoom.__tablename__):
        return []
    status = col(WecomTaskRoom.status)

    def groups_in(*statuses: str) -> object:
        return func.sum(case((status.in_(statuses), 1), else_=0))

    with Session(engine) as session:
        rows = session.exec(
            select(WecomTaskRoom.account, WecomTaskRoom.post, func.min(WecomTaskRoom.created_at),
                   func.count(distinct(WecomTaskRoom.msgid)), func.count(),
                   func.sum(case((col(WecomTaskRoom.confirmed), 1), else_=0)), groups_in("sent"),
                   groups_in("failed", "skipped"), groups_in("cancelled"),
                   func.sum(case((status.in_(("queued", "waiting")) & ~col(WecomTaskRoom.confirmed), 1), else_=0)))
            .group_by(col(WecomTaskRoom.account), col(WecomTaskRoom.post))
            .order_by(func.min(WecomTaskRoom.created_at).desc()).limit(limit)).all()
    return [PostCounts(account, post, created, *(int(n or 0) for n in counts))
            for account, post, created, *counts in rows]
