"""Benchmark: the freeze of a warm wave (`migrate sync`, then `migrate run`) beside the cold wave
(`migrate run`), in one run, on one lab, under the lab's write load.

    .venv/bin/python bench/freeze.py [--employees 1000] [--years 10] [--rate 20] [--settle 20]
                                     [--skip-cold] [--purge]

Brings up (or reuses) the benchmark lab in .lab-bench-freeze, seeds it at the given scale if it
is not seeded so, and then, each from a freshly reset lab:

1. cold: the load at `rate` punches/s through the front door; `migrate run wave-1 --approve`;
   the freeze (journal: maintenance on -> entry point on the target); the load's acknowledged
   writes checked on the live side; `migrate rollback`; checked again on the source.
2. warm, go-live: the load throughout; `migrate sync`; lag sampled every second for `settle`
   seconds; `migrate run --approve`; freeze; check live; rollback from after go-live; check source.
3. warm, no-go: `migrate sync`; `migrate run` stops at the gate (exit 4); rollback; check source.

Prints a table and writes bench/results-freeze.md. The machine is noisy: compare only figures
of one run. Not a test: the heavy scale lives here.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from migrate.lab import api as lab_api
from migrate.lab.api import LabPorts
from migrate.lab.inventory import ROOT, write_lab_inventory
from migrate.lab.layout import lab_paths
from migrate.lab.load import Load
from migrate.lab.state import read_state

LAB = ROOT / ".lab-bench-freeze"
PORTS = LabPorts(pg_source=23432, pg_target=23433, ssh_src_app=20201, ssh_tgt_app=20202, s3=23900,
                 ssh_front=20203, http_src_app=20281, http_tgt_app=20282, http_front=20280)
RESULTS = ROOT / "bench" / "results-freeze.md"


def migrate(*args: str, ok=(0,)) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(LAB / "inventory"), *args],
                          capture_output=True, text=True, timeout=7200)
    if done.returncode not in ok:
        raise SystemExit(f"migrate {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done


def wave_status() -> dict:
    return json.loads(migrate("--json", "status", "wave-1").stdout)["waves"]["wave-1"]


def checked(load: Load, side: str) -> str:
    result = load.check(side)
    return "ok" if result.ok else result.problem()


def timed(fn) -> tuple[float, object]:
    started = time.monotonic()
    value = fn()
    return time.monotonic() - started, value


def cold(rate: float) -> dict:
    lab_api.reset(LAB)
    load = Load(LAB, fresh=True)
    load.start(rate)
    seconds, _ = timed(lambda: migrate("run", "wave-1", "--yes", "--approve", "bench"))
    time.sleep(2)
    load.stop()
    freeze = wave_status()["freeze"]
    live = checked(load, "live")
    back, _ = timed(lambda: migrate("rollback", "wave-1", "--yes"))
    return {"path": "cold", "wave_seconds": seconds, "freeze": freeze, "acked": load.acked, "failed": load.failed,
            "live": live, "rollback_seconds": back, "after_rollback": checked(load, "source")}


def lag_samples(settle: float) -> list[float]:
    samples, deadline = [], time.monotonic() + settle
    while time.monotonic() < deadline:
        sync = wave_status().get("sync") or {}
        samples += [d["lag_seconds"] or 0.0 for d in sync.values() if d.get("lag_seconds") is not None]
        time.sleep(1.0)
    return samples


def warm(rate: float, settle: float, go: bool) -> dict:
    lab_api.reset(LAB)
    load = Load(LAB, fresh=True)
    load.start(rate)
    synced, _ = timed(lambda: migrate("sync", "wave-1", "--yes"))
    lags = lag_samples(settle)
    approve = ("--approve", "bench") if go else ()
    seconds, _ = timed(lambda: migrate("run", "wave-1", "--yes", *approve, ok=(0,) if go else (4,)))
    time.sleep(2)
    load.stop()
    status = wave_status()
    live = checked(load, "live")
    back, _ = timed(lambda: migrate("rollback", "wave-1", "--yes"))
    return {"path": "warm" if go else "warm, no-go at the gate", "sync_seconds": synced, "wave_seconds": seconds,
            "freeze": status["freeze"], "lag_max": max(lags, default=None),
            "lag_median": statistics.median(lags) if lags else None, "acked": load.acked, "failed": load.failed,
            "live": live, "rollback_seconds": back, "after_rollback": checked(load, "source")}


def phases(freeze: dict | None) -> str:
    if not freeze:
        return ""
    return ", ".join(f"{p['step']} {p['seconds']:.1f}" for p in freeze["phases"])


def report(rows: list[dict], args) -> str:
    flags = " --no-archive" if args.no_archive else ""
    what = ", without the document archive" if args.no_archive else ""
    lines = [f"# Freeze: warm against cold ({time.strftime('%Y-%m-%d')}, {platform.node()}, "
             f"{args.employees} employees x {args.years} years, load {args.rate} writes/s{what})", "",
             f"`.venv/bin/python bench/freeze.py --employees {args.employees} --years {args.years} --rate {args.rate}"
             f"{flags}`",
             "", "| path | sync s | run s | freeze s | lag max / median s | acked (failed) | live side | rollback s |"
             " after rollback |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["freeze"] or {}
        freeze = f"{f['seconds']:.1f}" if f.get("seconds") is not None else "(stopped at the gate)"
        lag = (f"{r['lag_max']:.2f} / {r['lag_median']:.2f}" if r.get("lag_max") is not None else "")
        lines.append(f"| {r['path']} | {r.get('sync_seconds', 0):.1f} | {r['wave_seconds']:.1f} | {freeze} | {lag} |"
                     f" {r['acked']} ({r['failed']}) | {r['live']} | {r['rollback_seconds']:.1f} | {r['after_rollback']} |")
    lines += ["", "Phases inside the freeze (seconds):", ""]
    lines += [f"- {r['path']}: {phases(r['freeze'])}" for r in rows]
    return "\n".join(lines) + "\n"


def without_archive(spec: Path) -> None:
    """The bench inventory's spec without the personnel archive (its four lines)."""
    lines = spec.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == "archive:")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" " * 6))
    spec.write_text("".join(lines[:start] + lines[end:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=1000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--purge", action="store_true")
    parser.add_argument("--no-archive", action="store_true",
                        help="Leave the document archive out of the wave (both paths): the databases' freeze alone")
    args = parser.parse_args()
    lab_api.up(LAB, ports=PORTS, employees=args.employees, years=args.years, seed=1)
    seeded = read_state(lab_paths(LAB))["seeded"] or {}
    if (seeded.get("employees"), seeded.get("years")) != (args.employees, args.years):
        lab_api.reseed(LAB, employees=args.employees, years=args.years, seed=1)
    write_lab_inventory(LAB, PORTS)
    if args.no_archive:
        without_archive(LAB / "inventory" / "migrate.yml")
    shutil.rmtree(LAB / "inventory" / ".state", ignore_errors=True)
    try:
        rows = [] if args.skip_cold else [cold(args.rate)]
        rows += [warm(args.rate, args.settle, go=True), warm(args.rate, args.settle, go=False)]
    finally:
        lab_api.down(LAB, purge=args.purge)
    text = report(rows, args)
    (RESULTS.with_name("results-freeze-no-archive.md") if args.no_archive else RESULTS).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
