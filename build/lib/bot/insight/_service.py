"""The insight API: recompute tags and stages, read them, tag by hand, record purchases.

The runtime's insight engine recomputes on a schedule; plugins reach the same object with
`ctx.service("insight")` (for eligibility such as "only `active` members may enter"), and the
purchase endpoint records sales through it. Every method works in the caller's session and commits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from sqlalchemy import delete
from sqlmodel import Session, col, select

from bot._models import Membership, Room
from bot.insight._facts import Facts, room_facts
from bot.insight._models import InsightMessage, InsightPurchase, InsightStage, InsightTag
from bot.insight._rules import STAGES, RuleError, evaluate
from bot.insight._settings import InsightConfig

log = logging.getLogger("qunbot.insight")


@dataclass(frozen=True)
class Purchase:
    order_id: str
    member_id: str
    amount_cents: int
    paid_at: datetime
    room_id: str | None = None
    currency: str = "CNY"
    item: str = ""


class InsightService:
    def __init__(self, config: InsightConfig | None = None, tz: tzinfo | None = None) -> None:
        self.config = config or InsightConfig()
        self.tz = tz or ZoneInfo("Asia/Shanghai")
        self.exclude: set[str] = set()
        """Member ids never tagged (the bot's own accounts)."""

    def configure(self, config: InsightConfig, tz: tzinfo) -> None:
        self.config, self.tz = config, tz

    # --- evaluation -------------------------------------------------------------------------

    def facts(self, session: Session, room_id: str, now: datetime, members: Collection[str] | None = None,
              ) -> dict[str, Facts]:
        return room_facts(session, room_id, now, self.tz, since=now - self.config.retention, members=members,
                          exclude=self.exclude)

    def evaluate(self, facts: Facts) -> tuple[set[str], str]:
        """(rule tags, stage) for one member's facts; a rule that fails counts as false and is logged."""
        manual = set(facts["tags"])
        tags: set[str] = set()
        for rule in self.config.tag_rules:
            if self._holds(rule, {**facts, "tags": frozenset(manual | tags)}):
                tags.add(rule.name)
        stage, everything = STAGES[0], {**facts, "tags": frozenset(manual | tags)}
        for rule in self.config.stage_rules:
            if self._holds(rule, everything):
                stage = rule.name
        return tags, stage

    @staticmethod
    def _holds(rule: object, facts: Facts) -> bool:
        try:
            return evaluate(rule, facts)  # type: ignore[arg-type]
        except RuleError as err:
            log.error("%s", err)
            return False

    def recompute(self, session: Session, now: datetime, room_ids: Iterable[str] | None = None,
                  members: Collection[str] | None = None) -> int:
        """Store rule tags and stages of every member in the rooms (all known rooms by default)."""
        rooms = list(room_ids) if room_ids is not None else list(session.exec(select(Room.id)).all())
        count = 0
        for room_id in rooms:
            facts = self.facts(session, room_id, now, members)
            old_tags: dict[str, set[str]] = {}
            for member_id, tag in session.exec(select(InsightTag.member_id, InsightTag.tag).where(
                    InsightTag.room_id == room_id, InsightTag.source == "rule")).all():
                old_tags.setdefault(member_id, set()).add(tag)
            stages = {s.member_id: s for s in session.exec(select(InsightStage).where(
                InsightStage.room_id == room_id)).all()}
            gone = set(old_tags) - set(facts) if members is None else set()
            for member_id in gone:  # left the room: rule tags no longer apply
                session.execute(delete(InsightTag).where(col(InsightTag.room_id) == room_id,
                                                         col(InsightTag.member_id) == member_id,
                                                         col(InsightTag.source) == "rule"))
            for member_id, member_facts in facts.items():
                tags, stage = self.evaluate(member_facts)
                before = old_tags.get(member_id, set())
                for tag in before - tags:
                    session.execute(delete(InsightTag).where(
                        col(InsightTag.room_id) == room_id, col(InsightTag.member_id) == member_id,
                        col(InsightTag.tag) == tag, col(InsightTag.source) == "rule"))
                for tag in tags - before:
                    session.add(InsightTag(room_id=room_id, member_id=member_id, tag=tag, source="rule", since=now))
                row = stages.get(member_id)
                if row is None:
                    session.add(InsightStage(room_id=room_id, member_id=member_id, stage=stage, since=now))
                elif row.stage != stage:
                    row.stage, row.since = stage, now
                    session.add(row)
                count += 1
        session.flush()
        return count

    def prune(self, session: Session, now: datetime) -> None:
        session.execute(delete(InsightMessage).where(col(InsightMessage.at) < now - self.config.retention))

    # --- reading --------------------------------------------------------------------------------

    def tags(self, session: Session, room_id: str, member_id: str) -> set[str]:
        """The stored tags (rule tags as of the last recompute, and manual tags)."""
        return set(session.exec(select(InsightTag.tag).where(InsightTag.room_id == room_id,
                                                             InsightTag.member_id == member_id)).all())

    def current_tags(self, session: Session, room_id: str, member_id: str, now: datetime) -> set[str]:
        """Tags evaluated now for one member (manual ones included): what eligibility checks use."""
        facts = self.facts(session, room_id, now, [member_id]).get(member_id)
        if facts is None:
            return set()
        tags, _ = self.evaluate(facts)
        return tags | set(facts["tags"])

    def has_tags(self, session: Session, room_id: str, member_id: str, tags: Iterable[str], now: datetime) -> bool:
        return set(tags) <= self.current_tags(session, room_id, member_id, now)

    def stage(self, session: Session, room_id: str, member_id: str) -> str:
        row = session.get(InsightStage, (room_id, member_id))
        return row.stage if row else STAGES[0]

    # --- writing ----------------------------------------------------------------------------

    def tag(self, session: Session, room_id: str, member_id: str, tag: str, *, by: str | None, at: datetime) -> bool:
        """Add a manual tag; False if the member had it already."""
        if session.get(InsightTag, (room_id, member_id, tag, "manual")) is not None:
            return False
        session.add(InsightTag(room_id=room_id, member_id=member_id, tag=tag, source="manual", since=at, set_by=by))
        session.flush()
        return True

    def untag(self, session: Session, room_id: str, member_id: str, tag: str) -> bool:
        """Remove a manual tag; rule tags come back at the next recompute if their rule still holds."""
        result = session.execute(delete(InsightTag).where(
            col(InsightTag.room_id) == room_id, col(InsightTag.member_id) == member_id, col(InsightTag.tag) == tag,
            col(InsightTag.source) == "manual"))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def record_purchases(self, session: Session, purchases: Sequence[Purchase], now: datetime) -> tuple[int, int]:
        """Insert new orders and recompute the buyers' stages: (accepted, duplicate). Commits nothing."""
        known = set(session.exec(select(InsightPurchase.order_id).where(
            col(InsightPurchase.order_id).in_([p.order_id for p in purchases]))).all())
        accepted = 0
        for p in purchases:
            if p.order_id in known:
                continue
            known.add(p.order_id)
            session.add(InsightPurchase(order_id=p.order_id, member_id=p.member_id, room_id=p.room_id,
                                        amount_cents=p.amount_cents, currency=p.currency, item=p.item,
                                        paid_at=p.paid_at, received_at=now))
            accepted += 1
        session.flush()
        buyers = {p.member_id for p in purchases}
        rooms = set(session.exec(select(Membership.room_id).where(col(Membership.member_id).in_(buyers))).all())
        self.recompute(session, now, sorted(rooms), members=buyers)
        return accepted, len(purchases) - accepted
