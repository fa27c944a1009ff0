"""What the guard does about a finding: count strikes in a window, warn, and remove after k strikes.

Strikes live in the record table (revoked ones do not count), so a restart keeps them and 撤销处罚 undoes
exactly the strikes an admin took back. Newcomers can have a stricter threshold for their first day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from .models import GuardRecord

STRIKE_ACTIONS = ("warn", "remove", "notify_owner")


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    """warn | remove (the account can remove) | notify_owner (it cannot: the owner is asked to)"""
    strike: int
    limit: int


def strikes(session: Session, room_id: str, member_id: str, since: datetime) -> int:
    """Unrevoked strikes of the member in the room since `since`."""
    return session.exec(select(func.count()).select_from(GuardRecord).where(
        GuardRecord.room_id == room_id, GuardRecord.member_id == member_id,
        col(GuardRecord.action).in_(STRIKE_ACTIONS), col(GuardRecord.revoked).is_(False),
        GuardRecord.created_at >= since)).one()


def decide(session: Session, *, room_id: str, member_id: str, now: datetime, window: timedelta,
           remove_after: int, can_remove: bool) -> Decision:
    """The action for one more finding: `remove_after` strikes in `window` remove (0: never remove)."""
    strike = strikes(session, room_id, member_id, now - window) + 1
    if remove_after and strike >= remove_after:
        return Decision("remove" if can_remove else "notify_owner", strike, remove_after)
    return Decision("warn", strike, remove_after)
