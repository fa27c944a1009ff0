"""Out-of-range input gets a clear Chinese answer and changes nothing; big balances fit their columns on
PostgreSQL too; matching member input takes linear time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot._scenario import ScenarioError, load_scenario
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
MEMBERS = {"adm": "管理员甲", "u1": "Alice"}


def _balance(bot: BotHarness, member: str) -> int:
    with bot.db() as db:
        return bot.runtime.plugins["points"].service.balance(db, "g1", member)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request):
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


async def test_an_adjustment_beyond_the_limit_is_refused_in_chinese_and_changes_nothing(db_url):
    async with BotHarness(REPO, plugins=["points"], db_url=db_url) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["adm"])
        for amount in ("+99999999999999999999", "-99999999999999999999", "+1000000001", "+" + "9" * 5000):
            await bot.say("g1", "adm", f"调整积分 @Alice {amount} 测试", mentions=["u1"])
            answer = bot.pop_text()
            assert "一次最多调整 1000000000 积分" in answer, amount
        assert _balance(bot, "u1") == 0


async def test_balances_beyond_32_bits_keep_working_on_postgres(db_url):
    async with BotHarness(REPO, plugins=["points"], db_url=db_url) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["adm"])
        for _ in range(3):
            await bot.say("g1", "adm", "调整积分 @Alice +1000000000 年度大奖", mentions=["u1"])
        assert _balance(bot, "u1") == 3_000_000_000
        await bot.say("g1", "u1", "签到")
        assert "签到成功" in bot.pop_text()
        assert _balance(bot, "u1") == 3_000_000_010


async def test_the_service_refuses_a_deduction_beyond_the_limit_even_when_the_balance_covers_it():
    """The bound holds both ways in the service plugins call, not only in the admin command's parser."""
    async with BotHarness(REPO, plugins=["points"]) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["adm"])
        service = bot.runtime.plugins["points"].service
        limit = sys.modules[type(service).__module__].MAX_CHANGE
        with bot.db() as db:
            for _ in range(3):
                service.grant(db, room_id="g1", member_id="u1", amount=limit, reason="t", source="t", at=bot.now)
            db.commit()
        for change in (lambda db: service.adjust(db, room_id="g1", member_id="u1", amount=-limit - 1,
                                                 reason="t", actor_id="adm", at=bot.now),
                       lambda db: service.spend(db, room_id="g1", member_id="u1", amount=limit + 1,
                                                reason="t", source="t", at=bot.now)):
            with bot.db() as db, pytest.raises(ValueError):
                change(db)
        assert _balance(bot, "u1") == 3 * limit


def test_fifty_thousand_spaces_in_an_admin_command_are_handled_at_once(tmp_path):
    """The amount pattern was quadratic in runs of spaces (28 s for 50,000); a budget of seconds catches it."""
    scenario = tmp_path / "spaces.yaml"
    text = "调整积分 @Alice 奖励" + " " * 50_000 + "x"
    scenario.write_text(f"""\
start: 2026-11-23T08:00:00+08:00
bot: {{id: bot, name: 小完子}}
rooms:
  - {{id: g1, topic: 群, admins: [owner1], members: [{{id: owner1, name: 群主}}, {{id: u1, name: Alice}}]}}
events:
  - say: {{room: g1, from: owner1, text: "{text}", mentions: [u1]}}
""", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "bot.cli", "--project", str(REPO), "simulate", str(scenario)],
                          capture_output=True, text=True, timeout=20, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "用法：调整积分" in done.stdout


@pytest.mark.parametrize("offset", ["+99999999d", "+9999999999999999999999h", "+" + "9" * 5000 + "s"])
def test_huge_scenario_offsets_are_a_clear_error_with_the_line(tmp_path, offset):
    scenario = tmp_path / "far.yaml"
    scenario.write_text(f"""\
start: 2026-11-23T08:00:00+08:00
bot: {{id: bot, name: 小完子}}
events:
  - at: "{offset}"
    private: {{from: u1, text: hi}}
""", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(scenario)
    assert err.value.line == 4 and offset[:12] in err.value.message
    assert "太远了" in err.value.message or "看不懂" in err.value.message


@pytest.mark.parametrize("text", ["9" * 30 + "d", "99999999999d", "9" * 5000 + "s"])
def test_out_of_range_durations_are_a_value_error(text):
    from bot import parse_duration

    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_are_parsed_in_linear_time():
    """`(\\d+)\\s*unit` backtracked over every suffix of a run of digits: minutes for 50,000 of them."""
    code = ("from bot import parse_duration\n"
            "for text in ['1' * 50_000 + 'x', '1 ' * 25_000 + 'x', '1' + ' ' * 50_000 + 'x']:\n"
            "    try:\n        parse_duration(text)\n    except ValueError:\n        pass\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=20, cwd=REPO)


async def test_an_existing_postgres_database_is_widened_to_64_bits(postgres_url):
    from sqlalchemy import text

    from bot._migrations import upgrade

    async with BotHarness(REPO, plugins=["points"], db_url=postgres_url) as bot:
        engine, plugin = bot.runtime.engine, bot.runtime.plugins["points"]
    with engine.begin() as conn:                       # the shape a database made before the fix has
        conn.execute(text("ALTER TABLE points_account ALTER COLUMN balance TYPE INTEGER, "
                          "ALTER COLUMN earned TYPE INTEGER"))
        conn.execute(text("ALTER TABLE points_ledger ALTER COLUMN amount TYPE INTEGER"))
        conn.execute(text("UPDATE core_schema_version SET version = 1 WHERE owner = 'points'"))
    assert upgrade(engine, {"points": plugin.migrations})["points"] == 2
    with engine.connect() as conn:
        types = dict(conn.execute(text(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_name IN ('points_account', 'points_ledger') AND column_name IN "
            "('balance', 'earned', 'amount')")).all())
    assert types == {"points_account.balance": "bigint", "points_account.earned": "bigint",
                     "points_ledger.amount": "bigint"}
    engine.dispose()
