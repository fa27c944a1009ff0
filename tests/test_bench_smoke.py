"""The benchmarks in bench/ run at tiny sizes and count right (speed is bench/'s business, not a test's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench import bench_accounts, bench_burst, bench_dispatch, bench_signin, bench_sop, bench_wave
from bench.__main__ import QUICK, table


async def test_dispatch_qunbot_makes_exactly_the_reference_handler_calls() -> None:
    texts = bench_dispatch.messages(1_000)
    run = await bench_dispatch.run_qunbot(texts, rooms=4, members=10)
    assert run.events == 1_000
    assert run.handler_calls == bench_dispatch.reference_calls(texts) == 50  # one message in 20 hits one handler


async def test_dispatch_against_nonebot_counts_agree() -> None:
    pytest.importorskip("nonebot", reason="the NoneBot2 comparison needs the bench extra (pip install -e '.[bench]')")
    result = await bench_dispatch.run(**QUICK["dispatch"])
    figures = result.figures
    assert figures["handler_calls"] == bench_dispatch.reference_calls(bench_dispatch.messages(figures["events"]))
    assert {t.name for t in result.targets} == {"qunbot events/s (chatter, 20 handlers)",
                                                "qunbot / NoneBot2 (quiet, 20 matchers)"}
    assert figures["ratio_vs_nonebot_quiet"] == pytest.approx(
        figures["qunbot_events_per_s"] / figures["nonebot_quiet_events_per_s"], rel=0.01)


async def test_sop_scale_schedules_every_step_and_hands_every_burst_post_to_the_outbox() -> None:
    result = await bench_sop.run(**QUICK["sop"])
    figures = result.figures
    assert figures["timers_armed"] == figures["daily_steps"] == 10 * 6
    assert figures["burst_posts"] == 40
    assert 0 <= figures["lateness_p50_ms"] <= figures["lateness_p99_ms"] <= figures["lateness_max_ms"]


async def test_sop_virtual_clock_parts_count_their_posts() -> None:
    assert (await bench_sop.week(3))["week_posts"] == 3 * 3 * 7
    fan_out = await bench_sop.fan_out(4, "10m")
    assert fan_out["fanout_10m_sent"] + fan_out["fanout_10m_skipped"] == 4
    assert (await bench_sop.joins(20))["joins_members"] == 20


async def test_accounts_sync_every_membership() -> None:
    result = await bench_accounts.run(accounts=3, rooms=2, members=5)
    assert result.figures["memberships"] == 3 * 2 * (5 + 1)  # the bot is a member of each room too
    assert result.figures["mb_per_account"] == result.targets[0].value


async def test_signin_signs_every_member_in_once_and_measures_the_raw_baseline() -> None:
    result = await bench_signin.run(rooms=3, members=4)
    figures = result.figures
    assert figures["signins"] == 12
    assert figures["raw_sqlite_before_per_s"] > 0 and figures["raw_sqlite_after_per_s"] > 0
    assert figures["latency_p50_ms"] <= figures["latency_p99_ms"] <= figures["latency_max_ms"]


async def test_burst_acknowledges_every_member_and_holds_each_case_to_its_bound() -> None:
    result = await bench_burst.run(**QUICK["burst"])
    figures = result.figures
    assert figures["signin_30_acknowledged"] == 30 and figures["poll_20_acknowledged"] == 20
    assert figures["signin_30_bound_messages"] == 2  # ceil(30 / max_mentions 20)
    assert len(result.targets) == 2 * 3


async def test_wave_acknowledges_every_sign_in_of_every_account() -> None:
    result = await bench_wave.run(accounts=2, rooms=3, members=20, window=60.0)
    figures = result.figures
    assert figures["signins"] == figures["acknowledged"] == 2 * 3 * 4  # 20 % of 20 members, in 6 rooms
    assert figures["bound_messages_per_room"] == 1  # ceil(4 / max_mentions 20)
    assert 1 <= figures["messages_per_room_mean"] <= figures["messages_per_room_max"] <= 4
    assert figures["hourly_max_one_account"] * 2 >= figures["messages"]  # the busier account holds at least half
    assert figures["ack_p50_s"] <= figures["ack_p99_s"] <= figures["ack_max_s"]
    assert all(t.met for t in result.targets)


def test_busiest_hour_counts_sends_within_any_rolling_hour() -> None:
    at = datetime(2026, 11, 23, 8, tzinfo=UTC)
    sends = [at, at + timedelta(minutes=30), at + timedelta(minutes=60), at + timedelta(minutes=61)]
    assert bench_wave.busiest_hour(sends) == 3  # 08:30, 09:00, 09:01: 08:00 left the hour as 09:00 came
    assert bench_wave.busiest_hour([]) == 0


def test_table_marks_missed_targets() -> None:
    text = table({"x": {"figures": {"events": 3}, "targets": [
        {"name": "rate", "value": 1.0, "target": ">= 2", "met": False}]}, "y": {"error": "exit code 1"}})
    assert "rate" in text and "MISSED" in text and "y          FAILED: exit code 1" in text
