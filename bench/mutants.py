"""`python -m bench.mutants`: a mutation probe of the core invariants (issue 13, item 12).

Each mutant is one realistic single-point bug (a flipped comparison, a dropped WHERE clause, an
off-by-one, a skipped check). It is applied in place, only its listed tests run, and the file is
restored in a `finally`; at the end `git diff --quiet` must hold for every file touched. A mutant is
killed if its tests fail, survived if they all pass; a run cut off by the timeout is `timeout` (the tests
did not detect a hang) and counts as not killed; `error` (the tests could not run) is left out of the rate.

    python -m bench.mutants                     # all mutants, sequentially
    python -m bench.mutants --only outbox-fence lottery-order
    python -m bench.mutants --first 10          # a timing run
    python -m bench.mutants --baseline --json bench/mutants-results.json   # the recorded run
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import machine

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300.0
MEMORY_CAP = 4 << 30
"""Address-space limit of each test run: a mutant that lets an alias bomb through would otherwise take the
shared machine's memory; under the cap the test fails with MemoryError (reported as `killed (memory cap)`)."""
"""Seconds per mutant's test run. A hang the tests detect themselves (their own timeouts) fails them: killed."""

OUTBOX = ("tests/test_outbox.py", "tests/test_outbox_guards.py")
LEASE = ("tests/scale/test_lease.py", "tests/test_outbox_guards.py")
POINTS = ("tests/plugins/test_points.py", "tests/plugins/test_points_levels.py", "tests/plugins/test_points_bounds.py")
LOTTERY = ("tests/plugins/test_lottery.py", "tests/plugins/test_lottery_fairness.py")
TEMPLATES = ("tests/test_render_budget.py", "tests/test_template_data.py", "tests/test_templates.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    breaks: str
    """The invariant the bug breaks, in one line."""


MUTANTS: tuple[Mutant, ...] = (
    # --- outbox -----------------------------------------------------------------------------------------
    Mutant("outbox-same-key", "bot/_outbox.py",
           'insert(OutboxMessage.__table__).on_conflict_do_nothing(index_elements=["account", "key"])',
           "insert(OutboxMessage.__table__)", OUTBOX,
           "a second enqueue with the same key is ignored (not an error, not a second row)"),
    Mutant("outbox-fence", "bot/_outbox.py",
           "fence = (self.lease.fence(),) if self.lease is not None else ()", "fence = ()", OUTBOX,
           "the send claim is fenced by the lease row (owner, epoch, expiry) in the database"),
    Mutant("outbox-holder-check", "bot/_outbox.py",
           "if self._offline or (self.lease is not None and not self.lease.held()):", "if self._offline:", OUTBOX,
           "the outbox sends nothing while this process's lease has lapsed by its own clock"),
    Mutant("outbox-pacing-restore", "bot/_outbox.py",
           "col(OutboxMessage.sent_at) >= now - _HOUR)", "col(OutboxMessage.sent_at) <= now - _HOUR)", OUTBOX,
           "after a restart, the last hour's sends count against pacing and the hourly cap"),
    Mutant("outbox-hourly-cap", "bot/_outbox.py",
           "if len(self._hour) >= self._pacing.hourly_cap:", "if len(self._hour) > self._pacing.hourly_cap:",
           OUTBOX, "at most hourly_cap sends in any rolling hour (off by one)"),
    Mutant("outbox-in-flight", "bot/_outbox.py",
           "await asyncio.wait_for(self._idle.wait(), timeout)", "await asyncio.sleep(0)",
           ("tests/test_stop_in_flight.py",),
           "stop waits for a send already in flight and records it"),
    Mutant("outbox-stuck-sending", "bot/_outbox.py",
           'row.status = "uncertain"', 'row.status = "pending"', (*OUTBOX, "tests/test_outbox_confirmation.py"),
           "a row a crash left mid-send is never re-sent blindly (uncertain, not pending)"),
    Mutant("outbox-expiry", "bot/_outbox.py",
           "if row.expires_at is not None and max(now, allowed) > row.expires_at:",
           "if row.expires_at is not None and now > row.expires_at:", OUTBOX,
           "a message that cannot go out (pacing) before its deadline is skipped, not sent late"),
    # --- leases and balancing ----------------------------------------------------------------------------
    Mutant("lease-held-deadline", "bot/_lease.py",
           "return self.epoch is not None and time.monotonic() < self._deadline", "return self.epoch is not None",
           LEASE, "the holder trusts its lease only until ttl after it asked for the last renewal"),
    Mutant("lease-fence-expiry", "bot/_lease.py",
           "return exists(select(1).where(*self._mine(), _TABLE.c.expires_at > now))",
           "return exists(select(1).where(*self._mine()))", LEASE,
           "the database fence is false once the lease has expired by the database's clock"),
    Mutant("lease-epoch-bump", "bot/_lease.py",
           "epoch=_TABLE.c.epoch + 1,", "epoch=_TABLE.c.epoch,", LEASE,
           "a take-over bumps the epoch, so an old holder's fence no longer matches"),
    Mutant("lease-renew-lost", "bot/_lease.py",
           "if result.rowcount != 1:", "if result.rowcount > 1:", LEASE,
           "a renewal that finds the lease taken over makes the process stop the account"),
    Mutant("balance-extra", "bot/_balance.py",
           "base + (1 if rank < extra else 0)", "base + (1 if rank <= extra else 0)",
           ("tests/scale/test_balance.py",), "fair shares sum to the number of accounts (off by one)"),
    Mutant("balance-ties", "bot/_balance.py",
           "key=lambda node: (-held[node], node)", "key=lambda node: (held[node], node)",
           ("tests/scale/test_balance.py",), "the extra accounts go to those holding most: no move when balanced"),
    # --- timers and redelivery ---------------------------------------------------------------------------
    Mutant("timer-claim-once", "bot/_runtime.py",
           "update(ScheduledTask).where(col(ScheduledTask.id) == task.id,\n"
           "                                                                ScheduledTask.status == \"pending\")",
           "update(ScheduledTask).where(col(ScheduledTask.id) == task.id)",
           ("tests/test_timer_race.py", "tests/test_timers.py"), "a pending timer is claimed and run once"),
    Mutant("redelivery-claim-result", "bot/_redelivery.py",
           "return session.execute(self._claim, row).first() is not None",
           "return session.execute(self._claim, row) is not None", ("tests/test_redelivery.py",),
           "a redelivered message id finds its mark and is not applied twice"),
    Mutant("redelivery-prune", "bot/_redelivery.py",
           "_MARK.seen_at < now - RETENTION", "_MARK.seen_at > now - RETENTION", ("tests/test_redelivery.py",),
           "pruning forgets only marks older than the retention window"),
    Mutant("redelivery-account", "bot/_redelivery.py",
           '_MARK.account == bindparam("account"), _MARK.message_id == bindparam("mid")',
           '_MARK.message_id == bindparam("mid")', ("tests/test_redelivery.py",),
           "message ids are per account: one account's id does not mark another's message handled"),
    # --- points ------------------------------------------------------------------------------------------
    Mutant("points-one-signin", "plugins/points/service.py",
           "if not insert_unique(session, PointsSignIn,", "if None is insert_unique(session, PointsSignIn,",
           POINTS, "one sign-in (and one grant) per member per local day"),
    Mutant("points-local-day", "bot/_context.py",
           "return self.now.date()", "return datetime.now().date()",
           ("tests/test_server_zone.py", "tests/plugins/test_points.py"),
           "'today' is the bot's configured zone (and clock), not the server's"),
    Mutant("points-streak-window", "plugins/points/service.py",
           "(today - last.day).days > 1", "(today - last.day).days >= 1", POINTS,
           "a streak shown before today's sign-in still counts up to yesterday"),
    Mutant("points-level-after-spend", "plugins/points/service.py",
           'level_delta = 0 if kind == "spend" else amount', "level_delta = amount", POINTS,
           "spending points does not lower the level"),
    Mutant("points-balance-check", "plugins/points/service.py",
           '_WHO & (_ACCOUNT.balance >= bindparam("need"))', '_WHO & (_ACCOUNT.balance > bindparam("need"))',
           POINTS, "a member can spend exactly their balance (off by one)"),
    Mutant("points-bounds", "plugins/points/service.py",
           "if not -MAX_CHANGE <= amount <= MAX_CHANGE:", "if not amount <= MAX_CHANGE:", POINTS,
           "a change is bounded both ways (a huge deduction is refused)"),
    Mutant("points-stock", "plugins/points/service.py",
           "col(PointsStock.sold) < stock", "col(PointsStock.sold) <= stock", POINTS,
           "a redemption never oversells the stock (off by one)"),
    Mutant("points-level-threshold", "plugins/points/service.py",
           "if earned >= level.threshold:", "if earned > level.threshold:", POINTS,
           "reaching a level's threshold exactly reaches the level"),
    # --- lottery -----------------------------------------------------------------------------------------
    Mutant("lottery-rejection", "plugins/lottery/fairness.py",
           "        if value < limit:\n            return value % n", "        return value % n", LOTTERY,
           "the uniform pick rejects values past the largest multiple of n (no modulo bias)"),
    Mutant("lottery-shuffle", "plugins/lottery/fairness.py",
           "j = i + _uniform(stream, len(pool) - i)", "j = _uniform(stream, len(pool))", LOTTERY,
           "the partial Fisher-Yates shuffle picks j in [i, n) (the naive shuffle is biased)"),
    Mutant("lottery-verify-order", "plugins/lottery/service.py",
           "if recomputed != list(draw.winners):", "if sorted(recomputed) != sorted(draw.winners):", LOTTERY,
           "verify checks the winners' order, not only the set"),
    Mutant("lottery-verify-entrants", "plugins/lottery/service.py",
           "if canonical_entrants(e.member_id for e in entries) != list(draw.entrants):",
           "if len(entries) != len(draw.entrants):", LOTTERY,
           "verify checks the stored entrant list against the entries as received"),
    Mutant("lottery-verify-posted-commitment", "plugins/lottery/service.py",
           "elif seen.commitments[0] != commitment(draw.seed):", "elif seen.commitments[0] != draw.commitment:",
           LOTTERY, "verify checks the seed against the commitment as posted in the room, not the stored one"),
    Mutant("lottery-verify-terms", "plugins/lottery/service.py",
           '("number of winners", terms.winners == draw.winners_count)', '("number of winners", True)', LOTTERY,
           "verify checks the posted number of winners against the record"),
    # --- permissions -------------------------------------------------------------------------------------
    Mutant("perm-fulfil", "plugins/points/__init__.py",
           'plugin.on_command("已发放", words_from="fulfil_words", permission=ROOM_ADMIN | OPERATOR,',
           'plugin.on_command("已发放", words_from="fulfil_words",', ("tests/test_permission_matrix.py",),
           "only room admins and operators can run 已发放"),
    Mutant("perm-close-poll", "plugins/poll/__init__.py",
           'plugin.on_fullmatch("结束投票", words_from="close_words", permission=ROOM_ADMIN, priority=10)',
           'plugin.on_fullmatch("结束投票", words_from="close_words", priority=10)',
           ("tests/test_permission_matrix.py",), "only room admins and operators can run 结束投票"),
    Mutant("perm-adjust", "plugins/points/__init__.py",
           'plugin.on_command("调整积分", words_from="adjust_words", permission=ROOM_ADMIN | OPERATOR,',
           'plugin.on_command("调整积分", words_from="adjust_words", permission=OPERATOR | None,',
           ("tests/test_permission_matrix.py", "tests/plugins/test_points.py"),
           "room admins (not only operators) can run 调整积分"),
    # --- SOP ---------------------------------------------------------------------------------------------
    Mutant("sop-variant-hash", "bot/sop/_load.py",
           "return int(digest, 16) % len(step.variants)",
           'return hash(f"{loaded.name}:{step.id}:{room_id}") % len(step.variants)',
           ("tests/test_sop_variants.py",), "a room's variant is the same in every process and after restarts"),
    Mutant("sop-grace", "bot/sop/_engine.py",
           "expires_at=due + loaded.sop.grace_of(step))", "expires_at=None)",
           ("tests/test_sop_engine.py",), "a post that cannot go out within the step's grace is dropped"),
    Mutant("sop-start-zone", "bot/sop/_schema.py",
           "if value.tzinfo is None and tz is not None:", "if value.tzinfo is None and tz is None:",
           ("tests/test_sop_engine.py", "tests/test_server_zone.py", "tests/test_sop_check.py"),
           "a start: without an offset is in the bot's zone, not the server's"),
    Mutant("sop-step-until", "bot/sop/_triggers.py",
           "(step.until or sop.until, True)", "(sop.until, True)", ("tests/test_sop_dates.py",),
           "a step's own until: ends its posts (not only the file's)"),
    Mutant("sop-quota", "bot/sop/_quota.py",
           "if len(items) > quota.allowed(period)", "if len(items) > quota.allowed(period) + 1",
           ("tests/test_capabilities.py", "tests/test_sop_check.py"),
           "sop check refuses an SOP set that posts more than the room quota allows (off by one)"),
    Mutant("outbox-quota", "bot/_outbox.py",
           "if used < quota.allowed(now):", "if used <= quota.allowed(now):",
           ("tests/test_capabilities.py", "tests/test_outbox.py"), "the outbox never posts past the room quota"),
    # --- templates ---------------------------------------------------------------------------------------
    Mutant("template-range-budget", "bot/_sandbox.py",
           '        self.globals["range"] = _budgeted_range\n', "", TEMPLATES,
           "range() in a template counts against the render budget"),
    Mutant("template-data-methods", "bot/_template_data.py",
           "if callable(value) and not isinstance(value, _IMMUTABLE):", "if False:", TEMPLATES,
           "templates cannot reach a method of the data they are given"),
    Mutant("template-data-private", "bot/_template_data.py",
           'if name.startswith("_") or (', "if (", TEMPLATES,
           "templates cannot read private attributes of the data they are given"),
    # --- files, YAML -------------------------------------------------------------------------------------
    Mutant("files-symlink", "bot/_files.py",
           "resolved = (path if path.is_absolute() else root / path).resolve()",
           "resolved = (path if path.is_absolute() else root / path).absolute()", ("tests/test_files.py",),
           "a path resolves inside the project with symlinks resolved"),
    Mutant("files-private-url", "bot/_files.py",
           "if address.is_global:", "if not address.is_loopback:", ("tests/test_files.py",),
           "URLs to private and link-local addresses are refused (not only loopback)"),
    Mutant("yaml-depth", "bot/_yaml.py",
           "if depth > MAX_DEPTH:", "if depth > MAX_DEPTH * 100:", ("tests/test_yaml_limits.py",),
           "YAML nesting deeper than MAX_DEPTH is a file:line error"),
    Mutant("yaml-values", "bot/_yaml.py",
           "        self.made += 1\n", "", ("tests/test_yaml_limits.py",),
           "an alias bomb is refused by counting expanded values"),
    # --- guard -------------------------------------------------------------------------------------------
    Mutant("guard-strikes", "plugins/guard/policy.py",
           "if remove_after and strike >= remove_after:", "if remove_after and strike > remove_after:",
           ("tests/plugins/test_guard.py",), "the member is removed at the remove_after-th strike (off by one)"),
    Mutant("guard-revoked", "plugins/guard/policy.py",
           "col(GuardRecord.revoked).is_(False),", "", ("tests/plugins/test_guard.py",),
           "a strike an admin took back no longer counts"),
    Mutant("guard-exempt-admin", "plugins/guard/__init__.py",
           "if member in ctx.config.whitelist or ctx.is_room_admin() or ctx.is_operator():",
           "if member in ctx.config.whitelist or ctx.is_operator():", ("tests/plugins/test_guard.py",),
           "room admins are exempt from the guard"),
    # --- WeCom crypto ------------------------------------------------------------------------------------
    Mutant("wecom-signature", "bot/adapters/wecom/_crypto.py",
           "if not hmac.compare_digest(expected, msg_signature.lower()):", "if not msg_signature:",
           ("tests/wecom/test_wecom_crypto.py",), "a callback whose msg_signature does not match is refused"),
    Mutant("wecom-corp-id", "bot/adapters/wecom/_crypto.py",
           'if receiver.decode(errors="replace") != self.corp_id:', "if not receiver:",
           ("tests/wecom/test_wecom_crypto.py",), "a callback encrypted for another corp id is refused"),
    Mutant("wecom-timestamp", "bot/adapters/wecom/_crypto.py",
           "if abs(age) > self.max_age:", "if age > self.max_age:", ("tests/wecom/test_wecom_crypto.py",),
           "a callback timestamped too far in the future is refused too (replay window both ways)"),
)


def postgres_reachable(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _clean(files: list[str]) -> bool:
    return subprocess.run(["git", "diff", "--quiet", "--", *files], cwd=ROOT).returncode == 0


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_one(mutant: Mutant, timeout: float) -> dict[str, Any]:
    """Apply, test, restore; the restore runs whatever happens."""
    path = ROOT / mutant.file
    original_text = path.read_text(encoding="utf-8")
    count = original_text.count(mutant.original)
    if count != 1:
        raise SystemExit(f"{mutant.name}: the snippet occurs {count} times in {mutant.file}, not once")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests]
    started = time.monotonic()
    how = ""
    mutated = original_text.replace(mutant.original, mutant.replacement)
    compile(mutated, str(path), "exec")  # a mutant that does not even compile would be a false kill
    try:
        path.write_text(mutated, encoding="utf-8")
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                                  preexec_fn=_cap_memory)
            output = done.stdout + done.stderr
            result = {0: "survived", 1: "killed", 5: "no tests"}.get(done.returncode, "error")
            if "error during collection" in output:
                result = "error"  # the tests could not even be collected: not a kill to credit
            if result == "killed" and "MemoryError" in output:
                how = "memory cap"
        except subprocess.TimeoutExpired as timed_out:
            output = (timed_out.stdout or b"").decode() if isinstance(timed_out.stdout, bytes) else (
                timed_out.stdout or "")
            result = "timeout"  # not a detected hang: reported apart, never counted as killed
    finally:
        path.write_text(original_text, encoding="utf-8")
    seconds = time.monotonic() - started
    tail = [line for line in output.strip().splitlines() if line.strip()][-3:]
    return {"name": mutant.name, "file": mutant.file, "tests": list(mutant.tests), "breaks": mutant.breaks,
            "result": result, "how": how, "seconds": round(seconds, 1), "tail": tail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="mutant names")
    parser.add_argument("--first", type=int, default=None, help="only the first N mutants")
    parser.add_argument("--timeout", type=float, default=TIMEOUT)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--baseline", action="store_true",
                        help="first run every listed test file unmutated; stop if any fails (a red baseline "
                             "would make every mutant look killed)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only][:args.first]
    if args.only and len(chosen) != len(args.only):
        known = {m.name for m in MUTANTS}
        raise SystemExit(f"unknown mutants: {sorted(set(args.only) - known)}")
    files = sorted({m.file for m in MUTANTS})
    if not _clean(files):
        raise SystemExit("the files the mutants edit have uncommitted changes; commit them first")
    for mutant in MUTANTS:  # every snippet once, before anything is edited
        count = (ROOT / mutant.file).read_text(encoding="utf-8").count(mutant.original)
        if count != 1:
            raise SystemExit(f"{mutant.name}: the snippet occurs {count} times in {mutant.file}, not once")
    postgres = postgres_reachable()
    if not postgres:
        print("PostgreSQL at 127.0.0.1:5432 is unreachable: its tests skip themselves", file=sys.stderr)
    if args.baseline:
        tests = sorted({t for m in chosen for t in m.tests})
        started = time.monotonic()
        base = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                              capture_output=True, text=True)
        summary = (base.stdout.strip().splitlines() or ["?"])[-1]
        print(f"baseline ({len(tests)} files, unmutated): {summary} [{time.monotonic() - started:.0f}s]", flush=True)
        if base.returncode != 0:
            raise SystemExit("the baseline is red: fix the tests before probing")
    results = []
    for mutant in chosen:
        row = run_one(mutant, args.timeout)
        results.append(row)
        shown = f"{row['result']} ({row['how']})" if row["how"] else row["result"]
        print(f"{row['name']:34} {shown:22} {row['seconds']:7.1f}s  {row['breaks']}", flush=True)
    if not _clean(files):
        print("ERROR: a mutated file was not restored (git diff is not empty)", file=sys.stderr)
        return 2
    counted = [r for r in results if r["result"] in ("killed", "survived", "timeout")]
    killed = sum(r["result"] == "killed" for r in counted)
    rate = killed / len(counted) if counted else 0.0
    print(f"\nkilled {killed} of {len(counted)} = {rate:.0%}")
    for row in results:
        if row["result"] != "killed":
            print(f"  {row['result']}: {row['name']} — {row['breaks']}")
    if args.json is not None:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        args.json.write_text(json.dumps({
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit, "machine": machine(),
            "postgres_reachable": postgres, "killed": killed, "counted": len(counted), "kill_rate": round(rate, 3),
            "mutants": results}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
