"""Levels count points earned: spending them (a redemption, another plugin's spend) never lowers a level;
an admin's deduction is a correction of what was earned, and does."""

from __future__ import annotations

from pathlib import Path

from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
MEMBERS = {"adm": "管理员甲", "u1": "Alice"}


def _settings(tmp_path: Path) -> dict:
    path = tmp_path / "catalog.yaml"
    path.write_text("items:\n  - name: 帆布袋\n    cost: 100\n    stock: 5\n", encoding="utf-8")
    return {"plugins": {"points": {"catalog": str(path)}}}


async def test_spending_points_keeps_the_level_reached(tmp_path):
    async with BotHarness(REPO, plugins=["points"], settings=_settings(tmp_path)) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["adm"])
        service = bot.runtime.plugins["points"].service
        with bot.db() as db:
            service.grant(db, room_id="g1", member_id="u1", amount=150, reason="t", source="t", at=bot.now)
            service.spend(db, room_id="g1", member_id="u1", amount=20, reason="t", source="t", at=bot.now)
            db.commit()
        await bot.say("g1", "u1", "兑换 帆布袋")
        assert "兑换成功" in bot.pop_text()
        with bot.db() as db:
            assert service.balance(db, "g1", "u1") == 30
            assert service.earned(db, "g1", "u1") == 150
            assert service.level(db, "g1", "u1").rank == 2
        await bot.say("g1", "u1", "积分")
        answer = bot.pop_text()
        assert "你的积分：30" in answer and "V2" in answer and "再获得 150 分升到 V3" in answer


async def test_an_admin_deduction_lowers_the_level_basis(tmp_path):
    async with BotHarness(REPO, plugins=["points"], settings=_settings(tmp_path)) as bot:
        bot.room("g1", "群", members=MEMBERS, admins=["adm"])
        await bot.say("g1", "adm", "调整积分 @Alice +120 活动", mentions=["u1"])
        await bot.say("g1", "adm", "调整积分 @Alice -50 误加", mentions=["u1"])
        with bot.db() as db:
            service = bot.runtime.plugins["points"].service
            assert (service.balance(db, "g1", "u1"), service.earned(db, "g1", "u1")) == (70, 70)
            assert service.level(db, "g1", "u1").rank == 1
