"""The points API other plugins use (`ctx.service("points")`): grant, spend, balance, level, sign-ins.

Every method works in the caller's session and commits nothing, so a ledger row commits atomically
with the caller's own state. Invariants are enforced by the database, not by read-then-write Python:
- exactly-once: the ledger's (room_id, key) unique constraint, inserted with ON CONFLICT DO NOTHING;
- never negative: spending is one conditional `UPDATE … SET balance = balance - n WHERE balance >= n`
  (SQLite serialises writers; PostgreSQL row-locks the account and re-checks the condition), and the
  account table's CHECK (balance >= 0) backs it up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, literal_column, update
from sqlmodel import Session, col, select

from bot import Prepared, dialect_insert, insert_unique

from .models import PointsAccount, PointsLedger, PointsRedemption, PointsSignIn, PointsStock

MAX_CHANGE = 1_000_000_000
"""The largest single change of a balance: far inside the 64-bit columns, so no sum of changes a group could
make overflows them (and no float creeps into SQLite)."""


class SoldOut(Exception):
    """The catalog item has no stock left; nothing was changed."""


class InsufficientPoints(Exception):
    """The member has fewer points than the spend needs; nothing was changed."""

    def __init__(self, balance: int, needed: int) -> None:
        super().__init__(f"balance {balance} < {needed}")
        self.balance = balance
        self.needed = needed


@dataclass(frozen=True)
class SignIn:
    """A sign-in just made, and the balance it left."""

    day: date
    streak: int
    points: int
    balance: int


@dataclass(frozen=True)
class Level:
    rank: int
    """1..5 (V1..V5)."""
    name: str
    threshold: int


DEFAULT_LEVELS = (
    Level(1, "社区菜鸟", 0),
    Level(2, "社区新秀", 100),
    Level(3, "社区达人", 300),
    Level(4, "社区精英", 800),
    Level(5, "社区魁首", 2000),
)

LevelUp = Callable[[Session, str, str, Level], None]
"""Called (in the granting transaction) when a member reaches a higher level for the first time."""


_ACCOUNT = PointsAccount.__table__.c  # type: ignore[attr-defined]
_SIGNIN = PointsSignIn.__table__.c  # type: ignore[attr-defined]
_YESTERDAY = Prepared(select(_SIGNIN.streak).where(
    _SIGNIN.room_id == bindparam("room"), _SIGNIN.member_id == bindparam("member"), _SIGNIN.day == bindparam("day")))


@dataclass(frozen=True)
class _Statements:
    """The hot statements, built once per dialect; values go in as parameters (compiled once, not per call)."""

    ledger: Prepared
    credit: Prepared
    debit: Prepared
    debit_undo: Prepared


_BY_DIALECT: dict[str, _Statements] = {}
_LEDGER_KEYS = ("room_id", "member_id", "amount", "kind", "reason", "source", "key", "actor_id", "created_at")
_CREDIT_KEYS = ("room_id", "member_id", "balance", "earned", "level_rank")
_WHO = (_ACCOUNT.room_id == bindparam("room")) & (_ACCOUNT.member_id == bindparam("member"))


def _statements(session: Session) -> _Statements:
    dialect = session.get_bind().dialect.name
    found = _BY_DIALECT.get(dialect)
    if found is None:
        insert = dialect_insert(dialect)
        credit = insert(PointsAccount.__table__)  # type: ignore[attr-defined]
        found = _BY_DIALECT[dialect] = _Statements(
            ledger=Prepared(insert(PointsLedger.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]
                            .returning(literal_column("1")), _LEDGER_KEYS),
            credit=Prepared(credit.on_conflict_do_update(
                index_elements=["room_id", "member_id"],
                set_={"balance": _ACCOUNT.balance + credit.excluded.balance,
                      "earned": _ACCOUNT.earned + credit.excluded.earned},
            ).returning(_ACCOUNT.balance, _ACCOUNT.earned, _ACCOUNT.level_rank), _CREDIT_KEYS),
            debit=Prepared(update(PointsAccount.__table__).where(  # type: ignore[attr-defined]
                _WHO & (_ACCOUNT.balance >= bindparam("need")))
                .values(balance=_ACCOUNT.balance - bindparam("need"),
                        earned=_ACCOUNT.earned - bindparam("earned_delta"))
                .returning(_ACCOUNT.balance)),
            debit_undo=Prepared(update(PointsAccount.__table__).where(_WHO)  # type: ignore[attr-defined]
                                .values(balance=_ACCOUNT.balance + bindparam("need"),
                                        earned=_ACCOUNT.earned + bindparam("earned_delta"))),
        )
    return found


class PointsService:
    """Per-room points of members, backed by the append-only ledger."""

    def __init__(self, levels: Sequence[Level] = DEFAULT_LEVELS) -> None:
        self.levels: tuple[Level, ...] = tuple(sorted(levels, key=lambda lv: lv.threshold))

    def bind(self, ctx: Any) -> BoundPointsService:
        """`ctx.service("points")` returns this: the same API, announcing level-ups in the caller's room."""
        return BoundPointsService(self, ctx)

    # --- the contract ------------------------------------------------------------------

    def grant(self, session: Session, *, room_id: str, member_id: str, amount: int, reason: str, source: str,
              key: str | None = None, at: datetime, on_level_up: LevelUp | None = None) -> bool:
        """Add points; False (and no change) if `key` was already used in this room."""
        if amount <= 0:
            raise ValueError("grant() needs a positive amount")
        return self._change(session, room_id, member_id, amount, "earn", reason, source, key, at, None,
                            on_level_up) is not None

    def spend(self, session: Session, *, room_id: str, member_id: str, amount: int, reason: str, source: str,
              key: str | None = None, at: datetime) -> bool:
        """Take points; raises InsufficientPoints rather than letting the balance go negative."""
        if amount <= 0:
            raise ValueError("spend() needs a positive amount")
        return self._change(session, room_id, member_id, -amount, "spend", reason, source, key, at, None,
                            None) is not None

    def balance(self, session: Session, room_id: str, member_id: str) -> int:
        account = self._account(session, room_id, member_id)
        return 0 if account is None else account.balance

    def earned(self, session: Session, room_id: str, member_id: str) -> int:
        """Points earned so far (the level basis): spending does not lower it, admin deductions do."""
        account = self._account(session, room_id, member_id)
        return 0 if account is None else account.earned

    def level(self, session: Session, room_id: str, member_id: str) -> Level:
        account = self._account(session, room_id, member_id)
        return self.level_for(0 if account is None else account.earned)

    def signed_in_on(self, session: Session, room_id: str, member_id: str, day: date) -> bool:
        return session.exec(select(PointsSignIn.id).where(
            PointsSignIn.room_id == room_id, PointsSignIn.member_id == member_id, PointsSignIn.day == day,
        )).first() is not None

    # --- beyond the contract (used by the points plugin itself) --------------------------------

    def sign_in(self, session: Session, *, room_id: str, member_id: str, day: date, at: datetime,
                points_for_streak: Callable[[int], int], on_level_up: LevelUp | None = None) -> SignIn | None:
        """Sign a member in for `day` (local); None if they already were. The unique (room, member, day)
        row decides, so a double tap or two processes racing still make one sign-in and one grant."""
        yesterday = _YESTERDAY.first(session, {"room": room_id, "member": member_id,
                                               "day": date.fromordinal(day.toordinal() - 1)})
        streak = (yesterday[0] if yesterday else 0) + 1
        points = points_for_streak(streak)
        if not insert_unique(session, PointsSignIn, room_id=room_id, member_id=member_id, day=day, streak=streak,
                             points=points, signed_at=at):
            return None
        balance = None
        if points > 0:
            balance = self._change(session, room_id, member_id, points, "earn", f"签到（连续 {streak} 天）", "points",
                                   f"signin:{member_id}:{day.isoformat()}", at, None, on_level_up)
        if balance is None:  # no points for this sign-in (or its grant was made already)
            balance = self.balance(session, room_id, member_id)
        return SignIn(day=day, streak=streak, points=points, balance=balance)

    def streak(self, session: Session, room_id: str, member_id: str, today: date) -> int:
        """Consecutive days up to today, or up to yesterday if today's sign-in is still to come."""
        last = session.exec(select(PointsSignIn).where(
            PointsSignIn.room_id == room_id, PointsSignIn.member_id == member_id,
        ).order_by(col(PointsSignIn.day).desc()).limit(1)).first()
        if last is None or (today - last.day).days > 1:
            return 0
        return last.streak

    def redeem(self, session: Session, *, room_id: str, member_id: str, item: str, cost: int, stock: int,
               at: datetime) -> PointsRedemption:
        """Take one of `item` from stock and its cost from the member's balance, or neither.

        Both are conditional UPDATEs (stock: `sold < stock`; balance: `balance >= cost`), so concurrent
        redemptions can neither oversell nor overdraw; raises SoldOut or InsufficientPoints.
        """
        insert_unique(session, PointsStock, item=item, sold=0)
        taken = session.execute(update(PointsStock).where(
            col(PointsStock.item) == item, col(PointsStock.sold) < stock).values(sold=PointsStock.sold + 1))
        if not taken.rowcount:  # type: ignore[attr-defined]
            raise SoldOut(item)
        redemption = PointsRedemption(room_id=room_id, member_id=member_id, item=item, cost=cost, created_at=at)
        session.add(redemption)
        session.flush()
        try:
            if cost > 0:
                self.spend(session, room_id=room_id, member_id=member_id, amount=cost, reason=f"兑换 {item}",
                           source="points", key=f"redeem:{redemption.id}", at=at)
        except InsufficientPoints:
            # Undo our own uncommitted changes; the stock row stays locked by this transaction until then.
            session.delete(redemption)
            session.execute(update(PointsStock).where(col(PointsStock.item) == item)
                            .values(sold=PointsStock.sold - 1))
            session.flush()
            raise
        return redemption

    def sold(self, session: Session, item: str) -> int:
        row = session.get(PointsStock, item)
        return 0 if row is None else row.sold

    def pending_redemptions(self, session: Session, room_id: str) -> list[PointsRedemption]:
        return list(session.exec(select(PointsRedemption).where(
            PointsRedemption.room_id == room_id, PointsRedemption.status == "pending",
        ).order_by(col(PointsRedemption.id))))

    def adjust(self, session: Session, *, room_id: str, member_id: str, amount: int, reason: str, actor_id: str,
               at: datetime, on_level_up: LevelUp | None = None) -> bool:
        """An admin's audited change (either sign); a deduction may not exceed the balance."""
        if amount == 0:
            raise ValueError("adjust() needs a non-zero amount")
        return self._change(session, room_id, member_id, amount, "adjust", reason, "points", None, at, actor_id,
                            on_level_up) is not None

    def level_for(self, earned: int) -> Level:
        reached = self.levels[0]
        for level in self.levels:
            if earned >= level.threshold:
                reached = level
        return reached

    def history(self, session: Session, room_id: str, member_id: str, limit: int = 10) -> list[PointsLedger]:
        return list(session.exec(select(PointsLedger).where(
            PointsLedger.room_id == room_id, PointsLedger.member_id == member_id,
        ).order_by(col(PointsLedger.id).desc()).limit(limit)))

    def top(self, session: Session, room_id: str, limit: int) -> list[PointsAccount]:
        return list(session.exec(select(PointsAccount).where(
            PointsAccount.room_id == room_id, PointsAccount.balance > 0,
        ).order_by(col(PointsAccount.balance).desc(), col(PointsAccount.member_id)).limit(limit)))

    def ledger_balance(self, session: Session, room_id: str, member_id: str) -> int:
        """The balance recomputed from the ledger (the truth the account row must agree with)."""
        total = session.exec(select(func.coalesce(func.sum(PointsLedger.amount), 0)).where(
            PointsLedger.room_id == room_id, PointsLedger.member_id == member_id)).one()
        return int(total)

    # --- internals -----------------------------------------------------------------------

    def _account(self, session: Session, room_id: str, member_id: str) -> PointsAccount | None:
        return session.exec(select(PointsAccount).where(
            PointsAccount.room_id == room_id, PointsAccount.member_id == member_id)).first()

    def _change(self, session: Session, room_id: str, member_id: str, amount: int, kind: str, reason: str,
                source: str, key: str | None, at: datetime, actor_id: str | None,
                on_level_up: LevelUp | None) -> int | None:
        """Apply one change; the new balance, or None if `key` was used already (nothing changed)."""
        if not -MAX_CHANGE <= amount <= MAX_CHANGE:
            raise ValueError(f"a points change is at most {MAX_CHANGE} either way, not {amount}")
        sql = _statements(session)  # prepared Core statements: no ORM bookkeeping on the hot path
        db = session.connection()
        who = {"room_id": room_id, "member_id": member_id}
        ledger = {**who, "amount": amount, "kind": kind, "reason": reason, "source": source, "key": key,
                  "actor_id": actor_id, "created_at": at}
        level_delta = 0 if kind == "spend" else amount
        if amount > 0:
            # The ledger row first: a used key stops here with nothing to undo.
            if sql.ledger.first(db, ledger) is None:
                return None
            credited = sql.credit.first(db, {**who, "balance": amount, "earned": level_delta, "level_rank": 1})
            assert credited is not None  # an upsert always returns its row
            balance, earned, rank = credited
            reached = self.level_for(earned)
            if reached.rank > rank:
                self._level_up(session, room_id, member_id, reached, on_level_up)
            return int(balance)
        # A deduction: the conditional write comes first. It takes SQLite's write lock / PostgreSQL's
        # row lock, so the condition is checked against the latest committed balance.
        by = {"room": room_id, "member": member_id}
        taken = sql.debit.first(db, {**by, "need": -amount, "earned_delta": -level_delta})
        if taken is None:
            raise InsufficientPoints(self.balance(session, room_id, member_id), -amount)
        if sql.ledger.first(db, ledger) is None:
            # The key was used already: give back what we took, in this same transaction.
            sql.debit_undo.rowcount(db, {**by, "need": -amount, "earned_delta": -level_delta})
            return None
        return int(taken[0])

    def _level_up(self, session: Session, room_id: str, member_id: str, level: Level,
                  on_level_up: LevelUp | None) -> None:
        # Conditional, so two grants racing past the threshold announce it once.
        raised = session.execute(update(PointsAccount).where(
            col(PointsAccount.room_id) == room_id, col(PointsAccount.member_id) == member_id,
            col(PointsAccount.level_rank) < level.rank,
        ).values(level_rank=level.rank))
        if raised.rowcount and on_level_up is not None:  # type: ignore[attr-defined]
            on_level_up(session, room_id, member_id, level)


class BoundPointsService:
    """The service as a handler sees it: grants that cross a level threshold queue the announcement
    in the handler's own transaction (so it is sent once, and not at all if the handler fails)."""

    def __init__(self, service: PointsService, ctx: Any) -> None:
        self._service = service
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def announce(self, session: Session, room_id: str, member_id: str, level: Level) -> None:
        self._ctx.queue(template="points/level_up.j2", room=room_id, mentions=[member_id],
                        key=f"points:level_up:{room_id}:{member_id}:{level.rank}",
                        who=self._ctx.member_info(member_id, room_id), level=level)

    def grant(self, session: Session, **kwargs: Any) -> bool:
        return self._service.grant(session, on_level_up=self.announce, **kwargs)

    def adjust(self, session: Session, **kwargs: Any) -> bool:
        return self._service.adjust(session, on_level_up=self.announce, **kwargs)

    def sign_in(self, session: Session, **kwargs: Any) -> SignIn | None:
        return self._service.sign_in(session, on_level_up=self.announce, **kwargs)
