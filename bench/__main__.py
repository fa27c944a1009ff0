"""`python -m bench`: run the benchmarks, print a table, write bench/results.json.

Each benchmark runs in a fresh Python process (resident memory and caches of one do not colour the
next), in the order dispatch, SOP, accounts, sign-in, burst, wave. Every figure held to a target is a rate or a
ratio measured side by side in the same run, because absolute times on shared machines drift.

    python -m bench                      # full sizes (several minutes)
    python -m bench --quick              # tiny sizes, a smoke run
    python -m bench --only dispatch sop  # some of them
    python -m bench --sop-virtual        # add the virtual-clock SOP figures (minutes more)
    python -m bench --only wave --wave-accounts 10  # the 08:00 wave with fewer accounts (full: 100, minutes)
    python -m bench --only fleet         # real processes on PostgreSQL (not in the default run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import machine

ORDER = ("dispatch", "sop", "accounts", "signin", "burst", "wave")
EXTRA = ("fleet",)
"""Run only when named: the fleet benchmark needs PostgreSQL and starts real processes."""
FULL: dict[str, dict[str, Any]] = {
    "dispatch": {"events": 100_000, "nonebot_events": 3_000, "rooms": 20, "members": 100},
    "sop": {"rooms": 10_000, "files": 100, "burst": 1_000},
    "accounts": {"accounts": 100, "rooms": 20, "members": 500},
    "signin": {"rooms": 200, "members": 100},
    "burst": {"cases": [["signin", 100], ["signin", 500], ["lottery", 300], ["poll", 300]]},
    "wave": {"accounts": 100, "rooms": 20, "members": 500},
    "fleet": {"accounts": 40, "rooms": 30},
}
QUICK: dict[str, dict[str, Any]] = {
    "dispatch": {"events": 2_000, "nonebot_events": 100, "rooms": 4, "members": 10},
    "sop": {"rooms": 200, "files": 10, "burst": 40, "burst_files": 2, "lead": 1.0},
    "accounts": {"accounts": 5, "rooms": 4, "members": 50},
    "signin": {"rooms": 10, "members": 20},
    "burst": {"cases": [["signin", 30], ["lottery", 20], ["poll", 20]]},
    "wave": {"accounts": 3, "rooms": 4, "members": 50},
    "fleet": {"accounts": 8, "rooms": 20},
}


async def run_one(name: str, sizes: dict[str, Any]) -> dict[str, Any]:
    if name == "dispatch":
        from bench.bench_dispatch import run
    elif name == "sop":
        from bench.bench_sop import run
    elif name == "accounts":
        from bench.bench_accounts import run
    elif name == "burst":
        from bench.bench_burst import run
    elif name == "wave":
        from bench.bench_wave import run
    elif name == "fleet":
        from bench.bench_fleet import run
    else:
        from bench.bench_signin import run

    def progress(line: str) -> None:
        print(f"  {name}: {line}", file=sys.stderr, flush=True)

    return (await run(**sizes, progress=progress)).as_json()


def table(results: dict[str, Any]) -> str:
    lines = [f"{'benchmark':<10} {'figure':<44} {'value':>14}  target"]
    for name, result in results.items():
        if "error" in result:
            lines.append(f"{name:<10} FAILED: {result['error']}")
            continue
        targets = {t["name"]: t for t in result["targets"]}
        for target in targets.values():
            mark = "met" if target["met"] else "MISSED"
            lines.append(f"{name:<10} {target['name']:<44} {target['value']:>14,.3f}  {target['target']} {mark}")
        for key, value in result["figures"].items():
            if isinstance(value, int | float):
                lines.append(f"{name:<10} {key:<44} {value:>14,.3f}".rstrip("0").rstrip("."))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=ORDER + EXTRA, default=list(ORDER))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmarks run, not speed")
    parser.add_argument("--sop-virtual", action="store_true", help="add the virtual-clock SOP figures")
    parser.add_argument("--wave-accounts", type=int, metavar="N", help="run the wave with N accounts (full: 100)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.child:
        print(json.dumps(asyncio.run(run_one(args.child, json.loads(sys.stdin.read())))))
        return
    results: dict[str, Any] = {}
    began = time.time()
    for name in (n for n in ORDER + EXTRA if n in args.only):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        child_sizes = dict(sizes[name], **({"virtual": True} if name == "sop" and args.sop_virtual else {}))
        if name == "wave" and args.wave_accounts:
            child_sizes["accounts"] = args.wave_accounts
        done = subprocess.run([sys.executable, "-m", "bench", "--child", name], input=json.dumps(child_sizes),
                              capture_output=False, stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            results[name] = {"error": f"exit code {done.returncode} (see stderr above)"}
        else:
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            results[name]["sizes"] = child_sizes
    report = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
              "seconds": round(time.time() - began, 1), "quick": args.quick, "results": results}
    args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nmachine: {report['machine']}\nwritten: {args.json}")
    if any("error" in r for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
