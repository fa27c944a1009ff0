"""guard: ads, QR posters, cards, written-out contacts, banned words and floods; warn, strikes, removal,
exemptions, the owner asked where the account cannot remove, admin commands, records, mass joins."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
import segno
from PIL import Image, ImageDraw
from sqlmodel import select

from bot._loader import _import_file
from bot.adapters._base import Capabilities
from bot.testing import BotHarness

MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob", "u3": "Carol"}
REPO = Path(__file__).resolve().parents[2]


def _module(sub: str) -> ModuleType:
    """A module of the guard plugin as the runtime loads it (one copy, so its tables are defined once)."""
    package = _import_file("guard", REPO / "plugins" / "guard" / "__init__.py")
    return importlib.import_module(f"{package.__name__}.{sub}")


GuardRecord = _module("models").GuardRecord
_rules = _module("rules")
ContactRule, LinkRule, Message, QrCodeRule = _rules.ContactRule, _rules.LinkRule, _rules.Message, _rules.QrCodeRule


def _records(bot: BotHarness) -> list[GuardRecord]:
    with bot.db() as db:
        return list(db.exec(select(GuardRecord).order_by(GuardRecord.id)))


def _poster(path: Path, payload: str | None) -> Path:
    """A product poster: a coloured canvas with a headline bar and, if `payload`, a QR code in the corner."""
    poster = Image.new("RGB", (600, 900), (250, 230, 220))
    draw = ImageDraw.Draw(poster)
    draw.rectangle((40, 60, 560, 160), fill=(200, 60, 60))
    draw.ellipse((150, 250, 450, 550), fill=(240, 200, 120))
    if payload is not None:
        qr = segno.make(payload, error="m")
        tmp = path.with_suffix(".qr.png")
        qr.save(tmp, scale=6, border=2)
        poster.paste(Image.open(tmp).convert("RGB"), (380, 680))
        tmp.unlink()
    poster.save(path)
    return path


@pytest.fixture
def guard_project(project: Path) -> Path:
    """An empty project with the guard's templates and a word list."""
    import shutil

    shutil.copytree(REPO / "scripts_templates" / "guard", project / "scripts_templates" / "guard")
    (project / "data").mkdir()
    (project / "data" / "guard.yaml").write_text("banned_words: [加微信, 兼职刷单]\nallowed_domains: [wanzi.example]\n",
                                                 encoding="utf-8")
    return project


def _harness(project: Path, **config: object) -> BotHarness:
    return BotHarness(project, plugins=["guard"],
                      settings={"plugins": {"dirs": [str(REPO / "plugins")], "guard": config}})


# --- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "联系我 13812345678", "电话 138 1234 5678", "1３８-1234-5678", "壹三八一二三四五六七八",
    "加微信 wanzi2024", "VX：kk_8888", "v: shop666a", "微信号 abc_def",
])
def test_written_out_contacts_are_found_through_evasions(text):
    assert ContactRule().detect(Message(text)) is not None


@pytest.mark.parametrize("text", [
    "今天 12 点开抢，共 138 件", "订单号 20261129", "我微信 update 了一下", "vitamins are great", "v5 会员",
    "2026-11-29 13:00 见",
])
def test_ordinary_chatter_is_not_a_contact(text):
    assert ContactRule().detect(Message(text)) is None


def test_links_except_allowed_domains():
    rule = LinkRule(["wanzi.example"])
    assert rule.detect(Message("看这里 https://t.cn/abc")) is not None
    assert rule.detect(Message("www.cheap-bags.top 低价")) is not None
    assert rule.detect(Message("shop.cheap.xyz")) is not None
    assert rule.detect(Message("官方商城 https://shop.wanzi.example/a?b=1")) is None
    assert rule.detect(Message("价格 3.5 元，规格 1.2ml")) is None


def test_qr_codes_in_real_images_and_not_in_others(tmp_path):
    with_qr = _poster(tmp_path / "poster.png", "https://u.wechat.com/EXAMPLE")
    without = _poster(tmp_path / "plain.png", None)
    photo = tmp_path / "photo.jpg"
    Image.effect_noise((800, 600), 60).convert("RGB").save(photo)
    not_image = tmp_path / "notes.png"
    not_image.write_bytes(b"this is not an image")
    rule = QrCodeRule()
    found = rule.detect(Message("", "image", with_qr))
    assert found is not None and found.evidence == "https://u.wechat.com/EXAMPLE"
    assert rule.detect(Message("", "image", without)) is None
    assert rule.detect(Message("", "image", photo)) is None
    assert rule.detect(Message("", "image", not_image)) is None


# --- policy through the runtime ----------------------------------------------------------------


async def test_warn_then_remove_after_three_strikes(guard_project):
    async with _harness(guard_project, newcomer_remove_after=0) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u1", "兼职刷单日结，私聊")
        first = bot.pop()
        await bot.say("g1", "u1", "加 微 信 领福利")
        second = bot.pop()
        await bot.say("g1", "u1", "看 https://t.cn/x")
        third = bot.pop()
        records = _records(bot)
    assert [m.text for m in first] == ["@Alice ⚠️ 请勿在群里发违禁词，这是第 1 次提醒。累计 3 次将被请出群。"]
    assert "第 2 次提醒。再有一次将被请出群" in second[0].text
    assert third[0].text.startswith("@Alice 🚫 多次发链接（第 3 次）")
    assert third[1].action == "remove_member" and third[1].member_id == "u1"
    assert [(r.rule, r.action, r.strike) for r in records] == [
        ("banned_word", "warn", 1), ("banned_word", "warn", 2), ("link", "remove", 3)]


async def test_qr_poster_sent_in_the_group_is_caught(guard_project):
    _poster(guard_project / "data" / "poster.png", "https://u.wechat.com/AD")
    _poster(guard_project / "data" / "product.png", None)
    async with _harness(guard_project) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u2", "", file="data/product.png")
        assert bot.pop() == []
        await bot.say("g1", "u2", "", file="data/poster.png")
        assert "二维码图片" in bot.pop_text()
        record = _records(bot)[0]
    assert record.rule == "qrcode" and "u.wechat.com" not in record.evidence_hash


async def test_file_outside_the_project_is_never_read(guard_project, tmp_path_factory):
    outside = _poster(tmp_path_factory.mktemp("elsewhere") / "poster.png", "https://u.wechat.com/AD")
    async with _harness(guard_project) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u2", "", file=str(outside))
        await bot.say("g1", "u2", "", file="../" * 10 + str(outside).lstrip("/"))
        assert bot.pop() == []


async def test_cards_are_caught_by_the_kind_the_adapter_reports(guard_project):
    async with _harness(guard_project) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u2", "限时秒杀", kind="mini_program")
        await bot.say("g1", "u3", "推荐一个人", kind="contact_card")
        texts = [m.text for m in bot.pop()]
    assert "小程序卡片" in texts[0] and "名片" in texts[1]


async def test_flood_and_repeats(guard_project):
    async with _harness(guard_project, flood_messages=5, flood_seconds=10, repeat_messages=3) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        for i in range(4):
            await bot.say("g1", "u1", f"哈哈{i}")
        assert bot.pop() == []
        await bot.say("g1", "u1", "哈哈4")
        assert "刷屏" in bot.pop_text()
        for _ in range(3):
            await bot.say("g1", "u2", "求链接")
            await bot.advance("20s")
        assert "重复刷屏" in bot.pop_text()


async def test_admins_operators_and_whitelist_are_exempt(guard_project):
    async with _harness(guard_project, whitelist=["u3"]) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", "新品 https://t.cn/new 加微信 wanzi2024")
        await bot.say("g1", "u3", "https://t.cn/partner")
        assert bot.pop() == []
        await bot.say("g1", "owner1", "白名单 @Bob", mentions=["u2"])
        assert "已把「Bob」加入本群白名单" in bot.pop_text()
        await bot.say("g1", "u2", "https://t.cn/b")
        assert bot.pop() == []
        bot.room("g2", members=MEMBERS)
        await bot.say("g2", "u2", "https://t.cn/b")   # the whitelist is per room
        assert "链接" in bot.pop_text()


async def test_members_cannot_run_admin_commands(guard_project):
    async with _harness(guard_project, newcomer_remove_after=0) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u1", "加微信 wanzi2024")
        bot.pop()
        await bot.say("g1", "u2", "白名单 @Bob", mentions=["u2"])
        await bot.say("g1", "u1", "撤销处罚 @Alice", mentions=["u1"])
        await bot.say("g1", "u1", "风控记录")
        replies = bot.pop_text()
        records = _records(bot)
    assert "白名单" not in replies.replace("白名单 @Bob", "") and "撤销" not in replies
    assert [(r.action, r.revoked) for r in records] == [("warn", False)]


async def test_revoke_takes_strikes_back_and_is_recorded(guard_project):
    async with _harness(guard_project, remove_after=2, newcomer_remove_after=0) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u1", "加微信 wanzi2024")
        await bot.say("g1", "owner1", "撤销处罚 @Alice", mentions=["u1"])
        assert "已撤销「Alice」的 1 次处罚记录" in bot.pop()[-1].text
        await bot.say("g1", "u1", "https://t.cn/x")     # counts as the first strike again, not the second
        assert "第 1 次提醒" in bot.pop_text()
        await bot.say("g1", "owner1", "风控记录")
        shown = bot.pop_text()
        records = _records(bot)
    assert "由 群主 撤销" in shown and "（已撤销）" in shown
    assert [(r.action, r.actor_id) for r in records] == [("warn", None), ("revoke", "owner1"), ("warn", None)]


async def test_newcomers_are_removed_at_the_first_strike(guard_project):
    async with _harness(guard_project) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.join("g1", {"ad1": "福利小助手"})
        await bot.advance("1h")
        bot.pop()
        await bot.say("g1", "ad1", "加微信 fuli8888 领红包")
        sent = bot.pop()
        await bot.say("g1", "u1", "加微信 wanzi2024")    # an old member only gets a warning
        warned = bot.pop_text()
    assert sent[-1].action == "remove_member" and sent[-1].member_id == "ad1"
    assert "请勿" in warned


async def test_owner_is_asked_where_the_account_cannot_remove(guard_project):
    async with _harness(guard_project, remove_after=1, newcomer_remove_after=1) as bot:
        bot.sim.adapter.capabilities = Capabilities(remove_members=False, direct_messages=False)
        bot.room("g1", "福利群", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u2", "兼职刷单 日结")
        sent = bot.pop()
        assert _records(bot)[0].action == "notify_owner"
    assert all(m.action is None for m in sent)
    assert sent[0].mentions == ("owner1",) and "请群主或管理员手动处理" in sent[0].text


async def test_redelivered_message_counts_one_strike(guard_project):
    async with _harness(guard_project, newcomer_remove_after=0) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        event = await bot.sim.adapter.say("g1", "u1", "加微信 wanzi2024")
        await bot.drain()
        await bot.sim.adapter._push(event)   # the transport delivers the same message again
        await bot.drain()
        assert len(_records(bot)) == 1


async def test_mass_join_by_one_inviter_is_flagged_once(guard_project):
    async with _harness(guard_project, mass_join_count=5, mass_join_window="10m") as bot:
        bot.room("g1", "福利群", members=MEMBERS, admins=["owner1"])
        for i in range(3):
            await bot.join("g1", {f"n{i}a": f"新人{i}a", f"n{i}b": f"新人{i}b"}, inviter="u3")
        sent = bot.pop()
    flagged = [m for m in sent if "拉了" in m.text]
    assert len(flagged) == 1 and flagged[0].to == "owner1" and "「Carol」在 10m 内拉了 6 人" in flagged[0].text


async def test_a_broken_word_list_keeps_the_last_good_one(guard_project):
    async with _harness(guard_project) as bot:
        bot.room("g1", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u1", "兼职刷单")
        assert "违禁词" in bot.pop_text()
        (guard_project / "data" / "guard.yaml").write_text("banned_words: [oops\n", encoding="utf-8")
        await bot.say("g1", "u2", "兼职刷单")
        assert "违禁词" in bot.pop_text()
