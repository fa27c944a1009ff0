"""The lottery's public API (`ctx.service("lottery")`, `qunbot lottery verify`): history and verification."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from .fairness import canonical_entrants, commitment, draw_winners
from .models import LotteryDraw, LotteryEntry


@dataclass
class Verification:
    """The outcome of recomputing one draw; `problems` is empty when everything matches."""

    draw_id: int
    ok: bool
    problems: list[str] = field(default_factory=list)
    recomputed: list[str] = field(default_factory=list)
    record: LotteryDraw | None = None

    def report(self) -> list[str]:
        """Lines for a person: what was checked, then MATCH or MISMATCH with each problem."""
        lines: list[str] = []
        draw = self.record
        if draw is not None:
            lines += [f"draw {draw.id}: {draw.prize} x{draw.winners_count} in room {draw.room_id}",
                      f"commitment: {draw.commitment}", f"seed:       {draw.seed}",
                      f"entrants ({len(draw.entrants)}): {', '.join(draw.entrants)}",
                      f"announced winners:  {', '.join(draw.winners)}",
                      f"recomputed winners: {', '.join(self.recomputed)}"]
        lines.append("MATCH: the winners follow from the seed and the entrants" if self.ok else "MISMATCH")
        lines += [f"  - {problem}" for problem in self.problems]
        return lines


class LotteryService:
    def history(self, session: Session, room_id: str | None = None, limit: int = 50) -> list[LotteryDraw]:
        """Draws, newest first (all rooms if `room_id` is None)."""
        query = select(LotteryDraw).order_by(col(LotteryDraw.id).desc()).limit(limit)
        if room_id is not None:
            query = query.where(LotteryDraw.room_id == room_id)
        return list(session.exec(query).all())

    def verify(self, session: Session, draw_id: int) -> Verification:
        """Recompute a finished draw from its stored record, as docs/lottery.md tells a member to."""
        draw = session.get(LotteryDraw, draw_id)
        if draw is None:
            return Verification(draw_id, False, [f"no draw with id {draw_id}"])
        if draw.status != "drawn":
            return Verification(draw_id, False, ["the draw is still open: its seed is not revealed yet"], record=draw)
        problems: list[str] = []
        if commitment(draw.seed) != draw.commitment:
            problems.append(f"sha256(seed) = {commitment(draw.seed)} but the posted commitment is {draw.commitment}")
        entries = session.exec(select(LotteryEntry.member_id).where(LotteryEntry.draw_id == draw_id)).all()
        if canonical_entrants(entries) != list(draw.entrants):
            problems.append("the stored entrant list differs from the entries table")
        if list(draw.entrants) != canonical_entrants(draw.entrants):
            problems.append("the stored entrant list is not sorted and distinct")
        recomputed = draw_winners(draw.seed, draw.entrants, draw.winners_count)
        if recomputed != list(draw.winners):
            problems.append(f"recomputed winners {recomputed} differ from the announced {list(draw.winners)}")
        return Verification(draw_id, not problems, problems, recomputed, draw)
