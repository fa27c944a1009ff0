"""SOP variants: which room gets which opening is a known function of (file, step, room), the same in every
process, so a dashboard comparing variants compares the same rooms after every restart and on every node."""

from __future__ import annotations

import textwrap
from pathlib import Path

from bot.testing import BotHarness

KNOWN = [1, 0, 0, 1, 2, 0, 0, 2, 2, 1, 0, 1]
"""sha256("v:noon:g<n>") mod 3 for n = 0..11, computed once by hand (see docs/sop.md, variants)."""


async def test_each_room_gets_the_variant_the_published_hash_names(tmp_path: Path):
    (tmp_path / "sop").mkdir()
    (tmp_path / "qunbot.toml").write_text('[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    (tmp_path / "sop" / "v.yaml").write_text(textwrap.dedent("""\
        targets: {topics: ["会员*"]}
        steps: [{id: noon, at: "12:30", variants: [v/a.j2, v/b.j2, v/c.j2]}]
    """), encoding="utf-8")
    for name in "abc":
        path = tmp_path / "scripts_templates" / "v" / f"{name}.j2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"开场{name.upper()}", encoding="utf-8")
    rooms = [f"g{n}" for n in range(len(KNOWN))]
    async with BotHarness(tmp_path, plugins=[], start="2026-11-23T09:00:00+08:00") as bot:
        for room in rooms:
            bot.room(room, f"会员{room}", members={"u1": "Alice"})
        await bot.advance("4h")
    got = {m.room_id: m.text for m in bot.sent}
    assert got == {room: "开场" + "ABC"[KNOWN[n]] for n, room in enumerate(rooms)}
