"""Benchmark: the freeze's row verification of presenze, incremental against full, on a lab.

    MIGRATE_TEST_LAB=.lab-incr MIGRATE_TEST_PORT_OFFSET=5000 .venv/bin/python bench/verify_incremental.py \
        [--punches 200] [--updates 50] [--keep]

The lab must be up (`migrate lab up`, or the integration tests' lab with those variables). The
lab is reset, `migrate sync wave-1` run, a baseline taken while the source is live, then
`--punches` new punches and `--updates` corrections of recent ones committed on the source; once
the target has caught up (nothing is fenced), verify_since and the full comparison are timed on
the same state, twice each (the second run reads warm caches). The wave is rolled back unless
--keep. Prints seconds, per-table modes and segment figures; no row value.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from migrate import config
from migrate.engine.events import Bus
from migrate.transfer import sync
from migrate.verify import incremental, runner
from tests.integration import lab_support as lab

PUNCH = ("INSERT INTO punch (employee_id, punched_at, direction, origin, recorded_at)"
         " SELECT employee_id, now(), 'IN', 'TERM', now() FROM staff WHERE active ORDER BY random() LIMIT 1")
# A correction of a recent punch (the last 5 % of punch_ids: this month's, as HR corrects them).
CORRECT = ("UPDATE punch SET correction_note = 'bench' WHERE punch_id = (SELECT max(punch_id)"
           " - floor(random() * max(punch_id) / 20)::bigint FROM punch)")


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return time.monotonic() - started, result


def write_source(punches: int, updates: int) -> None:
    with psycopg.connect(lab.dsn("source", "presenze"), autocommit=True) as conn:
        for _ in range(punches):
            conn.execute(PUNCH)
        for _ in range(updates):
            conn.execute(CORRECT)


def caught_up(inv, d) -> float:
    with psycopg.connect(lab.dsn("source", "presenze"), autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    return sync.wait_applied(inv, server=d.source.server, dbname=d.source.dbname, lsn=lsn, timeout=600)["seconds"]


def summary(results) -> str:
    inc = [r for r in results if r.mode == "incremental"]
    return (f"{len(inc)}/{len(results)} tables incremental, segments {sum(r.segments for r in inc)},"
            f" recomputed {sum(r.dirty for r in inc)} (+{sum(r.outside for r in inc)} ranges beyond),"
            f" differences {sum(len(r.differences) for r in results)}")


def measure(inv, d, base: dict, label: str) -> None:
    if d.evidence_tables:
        since, _ = timed(runner.source_evidence, inv, d, base)
        full, _ = timed(runner.source_evidence, inv, d)
        print(f"{label}: source evidence digests after the fence: from the baseline {since:.2f} s, full {full:.2f} s")
    for attempt in (1, 2):
        since, results = timed(incremental.verify_since, inv, d, base)
        full, everything = timed(incremental.verify_since, inv, d, {**base, "tables": {}})
        print(f"{label} run {attempt}: verify_since {since:.2f} s ({summary(results)}); full {full:.2f} s"
              f" ({summary(everything)})")
    for r in sorted(results, key=lambda r: -r.seconds)[:4]:
        print(f"    {r.table}: {r.mode} {r.seconds:.2f} s, {r.dirty}/{r.segments} segments, {r.queries} queries"
              f"{' (' + r.reason + ')' if r.reason else ''}")


def measure_wave(inv, presenze: dict) -> None:
    """The whole verification of the wave (both databases, schema, sequences, business checks,
    evidence) as the freeze runs it, with baselines and without."""
    seconds, personale = timed(incremental.baseline, inv, inv.spec.systems["personnel"].databases["personale"])
    print(f"baseline (personale): {seconds:.2f} s")
    baselines = {"attendance/presenze": presenze, "personnel/personale": personale}
    for attempt in (1, 2):
        since, report = timed(runner.verify, inv, "wave-1", run_id=None, depth="checksums", bus=Bus(),
                              baselines=baselines)
        full, whole = timed(runner.verify, inv, "wave-1", run_id=None, depth="checksums", bus=Bus())
        rows_found = [len([x for x in r.differences if x.area == "rows"]) for r in (report, whole)]
        print(f"runner.verify wave-1 run {attempt}: with baselines {since:.2f} s, without {full:.2f} s"
              f" (row differences {rows_found[0]} / {rows_found[1]})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--punches", type=int, default=200)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="leave the wave synced")
    parser.add_argument("--no-reset", action="store_true", help="the wave is synced already")
    args = parser.parse_args()
    if not args.no_reset:
        lab.reset()
        seconds, done = timed(lab.migrate, "sync", "wave-1", "--yes", timeout=3600)
        if done.returncode != 0:
            print(done.stdout + done.stderr)
            return 1
        print(f"migrate sync wave-1: {seconds:.1f} s")
    inv = config.load(lab.INVENTORY)
    d = inv.spec.systems["attendance"].databases["presenze"]
    try:
        caught_up(inv, d)
        rows_only = d.model_copy(update={"evidence_tables": []})
        bases = {}
        for label, which in (("presenze", d), ("presenze, punch as a plain table", rows_only)):
            seconds, bases[label] = timed(incremental.baseline, inv, which)
            print(f"baseline ({label}): {seconds:.2f} s")
        seconds, _ = timed(write_source, args.punches, args.updates)
        print(f"source: {args.punches} punches and {args.updates} corrections committed in {seconds:.1f} s;"
              f" target caught up after {caught_up(inv, d):.1f} s more")
        measure(inv, d, bases["presenze"], "presenze")
        measure(inv, rows_only, bases["presenze, punch as a plain table"], "punch as a plain table")
        measure_wave(inv, bases["presenze"])
    finally:
        if not args.keep:
            done = lab.migrate("rollback", "wave-1", "--yes", timeout=3600)
            print(f"rollback: exit {done.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
