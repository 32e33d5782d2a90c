"""Benchmark: `migrate verify` against data-diff 0.11.2 on the bench lab (1,000 employees x
10 years, about 5 M punches), identical and with 10 differing punch rows, in one run.

    .venv/bin/python bench/verify.py [--keep]   # writes bench/results-verify.md

Needs data-diff in its own venv: python3 -m venv .venv-datadiff &&
.venv-datadiff/bin/pip install 'data-diff[postgresql]==0.11.2' 'dbt-core<1.9' 'pydantic<2'.
Brings the bench lab up (ports 20xxx, .lab-bench-verify/), copies both databases with
pg_dump | pg_restore, measures, and stops the lab (purged unless --keep).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psycopg


def _load_support():
    spec = importlib.util.spec_from_file_location("verify_support", Path(__file__).with_name("verify_support.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lab = _load_support()

DATADIFF = lab.ROOT / ".venv-datadiff" / "bin" / "data-diff"
RESULTS = lab.ROOT / "bench" / "results-verify.md"
DATADIFF_TIMEOUT = 240


def migrate_verify(inventory: Path, depth: str) -> tuple[float, dict, int]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inventory), "--json", "verify", "wave-1",
                           "--depth", depth], capture_output=True, text=True, cwd=lab.ROOT)
    seconds = time.monotonic() - started
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1]), proc.returncode


def data_diff(table: str, key: str) -> tuple[float, set, list[str]]:
    # data-diff insists on a password in the URL (no passfile): the bench lab's, never recorded.
    url = "postgresql://migrate:{}@127.0.0.1:{}/presenze"
    argv = [str(DATADIFF), url.format(password(lab.PORTS["pg_source"]), lab.PORTS["pg_source"]), table,
            url.format(password(lab.PORTS["pg_target"]), lab.PORTS["pg_target"]), table,
            "-k", key, *[a for c in columns(table) if c != key for a in ("-c", c)],
            "--json", "--no-tracking", "-j", str(os.cpu_count() or 2)]
    shown = [a.replace(password(lab.PORTS["pg_source"]), "***").replace(password(lab.PORTS["pg_target"]), "***")
             for a in argv]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env={**lab.env(), "HOME": "/tmp"},
                              timeout=DATADIFF_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, set(), shown
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"data-diff failed: {proc.stderr[-2000:]}")
    # --json prints one ["+" or "-", [key, other columns...]] per differing row version.
    keys = {str(json.loads(line)[1][0]) for line in proc.stdout.splitlines() if line.startswith("[")}
    return seconds, keys, shown


def columns(table: str) -> list[str]:
    # Named one by one: with `-c %` data-diff 0.11.2 may order the columns differently on the
    # two sides, every checksum then differs and it downloads the whole table.
    with psycopg.connect(lab.dsn("source", "presenze")) as conn:
        return [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
                                           " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,))]


def password(port: int) -> str:
    for line in (lab.LAB_DIR / "secrets" / "pgpass").read_text().splitlines():
        if line.startswith(f"127.0.0.1:{port}:"):
            return line.rsplit(":", 1)[1]
    raise SystemExit(f"no pgpass line for port {port}")


def inject_ten_differences() -> set[str]:
    """4 changed values (1 microsecond, NULL -> '', a flipped direction, a reason), 3 deleted,
    3 inserted punches on the target, triggers off."""
    with psycopg.connect(lab.dsn("target", "presenze"), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        lo, hi = conn.execute("SELECT min(punch_id), max(punch_id) FROM punch").fetchone()
        ids = [lo + (hi - lo) * i // 11 for i in range(1, 8)]
        conn.execute("UPDATE punch SET punched_at = punched_at + interval '1 microsecond' WHERE punch_id = %s", (ids[0],))
        conn.execute("UPDATE punch SET correction_note = '' WHERE punch_id = %s", (ids[1],))
        conn.execute("UPDATE punch SET direction = CASE direction WHEN 'IN' THEN 'OUT' ELSE 'IN' END"
                     " WHERE punch_id = %s", (ids[2],))
        conn.execute("UPDATE punch SET employee_id = (SELECT min(employee_id) FROM staff WHERE employee_id <> punch.employee_id)"
                     " WHERE punch_id = %s", (ids[3],))
        conn.execute("DELETE FROM punch WHERE punch_id = ANY(%s)", (ids[4:7],))
        new = conn.execute("INSERT INTO punch SELECT punch_id + %s, employee_id, badge_id, terminal_id, punched_at,"
                           " direction, reason_code, origin, corrected_by, correction_note, recorded_at FROM punch"
                           " WHERE punch_id IN (%s, %s, %s) RETURNING punch_id", (hi, lo, lo + 1, lo + 2)).fetchall()
    return {str(i) for i in ids} | {str(r[0]) for r in new}


def found_keys(report: dict, table: str) -> set[str]:
    return {d["key"]["punch_id"] for d in report["differences"] if d["area"] == "rows" and d["object"] == table}


def table_seconds(report: dict, table: str) -> float:
    return next(t["seconds"] for t in report["tables"] if t["table"] == table)


def versions() -> dict:
    with psycopg.connect(lab.dsn("source", "postgres")) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    dd = subprocess.run([str(DATADIFF), "--version"], capture_output=True, text=True).stdout.strip()
    return {"postgres": server, "data-diff": dd or "0.11.2", "python": platform.python_version(),
            "cores": os.cpu_count()}


def main() -> None:
    from migrate.lab import api as lab_api
    keep = "--keep" in sys.argv
    began = time.monotonic()
    lab_api.up(lab.LAB_DIR, ports=lab.lab_ports(), employees=1000, years=10, seed=1)
    try:
        inventory = lab.write_inventory()
        copy_seconds = lab.copy_databases()
        load = os.getloadavg()[0]
        rows = {}
        for case in ("identical", "10 differing punches"):
            expected = set() if case == "identical" else inject_ten_differences()
            full_s, full, rc = migrate_verify(inventory, "full")
            cks_s, cks, _ = migrate_verify(inventory, "checksums")
            print(case, "migrate full", round(full_s, 1), "checksums", round(cks_s, 1), flush=True)
            dd_s, dd_keys, argv = data_diff("punch", "punch_id")
            rows[case] = {"expected": expected, "full": (full_s, full, rc), "checksums": (cks_s, cks),
                          "datadiff": (dd_s, dd_keys)}
            print(case, "data-diff punch", dd_s, flush=True)
        write_results(copy_seconds, load, rows, argv, versions(), time.monotonic() - began)
    finally:
        lab_api.down(lab.LAB_DIR, purge=not keep)


def write_results(copy_seconds, load, rows, argv, ver, total) -> None:
    lines = [
        "# Verification benchmark (issue 4)", "",
        f"One run of `.venv/bin/python bench/verify.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}:"
        f" {ver['cores']} cores, PostgreSQL {ver['postgres']} (source and target clusters on the same machine),"
        f" Python {ver['python']}, {ver['data-diff']}. Load average before measuring: {load:.1f}"
        " (other sessions share the machine). Data: bench lab, 1,000 employees x 10 years (seed 1).", "",
        f"Copy of both databases (pg_dump | pg_restore, both at once): **{copy_seconds:.1f} s**.", "",
        "| case | `migrate verify --depth full` (both databases, all tables, schema, sequences, business totals,"
        " evidence digests) | of which punch | `--depth checksums` | data-diff 0.11.2, punch only |"
        " differing keys expected / migrate found / data-diff found |",
        "|---|---|---|---|---|---|",
    ]
    for case, r in rows.items():
        full_s, full, rc = r["full"]
        cks_s, cks = r["checksums"]
        dd_s, dd_keys = r["datadiff"]
        dd = f"{dd_s:.1f} s" if dd_s is not None else f"did not finish in {DATADIFF_TIMEOUT} s"
        lines.append(f"| {case} | {full_s:.1f} s (exit {rc}, {len(full['tables'])} tables) |"
                     f" {table_seconds(full, 'public.punch'):.1f} s | {cks_s:.1f} s | {dd} |"
                     f" {len(r['expected'])} / {len(found_keys(full, 'public.punch'))}"
                     f"{' (exact)' if found_keys(full, 'public.punch') == r['expected'] else ' (NOT exact)'}"
                     f" / {len(dd_keys)} |")
    lines += ["", "Commands:", "", "```",
              ".venv/bin/python -m migrate.cli -i .lab-bench-verify/inventory --json verify wave-1 --depth full",
              ".venv/bin/python -m migrate.cli -i .lab-bench-verify/inventory --json verify wave-1 --depth checksums",
              " ".join(argv).replace(str(lab.ROOT) + "/", ""), "```", "",
              "Notes: `--depth full` also digests the legal-evidence tables (punch, monthly_timesheet) on both"
              " sides, because outside a wave no pre-copy digest is journalled; inside a wave only the target's is"
              " computed at verification. `checksums` differs from `full` only in not re-hashing document bytes"
              " (no documents are staged in this benchmark), so the two measure the same work twice: their"
              " spread is the run-to-run noise.",
              f"Whole benchmark (lab up, copy, measurements): {total:.0f} s.", ""]
    RESULTS.write_text("\n".join(lines))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
