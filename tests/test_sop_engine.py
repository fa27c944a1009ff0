"""The SOP engine on the virtual clock: exact times, sequences, join-relative steps, lateness, pacing, reload."""

from __future__ import annotations

import logging
import os
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import select

from bot.sop import SopEngine
from bot.sop._models import SopDelivery
from bot.testing import BotHarness

SH = "+08:00"


def project(tmp_path: Path, sops: dict[str, str], templates: dict[str, str] | None = None,
            toml: str = "") -> Path:
    (tmp_path / "sop").mkdir(exist_ok=True)
    (tmp_path / "qunbot.toml").write_text(toml or '[bot]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    for name, text in sops.items():
        (tmp_path / "sop" / name).write_text(textwrap.dedent(text), encoding="utf-8")
    for name, text in (templates or {}).items():
        path = tmp_path / "scripts_templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def engine_of(bot: BotHarness) -> SopEngine:
    return next(c for c in bot.sim._components if isinstance(c, SopEngine))


def sent(bot: BotHarness) -> list[tuple[str, str | None, str]]:
    """(local time HH:MM as ISO, room, text) of every message sent so far."""
    return [(m.at.isoformat(timespec="minutes"), m.room_id or f"dm:{m.to}", m.text) for m in bot.sent]


def ledger(bot: BotHarness) -> dict[str, str]:
    with bot.db() as session:
        return {row.key: row.status for row in session.exec(select(SopDelivery))}


DAILY = """\
    targets: {topics: ["完子会员*"]}
    steps:
      - {id: late_night, at: "23:59", text: "晚安 {{ now|cn_date }}"}
      - {id: after_midnight, at: "00:01", text: "凌晨 {{ now|cn_weekday }}"}
      - {id: morning, at: "08:00", template: daily/m.j2}
"""


async def test_daily_posts_at_the_exact_minute_across_midnight_whatever_the_server_zone(tmp_path):
    root = project(tmp_path, {"daily.yaml": DAILY}, {"daily/m.j2": "早安 {{ room.topic }}"})
    # The harness starts at a UTC instant (a server on UTC); the bot's zone decides the wall times.
    async with BotHarness(root, plugins=[], start="2026-11-22T15:00:00+00:00") as bot:  # 23:00 in Shanghai
        bot.room("g1", "完子会员1群", members={"u1": "Alice"})
        bot.room("other", "别的群", members={"u1": "Alice"})
        await bot.advance("3d")
    assert sent(bot) == [
        ("2026-11-22T23:59+08:00", "g1", "晚安 11月22日"),
        ("2026-11-23T00:01+08:00", "g1", "凌晨 周一"),
        ("2026-11-23T08:00+08:00", "g1", "早安 完子会员1群"),
        ("2026-11-23T23:59+08:00", "g1", "晚安 11月23日"),
        ("2026-11-24T00:01+08:00", "g1", "凌晨 周二"),
        ("2026-11-24T08:00+08:00", "g1", "早安 完子会员1群"),
        ("2026-11-24T23:59+08:00", "g1", "晚安 11月24日"),
        ("2026-11-25T00:01+08:00", "g1", "凌晨 周三"),
        ("2026-11-25T08:00+08:00", "g1", "早安 完子会员1群"),
    ]
    assert all(m.at.second == 0 for m in bot.sent)


async def test_the_configured_zone_decides_wall_times(tmp_path):
    """Asia/Kolkata (+05:30, no DST): 08:00 there is 02:30 UTC, not 08:00 of Shanghai or of the server."""
    root = project(tmp_path, {"daily.yaml": DAILY}, {"daily/m.j2": "早安"}, toml='[bot]\ntimezone = "Asia/Kolkata"\n')
    async with BotHarness(root, plugins=[], start="2026-11-23T00:00:00+00:00") as bot:
        bot.room("g1", "完子会员1群", members={"u1": "Alice"})
        await bot.advance("1d")
    mornings = [m.at for m in bot.sent if m.text == "早安"]
    assert [t.isoformat() for t in mornings] == ["2026-11-23T08:00:00+05:30"]
    assert mornings[0].astimezone(datetime.fromisoformat("2026-01-01T00:00+00:00").tzinfo).hour == 2


async def test_a_change_of_the_configured_zone_moves_daily_posts_without_posting_a_day_twice(tmp_path):
    """Tokyo (+09:00) to Shanghai (+08:00), both DST-free, at a restart: 08:00 follows the new zone's wall
    clock, and the day of the change (08:00 Tokyo is 07:00 Shanghai) does not get a second 早安 at 08:00."""
    root = project(tmp_path, {"d.yaml": 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "08:00", text: 早安}]\n'})
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    times = []
    for zone, start, run in (("Asia/Tokyo", "2026-11-23T07:00:00+09:00", "2d1h5m"),      # to 11-25 08:05 (+09)
                             ("Asia/Shanghai", "2026-11-25T07:05:00+08:00", "2d1h")):     # the same instant
        async with BotHarness(root, plugins=[], start=start, db_url=db, settings={"bot": {"timezone": zone}}) as bot:
            bot.room("g1", "g", members={"u1": "Alice"})
            await bot.advance(run)
        times += [m.at.isoformat(timespec="minutes") for m in bot.sent]
    assert times == ["2026-11-23T08:00+09:00", "2026-11-24T08:00+09:00", "2026-11-25T08:00+09:00",
                     "2026-11-26T08:00+08:00", "2026-11-27T08:00+08:00"]


SALE = """\
    group: flash
    targets: {{rooms: [f1]}}
    start: "{start}"
    grace: 5m
    steps:
      - {{id: warmup, offset: -1d, text: 明晚开抢}}
      - {{id: open, offset: 0, text: 开场, file: "https://cdn.example.com/poster.jpg"}}
      - {{id: push, offset: +10m, text: "推品 {{{{ start|hm }}}}"}}
      - {{id: close, offset: +30m, text: 收尾}}
"""


async def test_a_sequence_anchored_in_the_future_runs_at_its_offsets(tmp_path):
    root = project(tmp_path, {"sale.yaml": SALE.format(start="2026-11-24T20:00:00+08:00")})
    async with BotHarness(root, plugins=[], start="2026-11-23T09:00:00+08:00") as bot:
        bot.room("f1", "快闪1群", members={"u1": "Alice"})
        await bot.advance("3d")
    assert [(t, text) for t, _, text in sent(bot)] == [
        ("2026-11-23T20:00+08:00", "明晚开抢"), ("2026-11-24T20:00+08:00", "开场"),
        ("2026-11-24T20:10+08:00", "推品 20:00"), ("2026-11-24T20:30+08:00", "收尾")]
    assert bot.sent[1].file == "https://cdn.example.com/poster.jpg"


async def test_a_sequence_whose_start_has_partly_passed_skips_the_late_steps_and_sends_the_rest(tmp_path, caplog):
    root = project(tmp_path, {"sale.yaml": SALE.format(start="2026-11-23T20:00:00+08:00")})
    caplog.set_level(logging.WARNING, "qunbot.sop")
    bot = BotHarness(root, plugins=[], start="2026-11-23T20:12:00+08:00")
    bot.room("f1", "快闪1群", members={"u1": "Alice"})                # the bot is in the room when it starts
    async with bot:
        await bot.advance("1d")
        status = ledger(bot)
    # warm-up (a day late) and open (12 min late) are beyond the 5 min grace; the push is 2 min late: sent.
    assert [(t, text) for t, _, text in sent(bot)] == [("2026-11-23T20:12+08:00", "推品 20:00"),
                                                       ("2026-11-23T20:30+08:00", "收尾")]
    assert status["sop:sale:warmup:f1:2026-11-22T20:00"] == "skipped"
    assert status["sop:sale:open:f1:2026-11-23T20:00"] == "skipped"
    assert "sale.open for room f1" in caplog.text and "beyond its grace of 5m" in caplog.text


ONBOARDING = """\
    targets: {topics: ["完子会员*"]}
    grace: 1h
    steps:
      - {id: day1, after_join: 1d, template: on/day1.j2}
      - {id: day3, after_join: 3d, to: dm, text: "{{ member.display }}，入群三天啦"}
"""


async def test_join_relative_steps_for_two_members_who_joined_on_different_days(tmp_path):
    root = project(tmp_path, {"on.yaml": ONBOARDING}, {"on/day1.j2": "欢迎入群一天，记得签到"})
    async with BotHarness(root, plugins=[], start="2026-11-23T09:00:00+08:00") as bot:
        bot.room("g1", "完子会员1群", members={"owner": "群主"})
        await bot.join("g1", {"u1": "Alice"})                  # Monday 09:00
        await bot.advance("1d5h30m")
        await bot.join("g1", {"u2": "Bob"})                    # Tuesday 14:30
        await bot.advance("5d")
        rows = ledger(bot)
        with bot.db() as session:
            assert all(r.sent_at is not None for r in session.exec(select(SopDelivery)))
    assert sent(bot) == [
        ("2026-11-24T09:00+08:00", "g1", "@Alice 欢迎入群一天，记得签到"),
        ("2026-11-25T14:30+08:00", "g1", "@Bob 欢迎入群一天，记得签到"),
        ("2026-11-26T09:00+08:00", "dm:u1", "Alice，入群三天啦"),
        ("2026-11-27T14:30+08:00", "dm:u2", "Bob，入群三天啦"),
    ]
    assert bot.sent[0].mentions == ("u1",) and bot.sent[2].mentions == ()
    assert sorted(rows.values()) == ["queued"] * 4


async def test_a_member_who_left_gets_no_onboarding(tmp_path):
    root = project(tmp_path, {"on.yaml": ONBOARDING}, {"on/day1.j2": "欢迎"})
    async with BotHarness(root, plugins=[], start="2026-11-23T09:00:00+08:00") as bot:
        bot.room("g1", "完子会员1群", members={"owner": "群主"})
        await bot.join("g1", {"u1": "Alice"})
        await bot.leave("g1", "u1")
        await bot.advance("4d")
        assert bot.sent == [] and set(ledger(bot).values()) == {"cancelled"}


OUTAGE = """\
    targets: {rooms: [g1]}
    steps:
      - {id: morning, at: "08:00", text: 早安}
      - {id: noon, at: "12:00", text: 午安}
"""


async def test_after_an_outage_posts_late_beyond_grace_are_skipped_and_logged_not_sent_hours_late(tmp_path, caplog):
    root = project(tmp_path, {"d.yaml": OUTAGE})
    caplog.set_level(logging.WARNING, "qunbot.sop")
    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        await bot.advance("1h30m")                            # 08:00 sent; now 08:30
        await bot.sim.stop(cleanup=False)                     # the bot is down over the next morning...
        await bot.sim.clock.advance_to(datetime.fromisoformat("2026-11-24T09:00:00+08:00"))
        await bot.sim.start()                                 # ...and back at 09:00
        await bot.advance("4h")
        status = ledger(bot)
    texts = [(t, text) for t, _, text in sent(bot)]
    assert texts == [("2026-11-23T08:00+08:00", "早安"), ("2026-11-24T12:00+08:00", "午安")]
    assert status["sop:d:noon:g1:2026-11-23"] == "skipped"
    assert status["sop:d:morning:g1:2026-11-24"] == "skipped"
    assert "d.morning for room g1" in caplog.text and "late by 1h00m" in caplog.text


async def test_after_an_outage_a_step_due_several_times_within_grace_posts_once_the_latest(tmp_path, caplog):
    """APScheduler's coalesce, chosen on purpose: no burst of catch-up posts of one step."""
    root = project(tmp_path, {"c.yaml": """\
        targets: {rooms: [g1]}
        grace: 12m
        steps: [{id: tick, cron: "*/5 * * * *", text: "整点播报 {{ now|hm }}"}]
    """})
    caplog.set_level(logging.WARNING, "qunbot.sop")
    async with BotHarness(root, plugins=[], start="2026-11-23T07:40:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        await bot.advance("1m")                                   # 07:40 sent; now 07:41
        await bot.sim.stop(cleanup=False)
        await bot.sim.clock.advance_to(datetime.fromisoformat("2026-11-23T07:58:00+08:00"))
        await bot.sim.start()                                     # 07:45 is 13 min late, 07:50 and 07:55 are not
        await bot.advance("3m")
        status = ledger(bot)
    assert [(t, text) for t, _, text in sent(bot)] == [
        ("2026-11-23T07:40+08:00", "整点播报 07:40"), ("2026-11-23T07:58+08:00", "整点播报 07:55"),
        ("2026-11-23T08:00+08:00", "整点播报 08:00")]
    assert status["sop:c:tick:g1:2026-11-23T07:45"] == "skipped"
    assert status["sop:c:tick:g1:2026-11-23T07:50"] == "skipped"
    assert status["sop:c:tick:g1:2026-11-23T07:55"] == "queued"
    assert "coalesced: the post due at 07:55 is sent instead" in caplog.text


async def test_a_restart_within_grace_sends_the_post_once(tmp_path):
    root = project(tmp_path, {"d.yaml": OUTAGE})
    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        await bot.sim.stop(cleanup=False)
        await bot.sim.clock.advance_to(datetime.fromisoformat("2026-11-23T08:04:00+08:00"))
        await bot.sim.start()                                 # 4 minutes late: within the 10 m grace
        await bot.drain()
        await bot.restart(crash=True)                         # a crash right after: nothing twice
        await bot.advance("2m")
        await bot.restart(crash=False)
        await bot.advance("1h")
    assert [(t, text) for t, _, text in sent(bot)] == [("2026-11-23T08:04+08:00", "早安")]


async def test_sequence_order_holds_in_every_room_under_pacing(tmp_path):
    sops = {"s.yaml": """\
        group: flash
        targets: {topics: ["快闪*"]}
        start: "2026-11-23T20:00:00+08:00"
        grace: 1h
        steps:
          - {id: a, offset: 0, text: 第一条}
          - {id: b, offset: +20s, text: 第二条}
          - {id: c, offset: +40s, text: 第三条}
    """}
    pacing = {"min_interval": 10, "jitter": 2, "room_interval": 3}
    async with BotHarness(project(tmp_path, sops), plugins=[], start="2026-11-23T19:00:00+08:00",
                          pacing=pacing) as bot:
        for n in range(6):
            bot.room(f"f{n}", f"快闪{n}群", members={"u1": "Alice"})
        await bot.advance("2h")
    assert len(bot.sent) == 18
    by_room: dict[str | None, list[str]] = {}
    for message in bot.sent:
        by_room.setdefault(message.room_id, []).append(message.text)
    assert all(texts == ["第一条", "第二条", "第三条"] for texts in by_room.values()), by_room
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(bot.sent, bot.sent[1:], strict=False)]
    assert min(gaps) >= 10                                    # the account's pacing held
    assert bot.sent[-1].at - bot.sent[0].at > timedelta(seconds=170)


async def test_fan_out_respects_the_grace_through_the_outbox_expiry(tmp_path):
    sops = {"d.yaml": """\
        targets: {topics: ["完子会员*"]}
        grace: 1m
        steps: [{id: m, at: "08:00", text: 早安}]
    """}
    async with BotHarness(project(tmp_path, sops), plugins=[], start="2026-11-23T07:00:00+08:00",
                          pacing={"min_interval": 25, "jitter": 0, "room_interval": 0}) as bot:
        for n in range(5):
            bot.room(f"g{n}", f"完子会员{n}群", members={"u1": "Alice"})
        await bot.advance("2h")
    assert [m.at.isoformat(timespec="seconds") for m in bot.sent] == [
        "2026-11-23T08:00:00+08:00", "2026-11-23T08:00:25+08:00", "2026-11-23T08:00:50+08:00"]


async def test_the_log_says_when_the_last_room_of_a_fan_out_got_it(tmp_path, caplog):
    sops = {"d.yaml": """\
        targets: {topics: ["完子会员*"]}
        grace: 2m
        steps: [{id: m, at: "08:00", text: 早安}]
    """}
    caplog.set_level(logging.INFO, "qunbot.sop")
    async with BotHarness(project(tmp_path, sops), plugins=[], start="2026-11-23T07:00:00+08:00",
                          pacing={"min_interval": 50, "jitter": 0, "room_interval": 0}) as bot:
        for n in range(4):
            bot.room(f"g{n}", f"完子会员{n}群", members={"u1": "Alice"})
        await bot.advance("2h")
    last = bot.sent[-1].at.astimezone(bot.sent[0].at.tzinfo)
    assert len(bot.sent) == 3 and last.strftime("%H:%M:%S") == "08:01:40"     # the 4th room would be 08:02:30
    assert "SOP d.m (11-23 08:00): 3 of 4 room(s) got it, the last at 08:01:40; 1 skipped as late\n" in caplog.text


async def test_targets_by_tag_from_config_and_by_room_id(tmp_path):
    toml = '[bot]\ntimezone = "Asia/Shanghai"\n[rooms.g1]\ntags = ["vip"]\n[rooms.g3]\ntags = ["vip", "old"]\n'
    root = project(tmp_path, {"t.yaml": """\
        targets: {tags: [vip], rooms: [g4]}
        steps: [{id: m, at: "08:00", text: "早安 {{ room.id }}"}]
    """}, toml=toml)
    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00") as bot:
        for n in range(1, 6):
            bot.room(f"g{n}", f"群{n}", members={"u1": "Alice"})
        await bot.advance("2h")
    assert sorted(m.text for m in bot.sent) == ["早安 g1", "早安 g3", "早安 g4"]


async def test_weekday_and_cron_steps_fire_on_the_right_days(tmp_path):
    root = project(tmp_path, {"w.yaml": """\
        targets: {rooms: [g1]}
        steps:
          - {id: workday, at: "12:30", days: 工作日, text: 午间话题}
          - {id: mon_wed, at: "09:00", days: [周一, 周三], text: 一三}
          - {id: sunday, cron: "15 20 * * 0", text: 周日晚}
          - {id: fridays, cron: "0 18 * * fri", text: 周五}
    """})
    async with BotHarness(root, plugins=[], start="2026-11-23T00:00:00+08:00") as bot:   # a Monday
        bot.room("g1", "g", members={"u1": "Alice"})
        await bot.advance("7d")
    days: dict[str, list[str]] = {}
    for message in bot.sent:
        days.setdefault(message.text, []).append(message.at.strftime("%a %H:%M"))
    assert days == {
        "午间话题": ["Mon 12:30", "Tue 12:30", "Wed 12:30", "Thu 12:30", "Fri 12:30"],
        "一三": ["Mon 09:00", "Wed 09:00"],
        "周日晚": ["Sun 20:15"],          # crontab counts Sunday as 0 (APScheduler's own from_crontab would not)
        "周五": ["Fri 18:00"],
    }


async def test_hot_reload_applies_a_good_edit_and_keeps_the_old_version_on_a_broken_one(tmp_path, caplog):
    root = project(tmp_path, {"d.yaml": """\
        targets: {rooms: [g1]}
        steps: [{id: m, at: "08:00", template: t/m.j2}]
    """}, {"t/m.j2": "早安 v1"})
    path, template = root / "sop" / "d.yaml", root / "scripts_templates" / "t" / "m.j2"

    def edit(file: Path, text: str) -> None:
        stat = file.stat()
        file.write_text(text, encoding="utf-8")
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        engine = engine_of(bot)
        await bot.advance("2h")                                   # day 1: v1 at 08:00
        edit(path, 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "09:30", template: t/m.j2}]\n')
        edit(template, "早安 v2")
        assert engine.check_files() is True and engine.problems == {}
        assert engine.check_files() is False                      # nothing changed since
        await bot.advance_to("2026-11-24T09:00:00+08:00")         # 09:30 on day 1: already posted today
        assert len(bot.sent) == 1
        await bot.advance("1h")                                   # day 2: the edit, at 09:30
        caplog.set_level(logging.ERROR, "qunbot.sop")
        edit(path, 'targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: "25:00", template: t/m.j2}\n')
        edit(template, "早安 {{ oops")
        assert engine.check_files() is True
        await bot.advance_to("2026-11-25T10:00:00+08:00")         # day 3: the last good version still runs
    assert [(t, text) for t, _, text in sent(bot)] == [
        ("2026-11-23T08:00+08:00", "早安 v1"), ("2026-11-24T09:30+08:00", "早安 v2"),
        ("2026-11-25T09:30+08:00", "早安 v2")]
    assert "sop/d.yaml:3: steps.m.at" in engine.problems["d"]
    assert "sop/d.yaml:3" in caplog.text and "previous version keeps running" in caplog.text


async def test_variants_are_assigned_per_room_stably_and_logged(tmp_path, caplog):
    root = project(tmp_path, {"v.yaml": """\
        targets: {topics: ["完子会员*"]}
        steps: [{id: noon, at: "12:30", variants: [v/a.j2, v/b.j2]}]
    """}, {"v/a.j2": "开场A", "v/b.j2": "开场B"})
    caplog.set_level(logging.INFO, "qunbot.sop")
    rooms = [f"g{n}" for n in range(8)]
    async with BotHarness(root, plugins=[], start="2026-11-23T09:00:00+08:00") as bot:
        for room in rooms:
            bot.room(room, f"完子会员{room}", members={"u1": "Alice"})
        await bot.advance("1d")
        await bot.restart(crash=True)
        await bot.advance("1d")
    days: dict[str, list[str]] = {}
    for message in bot.sent:
        days.setdefault(message.room_id or "", []).append(message.text)
    assert sorted(days) == rooms
    assert all(len(texts) == 2 and texts[0] == texts[1] for texts in days.values())   # stable across a restart
    assert {texts[0] for texts in days.values()} == {"开场A", "开场B"}                  # both variants in use
    assert "room g0 gets variant" in caplog.text


async def test_join_steps_overdue_after_an_outage_are_skipped_and_the_rest_still_sent(tmp_path):
    root = project(tmp_path, {"on.yaml": ONBOARDING}, {"on/day1.j2": "欢迎"})
    async with BotHarness(root, plugins=[], start="2026-11-23T09:00:00+08:00") as bot:
        bot.room("g1", "完子会员1群", members={"owner": "群主"})
        await bot.join("g1", {"u1": "Alice"})
        await bot.sim.stop(cleanup=False)                                 # down over day 1, 09:00 ...
        await bot.sim.clock.advance_to(datetime.fromisoformat("2026-11-24T12:00:00+08:00"))
        await bot.sim.start()                                             # ... back 3 h later (grace 1 h)
        await bot.advance("3d")
        rows = ledger(bot)
    assert sent(bot) == [("2026-11-26T09:00+08:00", "dm:u1", "Alice，入群三天啦")]
    assert rows["sop:on:day1:g1:u1:2026-11-23"] == "skipped"


def test_the_flash_sample_runs_in_simulate_with_its_lottery_action():
    import json

    from click.testing import CliRunner

    from bot.cli import main

    repo = Path(__file__).resolve().parent.parent
    result = CliRunner().invoke(main, ["--project", str(repo), "simulate", str(repo / "examples/sop_flash.yaml")])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    flash = [line["at"][11:16] for line in lines if line.get("room") == "flash1" and line["at"] < "2026-12-12T23"]
    # warm-up, countdown, open, 2 products, heads-up, the lottery plugin's draw opening (the action), its 2
    # entries and the result, last call, close: each step at its offset, in order.
    assert flash == ["20:00", "18:00", "20:00", "20:10", "20:30", "20:55", "21:00", "21:01", "21:01", "21:10",
                     "21:50", "22:00"]
    opened = next(line for line in lines if line.get("room") == "flash1" and line["at"].startswith("2026-12-12T20:00"))
    assert opened["file"] == "assets/flash/poster.png"
    welcome = [line for line in lines if line.get("room") == "club1" and "入群一天" in line["text"]]
    assert len(welcome) == 1 and welcome[0]["at"].startswith("2026-12-12T21:00") and welcome[0]["mentions"] == ["u9"]


async def test_a_render_failure_in_one_room_spares_the_other_rooms_and_the_next_days(tmp_path, caplog):
    toml = '[bot]\ntimezone = "Asia/Shanghai"\n[rooms.g1]\ntags = ["vip"]\n'
    root = project(tmp_path, {"d.yaml": """\
        targets: {topics: ["完子会员*"]}
        steps: [{id: m, at: "08:00", text: "早安 {{ room.tags[0] }}"}]
    """}, toml=toml)
    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00") as bot:
        bot.room("g1", "完子会员1群", members={"u1": "Alice"})
        bot.room("g2", "完子会员2群", members={"u1": "Alice"})     # no tags: the template cannot render here
        await bot.advance("2d")
        rows = ledger(bot)
    assert sent(bot) == [("2026-11-23T08:00+08:00", "g1", "早安 vip"), ("2026-11-24T08:00+08:00", "g1", "早安 vip")]
    assert rows["sop:d:m:g2:2026-11-23"] == "failed" and "SOP d.m for room g2 failed" in caplog.text


async def test_the_bot_joining_a_room_gets_no_onboarding(tmp_path):
    root = project(tmp_path, {"on.yaml": ONBOARDING}, {"on/day1.j2": "欢迎"})
    async with BotHarness(root, plugins=[], start="2026-11-23T09:00:00+08:00") as bot:
        bot.room("g1", "完子会员1群", members={"owner": "群主"})
        await bot.join("g1", {"bot": "小完子", "u1": "Alice"})
        await bot.advance("4d")
        rows = ledger(bot)
    assert {key.split(":")[4] for key in rows} == {"u1"}


def _edit(file: Path, data: str | bytes) -> None:
    """Write and move the modification time on, as a later save in an editor would."""
    before = file.stat().st_mtime_ns if file.exists() else 0
    file.write_bytes(data if isinstance(data, bytes) else data.encode())
    os.utime(file, ns=(before, before + 1_000_000_000))


async def test_broken_files_at_start_are_reported_and_the_good_ones_run(tmp_path, caplog):
    root = project(tmp_path, {
        "good.yaml": 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "08:00", text: 早安}]\n',
        "tabs.yaml": 'targets: {rooms: [g1]}\nsteps:\n\t- {id: m, at: "08:00", text: x}\n',
        "binary.yaml": "",
        "badtpl.yaml": 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "09:00", template: t/bad.j2}]\n',
    })
    (root / "sop" / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81")
    (root / "scripts_templates" / "t").mkdir(parents=True)
    (root / "scripts_templates" / "t" / "bad.j2").write_bytes("早安 {{ now|cn_date }".encode("gbk"))
    caplog.set_level(logging.ERROR, "qunbot.sop")
    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        problems = dict(engine_of(bot).problems)
        await bot.advance("3h")
    assert [m.text for m in bot.sent] == ["早安"]
    assert problems["tabs"].startswith("sop/tabs.yaml:3:") and "Tab 缩进" in problems["tabs"]
    assert problems["binary"].startswith("sop/binary.yaml:1: 文件不是 UTF-8 编码")
    assert problems["badtpl"].startswith("sop/badtpl.yaml:2: steps.m: scripts_templates/t/bad.j2:1: 文件不是 UTF-8")
    assert "SOP file not loaded: sop/badtpl.yaml:2" in caplog.text


async def test_a_broken_template_edit_keeps_the_last_good_text_until_it_is_fixed(tmp_path, caplog):
    root = project(tmp_path, {"d.yaml": 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "08:00", template: t/m.j2}]\n'},
                   {"t/m.j2": "早安 v1"})
    template = root / "scripts_templates" / "t" / "m.j2"
    caplog.set_level(logging.ERROR, "qunbot.sop")
    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00") as bot:
        bot.room("g1", "g", members={"u1": "Alice"})
        engine = engine_of(bot)
        _edit(template, "早安 {% if %}")                                  # a syntax error
        assert engine.check_files() is True
        assert engine.problems["d"] == ("sop/d.yaml:2: steps.m: scripts_templates/t/m.j2:1: %} 前面缺少内容"
                                        "（比如 {% if %} 后面要写条件）")
        await bot.advance("1d")
        _edit(template, "早安 {{ memebr }}".encode())                     # a misspelt variable
        assert engine.check_files() is True and "memebr" in engine.problems["d"]
        _edit(template, "早安 v2".encode("utf-16"))                       # saved in the wrong encoding
        assert engine.check_files() is True and "UTF-8" in engine.problems["d"]
        await bot.advance("1d")
        _edit(template, "早安 v3")
        assert engine.check_files() is True and engine.problems == {}
        await bot.advance("1d")
    assert [m.text for m in bot.sent] == ["早安 v1", "早安 v1", "早安 v3"]
    assert caplog.text.count("the previous version keeps running") == 3


async def test_the_file_watcher_reloads_by_itself_and_survives_a_failing_reload(tmp_path, monkeypatch):
    import asyncio

    from bot.sop import _engine

    monkeypatch.setattr(_engine, "RELOAD_POLL", 0)
    root = project(tmp_path, {"d.yaml": 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "08:00", text: v1}]\n'})
    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00") as bot:
        engine = engine_of(bot)
        calls = 0
        real_reload = engine.reload

        def flaky_reload() -> dict[str, str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError("disk went away")
            return real_reload()

        monkeypatch.setattr(engine, "reload", flaky_reload)
        _edit(root / "sop" / "d.yaml", 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "08:00", text: v2}]\n')
        for _ in range(200):                       # let the watcher task run; it polls without waiting
            await asyncio.sleep(0)
            if calls >= 1:
                break
        _edit(root / "sop" / "d.yaml", 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "08:00", text: v3}]\n')
        for _ in range(200):
            await asyncio.sleep(0)
            if calls >= 2:
                break
        assert calls == 2 and engine._watch is not None and not engine._watch.done()
        bot.room("g1", "g", members={"u1": "Alice"})
        await bot.advance("2h")
    assert [m.text for m in bot.sent] == ["v3"]


async def test_on_postgresql_the_ledger_and_the_join_sweeper_send_once(tmp_path, postgres_url):
    """The PostgreSQL paths: INSERT … ON CONFLICT for the ledger, SELECT … FOR UPDATE SKIP LOCKED in the sweep."""
    root = project(tmp_path, {"on.yaml": ONBOARDING, "d.yaml": OUTAGE}, {"on/day1.j2": "欢迎"})
    async with BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00", db_url=postgres_url) as bot:
        bot.room("g1", "完子会员1群", members={"owner": "群主"})
        await bot.join("g1", {"u1": "Alice"})
        await bot.advance("1d2h")
        await bot.restart(crash=True)
        await bot.advance("3d")
        rows = ledger(bot)
    assert [(t, room, text) for t, room, text in sent(bot) if text not in ("早安", "午安")] == [
        ("2026-11-24T07:00+08:00", "g1", "@Alice 欢迎"), ("2026-11-26T07:00+08:00", "dm:u1", "Alice，入群三天啦")]
    assert sum(text == "早安" for _, _, text in sent(bot)) == 5
    assert rows["sop:on:day1:g1:u1:2026-11-23"] == "queued"


async def test_on_postgresql_rows_another_sweeper_holds_are_skipped_then_sent_once(tmp_path, postgres_url):
    import psycopg

    root = project(tmp_path, {"on.yaml": ONBOARDING}, {"on/day1.j2": "欢迎"})
    async with BotHarness(root, plugins=[], start="2026-11-23T09:00:00+08:00", db_url=postgres_url) as bot:
        bot.room("g1", "完子会员1群", members={"owner": "群主"})
        await bot.join("g1", {"u1": "Alice", "u2": "Bob"})
        await bot.advance("23h59m")
        with psycopg.connect(postgres_url) as other:              # another process is sweeping u1's row
            other.execute("SELECT id FROM sop_delivery WHERE member_id = 'u1' AND step = 'day1' FOR UPDATE")
            await bot.advance("2m")                               # due at 09:00: u2 goes, u1 is locked
            assert [m.text for m in bot.sent] == ["@Bob 欢迎"]
        await bot.advance("30s")                                  # released: the sweeper comes back for it
    assert [(m.at.strftime("%H:%M:%S"), m.text) for m in bot.sent] == [("09:00:00", "@Bob 欢迎"),
                                                                        ("09:01:05", "@Alice 欢迎")]


def test_simulate_stops_with_file_and_line_on_an_invalid_sop_file(tmp_path):
    """docs/simulate.md: non-zero exit and a one-line `file:line` error (a running bot goes on)."""
    from click.testing import CliRunner

    from bot.cli import main

    root = project(tmp_path, {"good.yaml": 'targets: {rooms: [g1]}\nsteps: [{id: m, at: "08:00", text: 早安}]\n',
                              "x.yaml": 'targets: {rooms: [g1]}\nsteps:\n  - {id: m, at: "25:00", text: x}\n'})
    (root / "s.yaml").write_text(textwrap.dedent("""\
        start: 2026-11-23T07:55:00+08:00
        until: 2026-11-23T09:00:00+08:00
        bot: {id: bot, name: 小完子}
        rooms: [{id: g1, topic: 群, members: [{id: u1, name: Alice}]}]
        events: []
    """), encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(root), "simulate", str(root / "s.yaml")])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == ("error: sop/x.yaml:3: steps.m.at: 时间 '25:00' 要写成 时:分，"
                                              "如 \"08:00\"")
    (root / "sop" / "x.yaml").unlink()
    result = CliRunner().invoke(main, ["--project", str(root), "simulate", str(root / "s.yaml")])
    assert result.exit_code == 0 and '"text": "早安"' in result.stdout


async def test_target_rooms_by_id_and_topic_beyond_one_query_chunk(tmp_path):
    """Listed rooms and topic globs together, more rooms than one IN query holds, sorted and each once."""
    from bot.sop._schema import Targets

    root = project(tmp_path, {"t.yaml": """\
        targets: {rooms: [r0000]}
        steps: [{id: m, at: "08:00", text: 早安}]
    """})
    bot = BotHarness(root, plugins=[], start="2026-11-23T07:00:00+08:00")
    for n in range(1200):
        bot.room(f"r{n:04d}", f"{'完子会员' if n % 3 == 0 else '其他'}{n}群", members={"u1": "Alice"})
    async with bot:
        targets = Targets(rooms=(*(f"r{n:04d}" for n in range(0, 1200, 2)), "r9999"), topics=("完子会员*",))
        found = engine_of(bot).target_rooms(targets)
    expected = [f"r{n:04d}" for n in range(1200) if n % 2 == 0 or n % 3 == 0]
    assert [room.id for _, room in found] == expected
    assert {account for account, _ in found} == {bot.sim.account}
