"""Members before broadcasts: a reply overtakes an SOP fan-out within the same per-account limits."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PACING: dict[str, float] = {}  # min_interval 2 s + jitter up to 1.5 s, room_interval 3 s
SLOT = timedelta(seconds=2.0 + 1.5)
"""One send slot of the account at the default pacing, at its longest."""


def project(tmp_path: Path) -> Path:
    (tmp_path / "sop").mkdir()
    (tmp_path / "sop" / "daily.yaml").write_text(
        'targets: {topics: ["完子会员*"]}\ngrace: 10m\n'
        'steps:\n  - {id: morning, at: "08:00", text: "早安 {{ room.topic }}"}\n',
        encoding="utf-8")
    (tmp_path / "qunbot.toml").write_text(
        f'templates_dir = "{REPO / "scripts_templates"}"\n[bot]\ntimezone = "Asia/Shanghai"\n'
        f'[plugins]\nenabled = ["points", "demo"]\ndirs = ["{REPO / "plugins"}"]\n', encoding="utf-8")
    return tmp_path


async def test_a_reply_overtakes_a_60_room_fan_out_and_the_posts_keep_their_order_and_grace(tmp_path):
    async with BotHarness(project(tmp_path), start="2026-11-23T07:59:00+08:00", pacing=DEFAULT_PACING) as bot:
        for n in range(60):
            bot.room(f"g{n:02d}", f"完子会员{n:02d}群", members={"u1": "Alice", "u2": "Bob"})
        await bot.advance_to("2026-11-23T08:00:30+08:00")
        asked = bot.now
        await bot.say("g45", "u1", "积分", drain=False)  # a member of a room the fan-out has not reached
        await bot.private("u2", "ping", drain=False)      # and a direct message
        await bot.advance_to("2026-11-23T08:10:00+08:00")
        sent = bot.sent
    posts = [m for m in sent if m.text.startswith("早安")]
    replies = [m for m in sent if not m.text.startswith("早安")]
    assert len(posts) == 60 and len(replies) == 2
    assert [m.room_id for m in posts] == [f"g{n:02d}" for n in range(60)]  # the fan-out's own order
    assert posts[-1].at <= datetime.fromisoformat("2026-11-23T08:10:00+08:00")  # within its grace
    during = [m for m in posts if m.at > asked]
    assert len(during) > 40  # the replies really came in the middle of the fan-out
    for reply in replies:
        assert reply.at - asked <= 2 * SLOT, (reply.at, asked)  # the send in flight, then theirs
        assert sum(1 for m in during if m.at < reply.at) <= 2  # at most one post of the fan-out per reply ahead
