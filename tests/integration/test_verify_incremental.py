"""The incremental verification on the lab: `migrate sync`, a baseline while the source is live,
differences injected on the target before and after it, punches committed on the source
meanwhile, then `verify_since` once the target has caught up (nothing fenced). Each test ends
with the wave's rollback."""

from contextlib import contextmanager

import psycopg
import pytest

from migrate import config
from migrate.engine.events import Bus
from migrate.transfer import sync
from migrate.verify import evidence, incremental, probes, rows, runner
from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration

FLIP = ("UPDATE punch SET direction = CASE direction WHEN 'IN' THEN 'OUT' ELSE 'IN' END WHERE punch_id = %s"
        " RETURNING punch_id")
PUNCH = ("INSERT INTO punch (employee_id, punched_at, direction, origin, recorded_at)"
         " SELECT employee_id, now(), 'IN', 'TERM', now() FROM staff WHERE active ORDER BY random() LIMIT 1"
         " RETURNING punch_id")


@contextmanager
def session(side: str):
    """Writes as one change each: the lab's own audit triggers stay quiet."""
    with psycopg.connect(lab.dsn(side, "presenze"), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def presenze():
    inv = config.load(lab.INVENTORY)
    return inv, inv.spec.systems["attendance"].databases["presenze"]


def rows_only(d):
    """presenze with punch compared as any table (its evidence blocks hold 65,536 keys: one here)."""
    return d.model_copy(update={"evidence_tables": []})


def caught_up(inv, d) -> None:
    with psycopg.connect(lab.dsn("source", "presenze"), autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    sync.wait_applied(inv, server=d.source.server, dbname=d.source.dbname, lsn=lsn, timeout=60)


def keys(result) -> set:
    return {(d.problem, tuple(d.key.items()), d.columns) for d in result.differences}


def by_table(results) -> dict:
    return {r.table: r for r in results}


@pytest.fixture
def synced(clean_lab):
    done = lab.migrate("sync", "wave-1", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield clean_lab
    finally:
        rolled = lab.migrate("rollback", "wave-1", "--yes")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr


def test_freeze_recomputes_only_what_changed_and_names_exactly_the_differences(synced):
    inv, d = presenze()
    with session("target") as conn:
        before, = conn.execute(FLIP, (5,)).fetchone()
    caught_up(inv, d)
    base = incremental.baseline(inv, rows_only(d), segment_rows=100)
    full_base = incremental.baseline(inv, d, segment_rows=100)
    punch = base["tables"]["public.punch"]
    assert base["version"] == incremental.VERSION and set(punch) >= {"key", "grid", "counts", "snapshots"}
    assert punch["mismatched"] == [0] and punch["grid"]["width"] < 200
    with session("target") as conn:
        after, = conn.execute(FLIP, (3001,)).fetchone()
    with psycopg.connect(lab.dsn("source", "presenze"), autocommit=True) as conn:
        new = [conn.execute(PUNCH).fetchone()[0] for _ in range(25)]
        conn.execute("UPDATE punch SET correction_note = 'rettifica' WHERE punch_id = 4000")
    caught_up(inv, d)

    results = by_table(incremental.verify_since(inv, rows_only(d), base))
    punch_now = results["public.punch"]
    assert punch_now.mode == "incremental", punch_now.reason
    assert keys(punch_now) == {("changed", (("punch_id", str(before)),), ("direction",)),
                               ("changed", (("punch_id", str(after)),), ("direction",))}
    assert punch_now.source_rows == punch_now.target_rows == punch["rows"]["source"] + len(new)
    # segment 0 (differed then), the one of 3001, the one of 4000, and the new punches beyond the grid
    assert punch_now.dirty == 3 and punch_now.outside == 1 and punch_now.segments >= 50
    assert {name for name, r in results.items() if r.differences} == {"public.punch"}
    assert all(r.mode == "incremental" for r in results.values() if not r.reason.startswith("hashed key"))

    # The evidence path: block digests assembled from the baseline's and the changed blocks are
    # those of a full pass, and the differences the same.
    pair = probes.open_pair(inv, d)
    try:
        s = rows.shape(*{src.qualified: (src, tgt) for src, tgt in incremental.common_tables(pair)}["public.punch"])
        inc, digests = incremental.compare_table(pair, s, "x", full_base["tables"]["public.punch"], True)
        whole, *full_digests = evidence.compare_table(pair, s, "x")
    finally:
        pair.close()
    assert inc.mode == "incremental" and digests == full_digests and keys(inc) == keys(whole) == keys(punch_now)
    assert runner.source_evidence(inv, d, full_base) == runner.source_evidence(inv, d)

    # The whole verification with the baseline: rows compared incrementally, no schema difference.
    report = runner.verify(inv, "wave-1", run_id=None, depth="checksums", bus=Bus(),
                           baselines={"attendance/presenze": full_base})
    assert not [x for x in report.differences if x.area == "schema"]
    assert {(x.object, x.key.get("punch_id")) for x in report.differences if x.area == "rows"} == {
        ("public.punch", str(before)), ("public.punch", str(after))}
    modes = {t.table: t.mode for t in report.tables if t.database == "attendance/presenze"}
    assert modes["public.punch"] == modes["public.monthly_timesheet"] == "incremental"

    # A TRUNCATE on the target after the baseline, followed by nothing (no row written since:
    # the counts tell): every row of the table is found missing, and only there.
    with session("target") as conn:
        conn.execute("TRUNCATE overtime")
    results = by_table(incremental.verify_since(inv, rows_only(d), base))
    overtime = results["public.overtime"]
    assert overtime.mode == "incremental", overtime.reason
    assert overtime.target_rows == 0 and overtime.dirty == overtime.segments > 0
    assert {x.problem for x in overtime.differences} == {"missing_on_target"}
    assert len(overtime.differences) == overtime.source_rows == base["tables"]["public.overtime"]["rows"]["source"]
    assert {name for name, r in results.items() if r.differences} == {"public.punch", "public.overtime"}


def test_each_side_tells_its_changes_even_those_the_apply_lost(synced):
    inv, d = presenze()
    caught_up(inv, d)
    base = incremental.baseline(inv, rows_only(d), segment_rows=100)
    assert not any(t["mismatched"] for t in base["tables"].values())
    with session("target") as conn:
        changed, = conn.execute(FLIP, (2500,)).fetchone()
        extra = conn.execute("DELETE FROM punch WHERE punch_id = 10 RETURNING *").fetchone()
        conn.execute(f"INSERT INTO punch VALUES ({', '.join(['%s'] * len(extra))})", extra)  # same row, new xmin
    # Changes the apply never sees: the subscription is paused while the source takes them.
    with psycopg.connect(lab.dsn("target", "presenze"), autocommit=True) as conn:
        conn.execute(f'ALTER SUBSCRIPTION "{sync.name_for("presenze")}" DISABLE')
    with session("source") as conn:
        conn.execute("UPDATE punch SET correction_note = 'persa' WHERE punch_id = 4200")
        conn.execute("DELETE FROM punch WHERE punch_id = 4300")
    results = by_table(incremental.verify_since(inv, rows_only(d), base))
    punch = results["public.punch"]
    assert punch.mode == "incremental" and punch.dirty == 4
    assert keys(punch) == {("changed", (("punch_id", str(changed)),), ("direction",)),
                           ("changed", (("punch_id", "4200"),), ("correction_note",)),
                           ("extra_on_target", (("punch_id", "4300"),), ())}
    assert {name for name, r in results.items() if r.differences} == {"public.punch"}
