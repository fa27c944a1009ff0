"""Per post, how the owners' confirmations went: what `qunbot sop status` and the dashboard's SOP page show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.adapters.wecom._models import WecomTask


@dataclass(frozen=True, slots=True)
class PostCounts:
    """One post (an SOP step's occurrence) over every room it went to, one group-message task per room."""

    account: str
    post: str
    created_at: datetime
    tasks: int
    confirmed: int
    sent: int
    failed: int
    cancelled: int

    @property
    def waiting(self) -> int:
        return self.tasks - self.confirmed - self.cancelled

    def line(self) -> str:
        return (f"{self.post}（{self.account}）：{self.tasks} 个群发任务，已确认 {self.confirmed}，"
                f"送达 {self.sent} 个群，失败 {self.failed}，未确认取消 {self.cancelled}，等群主确认 {self.waiting}")


def post_counts(engine: Engine, *, limit: int = 50) -> list[PostCounts]:
    """The latest posts first; empty where no WeCom account ever ran (no table)."""
    if not inspect(engine).has_table(WecomTask.__tablename__):
        return []
    with Session(engine) as session:
        rows = session.exec(
            select(WecomTask.account, WecomTask.post, func.min(WecomTask.created_at), func.count(),
                   func.sum(WecomTask.confirmed), func.sum(WecomTask.sent), func.sum(WecomTask.failed),
                   func.sum(WecomTask.cancelled))
            .group_by(col(WecomTask.account), col(WecomTask.post))
            .order_by(func.min(WecomTask.created_at).desc()).limit(limit)).all()
    return [PostCounts(account, post, created, int(tasks), int(confirmed or 0), int(sent or 0), int(failed or 0),
                       int(cancelled or 0))
            for account, post, created, tasks, confirmed, sent, failed, cancelled in rows]
