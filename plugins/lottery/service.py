"""The lottery's public API (`ctx.service("lottery")`, `qunbot lottery verify`): history and verification.

Verification does not trust the lottery tables alone: it reads the commitment, the terms and the entrant
count back from the posts the room saw (the outbox, or texts a member copied from the chat), checks the
entries against the messages that made them, re-checks the beacon's signature under the pinned key, and
recomputes the winners in order.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import UTC

from sqlmodel import Session, col, select

from bot import OutboxMessage

from . import beacon as drand
from .fairness import canonical_entrants, commitment, draw_winners, fingerprint, mixed_seed
from .models import LotteryDraw, LotteryEntry
from .posted import MODE_WORDS, TERMS, read_posts


@dataclass
class Verification:
    """The outcome of recomputing one draw; `problems` is empty when everything matches."""

    draw_id: int
    ok: bool
    problems: list[str] = field(default_factory=list)
    recomputed: list[str] = field(default_factory=list)
    record: LotteryDraw | None = None
    inputs: list[str] = field(default_factory=list)
    """Every input of the draw, one line each, for a person to compare with what the room saw."""

    def report(self) -> list[str]:
        """Lines for a person: what was checked, then MATCH or MISMATCH with each problem."""
        lines: list[str] = []
        draw = self.record
        if draw is not None:
            lines += [f"draw {draw.id} (room {draw.room_id}, 第 {draw.number} 期): {draw.prize} x{draw.winners_count}",
                      *self.inputs,
                      f"announced winners:  {', '.join(draw.winners)}",
                      f"recomputed winners: {', '.join(self.recomputed)}"]
        lines.append("MATCH: the winners follow from the posted commitment, terms and public value and the entries"
                     if self.ok else "MISMATCH")
        lines += [f"  - {problem}" for problem in self.problems]
        return lines


def _same(a: str | None, b: str | None) -> bool:
    def norm(text: str | None) -> str:
        return " ".join(unicodedata.normalize("NFKC", text or "").split())
    return norm(a) == norm(b)


class LotteryService:
    def history(self, session: Session, room_id: str | None = None, limit: int = 50) -> list[LotteryDraw]:
        """Draws, newest first (all rooms if `room_id` is None)."""
        query = select(LotteryDraw).order_by(col(LotteryDraw.id).desc()).limit(limit)
        if room_id is not None:
            query = query.where(LotteryDraw.room_id == room_id)
        return list(session.exec(query).all())

    def verify(self, session: Session, draw_id: int, *, posted: list[str] | None = None,
               beacon: drand.BeaconSettings | None = None) -> Verification:
        """Recompute a finished draw and hold it against what the room saw.

        `posted`: the draw's posts as a member copied them from the chat; default, the bot's sent messages.
        `beacon`: the drand chain whose pinned key the stored round must verify under (default: drand mainnet).
        """
        draw = session.get(LotteryDraw, draw_id)
        if draw is None:
            return Verification(draw_id, False, [f"no draw with id {draw_id}"])
        if draw.status != "drawn":
            return Verification(draw_id, False, ["the draw is not drawn yet: its seed is not revealed"], record=draw)
        problems: list[str] = []
        inputs: list[str] = []
        texts = posted if posted is not None else self._posts(session, draw, problems)
        seen = read_posts(texts)

        # 1. the commitment posted before the first entry, and the revealed seed
        inputs += [f"seed:                {draw.seed}", f"sha256(seed):        {commitment(draw.seed)}",
                   f"posted commitment:   {', '.join(seen.commitments) or '(none)'}"]
        if len(set(seen.commitments)) != 1:
            problems.append("the opening post does not show exactly one commitment")
        elif seen.commitments[0] != commitment(draw.seed):
            problems.append(f"sha256(seed) = {commitment(draw.seed)} "
                            f"but the posted commitment is {seen.commitments[0]}")
        if draw.commitment != commitment(draw.seed):
            problems.append(f"sha256(seed) = {commitment(draw.seed)} but the stored commitment is {draw.commitment}")
        if seen.seeds and set(seen.seeds) != {draw.seed}:
            problems.append(f"the draw post revealed seed {seen.seeds[0]}, the record says {draw.seed}")

        # 2. the terms as posted at the open
        terms = seen.terms
        inputs.append(f"posted terms:        {self._terms_text(texts)}")
        if terms is None:
            why = f": {seen.terms_error}" if seen.terms_error else ""
            problems.append(f"the opening post shows no readable terms line{why}")
        else:
            posted_deadline = terms.deadline_at(draw.deadline.astimezone(UTC), "0s")
            checks = [("prize", _same(terms.prize, draw.prize)),
                      ("number of winners", terms.winners == draw.winners_count),
                      ("keyword", _same(terms.keyword, draw.keyword)), ("deadline", posted_deadline == draw.deadline),
                      ("mode", (terms.mode or "seed") == draw.mode),
                      ("beacon round", terms.beacon_round == draw.beacon_round),
                      ("announce source", _same(terms.announce_source, draw.announce_source))]
            problems += [f"the posted {name} differs from the record" for name, same in checks if not same]

        # 3. the entrants: canonical, as the entries table has them, as the messages entered them, as posted
        entries = session.exec(select(LotteryEntry).where(LotteryEntry.draw_id == draw_id)).all()
        inputs.append(f"entrants ({len(draw.entrants)}): {', '.join(draw.entrants)}")
        if list(draw.entrants) != canonical_entrants(draw.entrants):
            problems.append("the stored entrant list is not sorted and distinct")
        if canonical_entrants(e.member_id for e in entries) != list(draw.entrants):
            problems.append("the stored entrant list differs from the entries table")
        if posted is None:
            replies = self._confirmed(session, draw)
            missing = sorted({m for members in replies.values() for m in members} - set(draw.entrants))
            if missing:
                problems.append(f"told 参与成功 in the room but not among the entrants: {', '.join(missing)}")
            if replies:  # entries were confirmed in this draw: each entry must answer to a message the bot replied to
                unheard = sorted(e.member_id for e in entries if e.member_id not in replies.get(e.message_id or "", ()))
                if unheard:
                    problems.append(f"entries with no reply to their message in the room: {', '.join(unheard)}")
        if draw.drawn_late:
            inputs.append("note:                entries were closed late (the bot was offline at the deadline); "
                          "compare the entrants with the 参与成功 replies in the chat")
        posted_counts = set(seen.entrants)
        if not posted_counts:
            problems.append("no post shows the entrant count and fingerprint")
        elif posted_counts != {(len(draw.entrants), fingerprint(draw.entrants))}:
            problems.append(f"posted entrants {sorted(posted_counts)} differ from the record's "
                            f"{len(draw.entrants)} / {fingerprint(draw.entrants)}")

        # 4. the public value (beacon / announced)
        inputs.append(f"mode:                {draw.mode} ({MODE_WORDS.get(draw.mode, '?')})")
        public = None
        if draw.mode == "beacon":
            public = draw.public_value
            problems += self._check_beacon(draw, beacon or drand.BeaconSettings(), inputs)
        elif draw.mode == "announced":
            public = draw.public_value
            inputs.append(f"announced value:     {public} (from {draw.announce_source}: compare with the source)")
            if not public:
                problems.append("no announced value is recorded")
        if draw.mode != "seed" and seen.public_values and set(seen.public_values) != {public}:
            problems.append(f"the draw post shows public value {seen.public_values[0]}, the record {public}")
        effective = mixed_seed(draw.seed, public if draw.mode != "seed" else None)
        if effective != draw.seed:
            inputs.append(f"mixed seed:          sha256(seed:public) = {effective}")

        # 5. the winners, in order
        recomputed = draw_winners(effective, draw.entrants, draw.winners_count)
        if recomputed != list(draw.winners):
            problems.append(f"recomputed winners {recomputed} differ from the announced {list(draw.winners)}")
        if posted is None:
            drawn = self._post(session, draw, "drawn")
            if drawn is not None and draw.winners and list(drawn.mentions) != list(draw.winners):
                problems.append(f"the draw post @-mentioned {list(drawn.mentions)}, "
                                f"the record says {list(draw.winners)}")
        return Verification(draw_id, not problems, problems, recomputed, draw, inputs)

    @staticmethod
    def _post(session: Session, draw: LotteryDraw, what: str) -> OutboxMessage | None:
        return session.exec(select(OutboxMessage).where(OutboxMessage.key == f"lottery:{draw.id}:{what}",
                                                        OutboxMessage.account == draw.account)).first()

    def _posts(self, session: Session, draw: LotteryDraw, problems: list[str]) -> list[str]:
        texts = []
        for what in ("opened", "closed", "drawn"):
            row = self._post(session, draw, what)
            if row is None:
                if what != "closed" or draw.mode != "seed":
                    problems.append(f"the bot has no record of posting the {what} message")
                continue
            if row.status not in ("sent", "uncertain"):
                problems.append(f"the {what} message was never sent to the room (status {row.status})")
            texts.append(row.text)
        return texts

    @staticmethod
    def _terms_text(texts: list[str]) -> str:
        for text in texts:
            for line in text.splitlines():
                if line.strip().startswith(TERMS):
                    return line.strip()
        return "(none)"

    @staticmethod
    def _confirmed(session: Session, draw: LotteryDraw) -> dict[str, set[str]]:
        """Message id -> members the bot told 参与成功 / 已经参与过 in reply to it (the entries as received)."""
        prefix = f"lottery:{draw.id}:entry:"
        rows = session.exec(select(OutboxMessage.key, OutboxMessage.mentions).where(
            col(OutboxMessage.key).startswith(prefix), OutboxMessage.account == draw.account))
        replies: dict[str, set[str]] = {}
        for key, mentions in rows:
            replies.setdefault(key.removeprefix(prefix), set()).update(mentions)
        return replies

    @staticmethod
    def _check_beacon(draw: LotteryDraw, settings: drand.BeaconSettings, inputs: list[str]) -> list[str]:
        stored = draw.beacon or {}
        inputs += [f"beacon:              drand chain {settings.chain_hash[:16]}…, key {settings.public_key[:16]}…, "
                   f"scheme {settings.scheme}",
                   f"beacon round:        {draw.beacon_round} at {drand.round_time(settings, draw.beacon_round or 1)} "
                   f"(entries closed {draw.deadline})",
                   f"beacon randomness:   {stored.get('randomness')}",
                   f"beacon signature:    {stored.get('signature')}"]
        problems = []
        if draw.beacon_round is None or drand.round_time(settings, draw.beacon_round) <= draw.deadline:
            problems.append("the beacon round is not after the close of entries")
        try:
            beacon = drand.Beacon(int(stored["round"]), str(stored["randomness"]), str(stored["signature"]),
                                  str(stored.get("previous_signature") or ""))
        except (KeyError, TypeError, ValueError):
            return [*problems, "no beacon round is recorded"]
        problems += [f"beacon: {p}" for p in drand.check(settings, beacon, draw.beacon_round or 0)]
        if draw.public_value != beacon.randomness:
            problems.append("the public value is not the beacon's randomness")
        return problems
