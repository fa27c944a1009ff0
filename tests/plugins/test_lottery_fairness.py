"""Draws stay fair against the operator: verify holds the record against what the room saw, known-answer
vectors pin the algorithm, and the beacon / announced modes defeat aiming with a seed read from the database."""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from bot.cli import main
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]


def _bls():
    """py_ecc, imported without keeping the recursion limit of 100 000 it sets for the whole process (left so,
    every later test's runaway recursion, such as a self-including template, crashes pytest)."""
    limit = sys.getrecursionlimit()
    try:
        from py_ecc.bls import G2Basic
    finally:
        sys.setrecursionlimit(limit)
    return G2Basic


G2Basic = _bls()
MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob", "u3": "Carol", "u4": "Dave", "u5": "Eve"}
START = datetime.fromisoformat("2026-11-23T09:00:00+08:00")


def _module(bot: BotHarness, name: str):
    """A module of the plugin package as the loader imported it (its tables are the ones in use)."""
    package = sys.modules[bot.runtime.plugins["lottery"].timers["draw"].__module__].__name__
    return sys.modules[f"{package}.{name}"]


# --- known-answer vectors: computed independently (HMAC written out from RFC 2104 over hashlib.sha256,
# --- the shuffle from docs/lottery.md's prose), not by the module under test -----------------------------

SPACE = 1 << 256


def test_random_numbers_known_answers():
    fairness = _module_free("fairness")
    stream = fairness._stream("ab" * 32)
    assert next(stream) == int("84a6a1218c1168395b5f8b44e7eaeacae482b00182f0f34f3336469030636178", 16)
    assert next(stream) == int("3a0ae8fdcfebb703176f4a5fc8e5cd06a4c31730934d3a8aa28200aa6d7d9aa9", 16)


def test_uniform_pick_rejects_the_biased_tail():
    fairness = _module_free("fairness")
    # 2^256 mod 3 = 1, so SPACE - 1 is the one value that must be thrown away; modulo alone would give 0
    assert fairness._uniform(iter([SPACE - 1, 5]), 3) == 2
    assert fairness._uniform(iter([SPACE - 2, 5]), 3) == (SPACE - 2) % 3
    # a real stream where the rejection happens: m = 2^255 + 1 rejects about half of all values
    m = (1 << 255) + 1
    assert fairness._uniform(fairness._stream("ab" * 32), m) == \
        26253421736392808426061168156509251466587515769725343971663528694155436726953  # R(0) rejected, R(1) kept
    assert fairness._uniform(fairness._stream("00" * 32), m) == \
        40626668497712451894931802514778028433311689703628821194090821221748334476973  # R(0..2) rejected


@pytest.mark.parametrize(("seed", "entrants", "count", "winners"), [
    ("00" * 32, list("jihgfedcba"), 3, ["i", "c", "b"]),
    ("ab" * 32, ["u5", "u4", "u3", "u2", "u1"], 5, ["u5", "u3", "u2", "u4", "u1"]),  # a full shuffle, in order
    ("9515929c29f4c266c274030ced0f2a378643daf5dbe2bee5a1b782cf406b4e5e", ["u1", "u2", "u3", "u4"], 2, ["u4", "u3"]),
    ("ff" * 32, ["张三", "李四", "王五", "Zoe", "amy"], 2, ["Zoe", "张三"]),  # code-point order, not locale
])
def test_shuffle_known_answers(seed, entrants, count, winners):
    assert _module_free("fairness").draw_winners(seed, entrants, count) == winners


def test_mixed_seed_is_sha256_of_seed_colon_value():
    fairness = _module_free("fairness")
    assert fairness.mixed_seed("ab" * 32, None) == "ab" * 32
    assert fairness.mixed_seed("ab" * 32, "0 7 9") == hashlib.sha256(("ab" * 32 + ":0 7 9").encode()).hexdigest()


def _module_free(name: str):
    """A module of the plugin imported on its own, as a member checking by hand would."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"lottery_{name}_alone", REPO / f"plugins/lottery/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


# --- drand: the published round 1 of the default chain is a vector the beacon check must accept ---------

DRAND_ROUND_1 = {
    "round": 1,
    "randomness": "101297f1ca7dc44ef6088d94ad5fb7ba03455dc33d53ddb412bbc4564ed986ec",
    "signature": "8d61d9100567de44682506aea1a7a6fa6e5491cd27a0a0ed349ef6910ac5ac20ff7bc3e09d7c046566c9f7f3c6f3b"
                 "10104990e7cb424998203d8f7de586fb7fa5f60045417a432684f85093b06ca91c769f0e7ca19268375e659c2a2352b4655",
    "previous_signature": "176f93498eac9ca337150b46d21dd58673ea4e3581185f869672e59fa4cb390a",
}


def test_the_pinned_drand_key_accepts_the_published_round_1_and_nothing_else():
    beacon = _module_free("beacon")
    settings = beacon.BeaconSettings()
    real = beacon.Beacon(**DRAND_ROUND_1)
    assert beacon.check(settings, real, 1) == []
    assert beacon.check(settings, real, 2)  # the same signature is not round 2's
    forged = beacon.Beacon(**{**DRAND_ROUND_1, "randomness": "00" * 32})
    assert any("SHA-256" in p for p in beacon.check(settings, forged, 1))
    other_key = settings.model_copy(update={"public_key": G2Basic.SkToPk(7).hex()})
    assert any("BLS" in p for p in beacon.check(other_key, real, 1))


def test_the_round_used_is_the_first_after_the_close_plus_delay():
    beacon = _module_free("beacon")
    settings = beacon.BeaconSettings(genesis_time=1000, period=30, delay="30s")
    close = datetime.fromtimestamp(1000 + 30 * 5 + 1).astimezone()   # 1 s after round 6; + delay: after round 7
    assert beacon.round_after(settings, close) == 8
    assert beacon.round_time(settings, 8).timestamp() > close.timestamp() + 30
    exactly = datetime.fromtimestamp(1000 + 30 * 5).astimezone()     # + delay: exactly round 7's time, not after
    assert beacon.round_after(settings, exactly) == 8
    assert beacon.round_time(settings, 1).timestamp() == 1000


# --- a local drand: signs any round with a key of its own, publishes rounds up to `published` ------------

class MockDrand:
    SECRET = 4242
    CHAIN = "c0ffee" * 10 + "abcd"

    def __init__(self) -> None:
        self.public_key = G2Basic.SkToPk(self.SECRET).hex()
        self.published = 0
        self.requests: list[str] = []
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mock.requests.append(self.path)
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != mock.CHAIN or parts[1] != "public" or not parts[2].isdigit():
                    self.send_error(404)
                    return
                number = int(parts[2])
                if number > mock.published:
                    self.send_error(404, "round not yet published")
                    return
                body = json.dumps(mock.round(number)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def round(self, number: int) -> dict:
        previous = hashlib.sha512(f"previous {number}".encode()).digest() + bytes(32)  # any 96 bytes will do
        message = hashlib.sha256(previous + number.to_bytes(8, "big")).digest()
        signature = G2Basic.Sign(self.SECRET, message)
        return {"round": number, "randomness": hashlib.sha256(signature).hexdigest(), "signature": signature.hex(),
                "previous_signature": previous.hex()}

    def settings(self) -> dict:
        return {"url": self.url, "chain_hash": self.CHAIN, "public_key": self.public_key,
                "genesis_time": int(START.timestamp()) - 3600, "period": 30, "delay": "1m", "retry_every": "30s"}


@pytest.fixture(scope="module")
def mock_drand():
    mock = MockDrand()
    yield mock
    mock.server.shutdown()


def _harness(db_url: str | None = None, **lottery) -> BotHarness:
    return BotHarness(REPO, plugins=["lottery"], settings={"plugins": {"lottery": lottery}} if lottery else None,
                      db_url=db_url)


async def _room(bot: BotHarness) -> None:
    bot.room("g1", "抽奖群", members=MEMBERS, admins=["owner1"])


def _draw(bot: BotHarness, draw_id: int = 1):
    with bot.db() as db:
        draw = db.get(_module(bot, "models").LotteryDraw, draw_id)
        db.expunge(draw)
        return draw


def _verify(bot: BotHarness, draw_id: int = 1, **kwargs):
    with bot.db() as db:
        return bot.runtime.plugins["lottery"].service.verify(db, draw_id, **kwargs)


def _puppet_that_wins(fairness, seed: str, entrants: list[str]) -> str:
    """The attack: with the seed read from the database, name an account so that it sorts into the winning place
    (the seed fixes the winning position for n + 1 entrants; an id after each entrant, or first, covers them all)."""
    for puppet in ["0sock", *(f"{e}_sock" for e in entrants)]:
        if fairness.draw_winners(seed, [*entrants, puppet], 1) == [puppet]:
            return puppet
    raise AssertionError("no winning puppet found")


async def _seed_mode_draw(bot: BotHarness, args: str = "奖品=口红 名额=2 口令=抽 时长=10m") -> None:
    await _room(bot)
    await bot.say("g1", "owner1", f"开始抽奖 {args}")
    for member in ("u1", "u2", "u3", "u4", "u5"):
        await bot.say("g1", member, "抽")
    await bot.advance("10m")


# --- verify against what the room saw ---------------------------------------------------------------------

def _rewrite(bot: BotHarness, change) -> None:
    models = _module(bot, "models")
    with bot.db() as db:
        draw = db.get(models.LotteryDraw, 1)
        change(db, draw, models)
        db.add(draw)
        db.commit()


async def test_replacing_seed_commitment_and_winners_together_fails_verify():
    fairness = _module_free("fairness")
    async with _harness() as bot:
        await _seed_mode_draw(bot)
        assert _verify(bot).ok, _verify(bot).report()

        def forge(db, draw, models):
            draw.seed = "0" * 64
            draw.commitment = fairness.commitment(draw.seed)
            draw.winners = fairness.draw_winners(draw.seed, draw.entrants, draw.winners_count)
        _rewrite(bot, forge)
        result = _verify(bot)
    assert not result.ok
    assert any("posted commitment" in p for p in result.problems), result.problems


async def test_dropping_an_entrant_everywhere_in_the_lottery_tables_fails_verify():
    fairness = _module_free("fairness")
    async with _harness() as bot:
        await _seed_mode_draw(bot)

        def drop(db, draw, models):
            victim = draw.winners[0]
            for entry in db.exec(select(models.LotteryEntry).where(models.LotteryEntry.member_id == victim)):
                db.delete(entry)
            draw.entrants = [e for e in draw.entrants if e != victim]
            draw.winners = fairness.draw_winners(draw.seed, draw.entrants, draw.winners_count)
        _rewrite(bot, drop)
        result = _verify(bot)
    assert not result.ok
    assert any("told 参与成功" in p for p in result.problems), result.problems
    assert any("posted entrants" in p for p in result.problems), result.problems


async def test_adding_an_entrant_after_the_close_fails_verify():
    fairness = _module_free("fairness")
    async with _harness() as bot:
        await _seed_mode_draw(bot)

        def add(db, draw, models):
            puppet = _puppet_that_wins(fairness, draw.seed, draw.entrants)
            db.add(models.LotteryEntry(draw_id=draw.id, member_id=puppet, entered_at=draw.deadline))
            draw.entrants = sorted([*draw.entrants, puppet])
            draw.winners = fairness.draw_winners(draw.seed, draw.entrants, draw.winners_count)
        _rewrite(bot, add)
        result = _verify(bot)
    assert not result.ok and any("posted entrants" in p for p in result.problems), result.problems


async def test_an_entry_no_message_made_fails_verify_even_with_the_posts_rewritten():
    """Entries as received: an entrant added to the tables and to the posted count, but with no entry message
    the bot replied to in the room."""
    fairness = _module_free("fairness")
    from bot import OutboxMessage
    async with _harness() as bot:
        await _seed_mode_draw(bot)

        def add(db, draw, models):
            old_line = f"参与 {len(draw.entrants)} 人，名单指纹 {fairness.fingerprint(draw.entrants)}"
            db.add(models.LotteryEntry(draw_id=draw.id, member_id="ghost", entered_at=draw.opened_at,
                                       message_id="sim-forged-1"))
            draw.entrants = sorted([*draw.entrants, "ghost"])
            draw.winners = fairness.draw_winners(draw.seed, draw.entrants, draw.winners_count)
            new_line = f"参与 {len(draw.entrants)} 人，名单指纹 {fairness.fingerprint(draw.entrants)}"
            post = db.exec(select(OutboxMessage).where(OutboxMessage.key == "lottery:1:drawn")).one()
            post.text, post.mentions = post.text.replace(old_line, new_line), list(draw.winners)
            db.add(post)
        _rewrite(bot, add)
        result = _verify(bot)
    assert result.problems == ["entries with no reply to their message in the room: ghost"], result.problems


async def test_changing_the_number_of_winners_fails_verify():
    fairness = _module_free("fairness")
    async with _harness() as bot:
        await _seed_mode_draw(bot)

        def fewer(db, draw, models):
            draw.winners_count = 1
            draw.winners = fairness.draw_winners(draw.seed, draw.entrants, 1)
        _rewrite(bot, fewer)
        result = _verify(bot)
    assert not result.ok
    assert "the posted number of winners differs from the record" in result.problems, result.problems


async def test_winner_order_and_the_entries_table_are_checked():
    async with _harness() as bot:
        await _seed_mode_draw(bot)
        _rewrite(bot, lambda db, draw, models: setattr(draw, "winners", list(reversed(draw.winners))))
        swapped = _verify(bot)
        _rewrite(bot, lambda db, draw, models: setattr(draw, "winners", list(reversed(draw.winners))))
        assert _verify(bot).ok

        def extra_row(db, draw, models):
            db.add(models.LotteryEntry(draw_id=draw.id, member_id="ghost", entered_at=draw.deadline))
        _rewrite(bot, extra_row)
        extra = _verify(bot)
    assert not swapped.ok and any("recomputed winners" in p for p in swapped.problems)
    assert not extra.ok and "the stored entrant list differs from the entries table" in extra.problems


async def test_an_entry_swapped_for_another_member_fails_verify():
    """Same number of entries, one member replaced in the entries table: the lists differ, not the counts."""
    async with _harness() as bot:
        await _seed_mode_draw(bot)

        def swap(db, draw, models):
            entry = db.exec(select(models.LotteryEntry).where(models.LotteryEntry.draw_id == draw.id)).first()
            entry.member_id = "ghost"
            db.add(entry)
        _rewrite(bot, swap)
        result = _verify(bot)
    assert not result.ok and "the stored entrant list differs from the entries table" in result.problems


async def test_a_member_copy_of_the_chat_catches_an_operator_who_rewrote_the_outbox_too(tmp_path):
    fairness = _module_free("fairness")
    async with _harness() as bot:
        await _seed_mode_draw(bot)
        seen_in_chat = "\n\n".join(m.text for m in bot.pop() if "抽奖" in m.text or "种子" in m.text)
        models = _module(bot, "models")
        from bot import OutboxMessage
        with bot.db() as db:  # the full forgery: lottery tables and the bot's own record of its posts
            draw = db.get(models.LotteryDraw, 1)
            old_seed, old_commitment = draw.seed, draw.commitment
            draw.seed = "1" * 64
            draw.commitment = fairness.commitment(draw.seed)
            draw.winners = fairness.draw_winners(draw.seed, draw.entrants, draw.winners_count)
            db.add(draw)
            for row in db.exec(select(OutboxMessage).where(OutboxMessage.key.startswith("lottery:1:"))):
                row.text = row.text.replace(old_seed, draw.seed).replace(old_commitment, draw.commitment)
                row.mentions = list(draw.winners) if row.key == "lottery:1:drawn" else row.mentions
                db.add(row)
            db.commit()
        fooled = _verify(bot)
        copy = tmp_path / "chat.txt"
        copy.write_text(seen_in_chat, encoding="utf-8")
        cli = CliRunner().invoke(main, ["--project", str(REPO), "lottery", "verify", "1", "--db", bot.sim.db_url,
                                        "--posted", str(copy)])
    assert fooled.ok  # the documented limit: the bot's own records can all be rewritten by whoever owns them
    assert cli.exit_code == 1 and "posted commitment" in cli.output, cli.output


# --- beacon mode -------------------------------------------------------------------------------------------

async def test_beacon_mode_draws_with_the_round_after_the_close_and_verify_shows_every_input(mock_drand):
    async with _harness(beacon=mock_drand.settings()) as bot:
        await _room(bot)
        await bot.say("g1", "owner1", "开始抽奖 奖品=口红 名额=2 口令=抽 时长=10m 开奖方式=信标")
        opened = bot.pop_text()
        for member in ("u1", "u2", "u3", "u4", "u5"):
            await bot.say("g1", member, "抽")
        bot.pop()
        mock_drand.published = 0  # the round does not exist yet at the close
        await bot.advance("10m")
        closed = bot.pop_text()
        waiting = _draw(bot)
        mock_drand.published = 10 ** 6
        await bot.advance("30s")  # the retry
        drawn = bot.pop_text()
        draw = _draw(bot)
        settings = _module(bot, "beacon").BeaconSettings(**mock_drand.settings())
        result = _verify(bot, beacon=settings)
        wrong_key = _verify(bot, beacon=settings.model_copy(update={"public_key": G2Basic.SkToPk(9).hex()}))
    fairness = _module_free("fairness")
    assert waiting.status == "closed" and waiting.winners == []
    assert f"信标轮次={draw.beacon_round}" in opened and "截止前谁都算不出结果" in opened
    assert "报名截止" in closed and "参与 5 人" in closed and draw.seed not in closed
    expected_round = (int(draw.deadline.timestamp()) + 60 - mock_drand.settings()["genesis_time"]) // 30 + 2
    assert draw.beacon_round == expected_round
    assert draw.public_value == mock_drand.round(draw.beacon_round)["randomness"]
    assert draw.winners == fairness.draw_winners(fairness.mixed_seed(draw.seed, draw.public_value), draw.entrants, 2)
    assert draw.seed in drawn and draw.public_value in drawn
    assert result.ok, result.report()
    report = "\n".join(result.report())
    for shown in (draw.seed, draw.commitment, draw.public_value, draw.beacon["signature"], str(draw.beacon_round)):
        assert shown in report
    assert not wrong_key.ok and any("BLS" in p for p in wrong_key.problems)


async def test_a_forged_beacon_value_fails_verify(mock_drand):
    fairness = _module_free("fairness")
    async with _harness(beacon=mock_drand.settings()) as bot:
        mock_drand.published = 10 ** 6
        await _seed_mode_draw(bot, "奖品=口红 名额=1 口令=抽 时长=10m 开奖方式=信标")

        def forge(db, draw, models):  # a value of the operator's choosing, the winners to match
            draw.public_value = "ee" * 32
            draw.beacon = {**draw.beacon, "randomness": draw.public_value}
            draw.winners = fairness.draw_winners(fairness.mixed_seed(draw.seed, draw.public_value), draw.entrants, 1)
        _rewrite(bot, forge)
        result = _verify(bot, beacon=_module(bot, "beacon").BeaconSettings(**mock_drand.settings()))
    assert not result.ok and any("SHA-256 of the signature" in p for p in result.problems), result.problems


async def test_reading_the_seed_and_entering_a_sock_puppet_wins_in_seed_mode_only(mock_drand):
    """The attack of issue 13: whoever reads the database while the draw is open picks a winning puppet."""
    fairness = _module_free("fairness")
    outcomes = {}
    for mode in ("种子", "信标", "公布"):
        async with _harness(beacon=mock_drand.settings()) as bot:
            mock_drand.published = 10 ** 6
            await _room(bot)
            source = " 公布来源=11月23日 福彩3D 开奖号码" if mode == "公布" else ""
            await bot.say("g1", "owner1", f"开始抽奖 奖品=口红 名额=1 口令=抽 时长=10m 开奖方式={mode}{source}")
            for member in ("u1", "u2", "u3", "u4"):
                await bot.say("g1", member, "抽")
            seed = _draw(bot).seed  # the operator reads the secret seed...
            puppet = _puppet_that_wins(fairness, seed, ["u1", "u2", "u3", "u4"])
            await bot.join("g1", {puppet: "路人甲"})  # ...and enters the account that wins with it
            await bot.say("g1", puppet, "抽")
            await bot.advance("10m")
            if mode == "公布":
                await bot.say("g1", "owner1", "公布开奖号 1 4 2 7")  # published after the close by the source
            draw = _draw(bot)
            outcomes[mode] = (puppet, draw)
    puppet, plain = outcomes["种子"]
    assert plain.winners == [puppet]  # the threat is real in seed mode (docs/lottery.md says so)
    announced_puppet, announced = outcomes["公布"]
    assert announced.status == "drawn" and announced.winners != [announced_puppet]
    puppet, mixed = outcomes["信标"]
    assert mixed.winners != [puppet]
    # and not by luck: over many beacon values the aimed puppet wins at the fair rate, 1 in 5
    rng = random.Random(13)
    wins = sum(fairness.draw_winners(fairness.mixed_seed(mixed.seed, f"{rng.getrandbits(256):064x}"),
                                     mixed.entrants, 1) == [puppet] for _ in range(2000))
    assert 0.15 < wins / 2000 < 0.25


# --- announced mode ----------------------------------------------------------------------------------------

async def test_announced_mode_waits_for_the_admin_and_mixes_the_value_in():
    fairness = _module_free("fairness")
    async with _harness() as bot:
        await _room(bot)
        await bot.say("g1", "owner1", "开始抽奖 奖品=口红 名额=1 口令=抽 时长=10m "
                                      "开奖方式=公布 公布来源=11月23日 福彩3D 开奖号码")
        opened = bot.pop_text()
        for member in ("u1", "u2", "u3"):
            await bot.say("g1", member, "抽")
        await bot.say("g1", "owner1", "公布开奖号 1 3 7 9")  # too early: entries still open
        early = bot.pop()[-1].text
        await bot.advance("10m")
        closed = bot.pop_text()
        await bot.say("g1", "u1", "公布开奖号 1 0 0 0")  # a member may not
        await bot.say("g1", "owner1", "公布开奖号 1 ３ ７ ９")  # full-width digits: the same value
        drawn = bot.pop_text()
        await bot.say("g1", "owner1", "公布开奖号 1 1 1 1")  # a second announcement changes nothing
        again = bot.pop_text()
        draw = _draw(bot)
        result = _verify(bot)
    assert "公布来源=11月23日 福彩3D 开奖号码" in opened
    assert "还没截止" in early
    assert "公布开奖号 1" in closed and "参与 3 人" in closed
    assert draw.public_value == "3 7 9"
    assert draw.winners == fairness.draw_winners(fairness.mixed_seed(draw.seed, "3 7 9"), draw.entrants, 1)
    assert "公开值：3 7 9" in drawn and "已经开奖" in again
    assert result.ok, result.report()
    assert any("3 7 9" in line and "福彩3D" in line for line in result.report())


async def test_announced_mode_needs_a_named_source():
    async with _harness() as bot:
        await _room(bot)
        await bot.say("g1", "owner1", "开始抽奖 奖品=口红 名额=1 口令=抽 时长=10m 开奖方式=公布")
        text = bot.pop_text()
        with bot.db() as db:
            draws = db.exec(select(_module(bot, "models").LotteryDraw)).all()
    assert "公布来源" in text and draws == []


# --- numbering and simulations (issue 15) -------------------------------------------------------------------

async def test_draw_numbers_count_per_room():
    async with _harness() as bot:
        await _room(bot)
        bot.room("g2", "二群", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", "开始抽奖 奖品=口红 名额=1 口令=抽 时长=10m")
        await bot.say("g2", "owner1", "开始抽奖 奖品=面膜 名额=1 口令=抽 时长=10m")
        await bot.say("g1", "owner1", "开始抽奖 奖品=精华 名额=1 口令=再抽 时长=10m")
        texts = [m.text for m in bot.pop()]
    assert "第 1 期" in texts[0] and "第 1 期" in texts[1] and "第 2 期" in texts[2]


def _simulate(tmp_path, name: str) -> list[dict]:
    result = CliRunner().invoke(main, ["--project", str(REPO), "simulate", str(REPO / "examples/quiz_and_lottery.yaml"),
                                       "--db", f"sqlite:///{tmp_path}/{name}.db"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.skipif(not (REPO / "plugins/points").exists(), reason="needs the points plugin")
def test_two_simulations_draw_alike_and_the_docs_show_that_run(tmp_path):
    first, second = _simulate(tmp_path, "a"), _simulate(tmp_path, "b")
    drawn = [next(m for m in run if "期抽奖开奖" in m["text"]) for run in (first, second)]
    assert drawn[0]["text"] == drawn[1]["text"] and drawn[0]["mentions"] == drawn[1]["mentions"]
    seed = drawn[0]["text"].split("种子：")[1].split()[0]
    docs = (REPO / "docs/lottery.md").read_text(encoding="utf-8")
    worked = docs[docs.index("### Worked example"):]
    assert f"Seed `{seed}`" in worked.replace("\n", " ")
    names = {"u1": "Alice", "u2": "Bob", "u3": "Carol", "u4": "Dave"}
    winners = ", ".join(drawn[0]["mentions"])
    assert f"Winners: {winners}." in worked, (winners, [names[m] for m in drawn[0]["mentions"]])
    assert "第 1 期" in drawn[0]["text"]


def test_run_takes_seeds_from_the_os_and_a_simulation_from_its_seed():
    from bot._entropy import secret_hex

    assert secret_hex(None, "lottery:g1:1") != secret_hex(None, "lottery:g1:1")
    assert secret_hex(7, "lottery:g1:1") == secret_hex(7, "lottery:g1:1") != secret_hex(8, "lottery:g1:1")
    assert secret_hex(7, "lottery:g1:1") != secret_hex(7, "lottery:g1:2")
    import inspect

    from bot import cli
    source = inspect.getsource(cli)
    run_runtime = source[source.index("node = Node(Runtime("):].split("\n")[0]
    assert "seed" not in run_runtime  # `qunbot run` never passes a seed: its draws use OS randomness


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_existing_database_is_migrated_and_numbered_per_room(backend, tmp_path, request):
    """A database from before draw numbers and modes: migration 2 adds the columns and numbers old draws."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/old.db"
    async with BotHarness(REPO, plugins=["lottery"], db_url=url) as bot:
        await _room(bot)
        bot.room("g2", "二群", members=MEMBERS, admins=["owner1"])
        for room, keyword in (("g1", "抽"), ("g2", "抽"), ("g1", "再抽")):
            await bot.say(room, "owner1", f"开始抽奖 奖品=口红 名额=1 口令={keyword} 时长=10m")
        await bot.say("g1", "u1", "抽")
    from bot._db import make_engine
    engine = make_engine(url)
    with engine.begin() as conn:  # back to the shape of schema version 1
        conn.exec_driver_sql("DROP INDEX uq_lottery_draw_room_number")
        for column in ("number", "mode", "announce_source", "beacon_round", "public_value", "beacon"):
            conn.exec_driver_sql(f"ALTER TABLE lottery_draw DROP COLUMN {column}")
        conn.exec_driver_sql("ALTER TABLE lottery_entry DROP COLUMN message_id")
        conn.exec_driver_sql("UPDATE core_schema_version SET version = 1 WHERE owner = 'lottery'")
    engine.dispose()
    async with BotHarness(REPO, plugins=["lottery"], db_url=url) as bot:
        await _room(bot)
        bot.room("g2", "二群", members=MEMBERS, admins=["owner1"])
        numbers = {draw_id: _draw(bot, draw_id).number for draw_id in (1, 2, 3)}
        await bot.say("g1", "owner1", "开始抽奖 奖品=面膜 名额=1 口令=三抽 时长=10m")
        opened = bot.pop_text()
        await bot.advance("10m")
        drawn = [m.text for m in bot.pop() if "开奖" in m.text]
    assert numbers == {1: 1, 2: 1, 3: 2}
    assert "第 3 期" in opened
    assert len(drawn) == 4  # the three old draws were still open and are drawn after the upgrade


async def test_beacon_and_announced_draws_verify_on_postgresql(postgres_url, mock_drand):
    async with _harness(postgres_url, beacon=mock_drand.settings()) as bot:
        mock_drand.published = 10 ** 6
        await _room(bot)
        await bot.say("g1", "owner1", "开始抽奖 奖品=口红 名额=1 口令=抽 时长=10m 开奖方式=信标")
        await bot.say("g1", "owner1", "开始抽奖 奖品=面膜 名额=1 口令=再抽 时长=10m 开奖方式=公布 公布来源=福彩3D")
        for member in ("u1", "u2", "u3"):
            await bot.say("g1", member, "抽")
            await bot.say("g1", member, "再抽")
        await bot.advance("10m")
        await bot.say("g1", "owner1", "公布开奖号 2 123")
        settings = _module(bot, "beacon").BeaconSettings(**mock_drand.settings())
        results = [_verify(bot, draw_id, beacon=settings) for draw_id in (1, 2)]
        draws = [_draw(bot, draw_id) for draw_id in (1, 2)]
    assert [d.status for d in draws] == ["drawn", "drawn"] and draws[0].beacon["round"] == draws[0].beacon_round
    assert all(r.ok for r in results), [r.report() for r in results]


def test_checking_a_beacon_leaves_the_interpreters_recursion_limit_alone():
    """py_ecc raises the limit to 100 000 on import; left so, a template that includes itself would crash the
    bot (a C stack overflow) instead of being an error on its line."""
    import subprocess

    code = ("import sys; sys.path.insert(0, 'plugins'); before = sys.getrecursionlimit()\n"
            "from lottery import beacon\n"
            "beacon._bls()\n"
            "assert sys.getrecursionlimit() == before, sys.getrecursionlimit()\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
