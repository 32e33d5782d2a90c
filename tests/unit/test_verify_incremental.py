"""The incremental verification without a lab: segment arithmetic, the dirty set, xid and
snapshot arithmetic, the queries, the decisions and the baseline's version."""

from types import SimpleNamespace

import pytest
from psycopg import sql

from migrate.errors import MigrateError
from migrate.transfer.catalog import Table
from migrate.verify import incremental, rows, segments
from migrate.verify.segments import Grid, Snapshot

PUNCH = Table("public", "punch", 5_000_000, ("punch_id", "employee_id", "punched_at"),
              ("bigint", "integer", "timestamp with time zone"), ("punch_id",))
REASON = Table("public", "reason_code", 20, ("code", "description"), ("text", "text"), ("code",))
NO_KEY = Table("public", "terminal_import_raw", 500_000, ("terminal_code", "raw_line"), ("text", "text"), ())


def text(query: sql.Composable) -> str:
    return query.as_string(None)


# --- segments --------------------------------------------------------------------------------

def test_grid_numbers_keys_and_cuts_the_last_segment_at_hi():
    g = segments.grid(1, 1000, 4)
    assert (g.width, g.size) == (250, 4)
    assert [g.segment(k) for k in (0, 1, 250, 251, 1000, 1001)] == [-1, 0, 0, 1, 3, 4]
    assert g.bounds(0) == (1, 250) and g.bounds(3) == (751, 1000)
    uneven = segments.grid(1, 10, 4)
    assert (uneven.width, uneven.size, uneven.bounds(3)) == (3, 4, (10, 10))
    assert segments.grid(None, None, 4) is None
    assert Grid.from_json(g.to_json()) == g


def test_grid_is_the_top_level_rows_bisect_would_split():
    g = segments.grid(17, 123_456, 33)
    assert g.width == rows.split(17, 123_456, 33)
    assert g.bounds(g.size - 1)[1] == 123_456 and g.size <= 33


def test_block_grid_is_aligned_on_the_evidence_blocks():
    g = segments.block_grid(70_000, 200_000, 16)
    assert (g.lo, g.width, g.size) == (65_536, 65_536, 3)
    assert g.bounds(2) == (196_608, 262_143)


def test_parts_aim_at_rows_per_segment_within_limits():
    assert segments.parts_for(6096, 100, 1024) == 61
    assert segments.parts_for(0, 100, 1024) == 1
    assert segments.parts_for(10**9, 2000, 1024) == 1024


def test_runs_merge_consecutive_in_range_segments():
    assert segments.runs([7, 3, 4, 5, 9, -1, 12, 10], size=12) == [(3, 5), (7, 7), (9, 10)]
    g = segments.grid(1, 1000, 4)
    assert segments.run_bounds(g, (1, 3)) == (251, 1000, 3)


def test_changed_segments_by_count_or_rows_written_since():
    then = {0: 10, 1: 10, 2: 10, 3: 5}
    now = {0: (10, 0), 1: (10, 1), 2: (9, 0), 4: (1, 1), -1: (2, 2)}
    assert segments.changed_segments(then, now) == {1, 2, 3, 4, -1}


def test_dirty_is_mismatched_then_or_changed_since_on_either_side():
    then = ({0: 5, 1: 5, 2: 5, 3: 5}, {0: 5, 1: 5, 2: 5, 3: 5})
    now = ({0: (5, 0), 1: (5, 1), 2: (5, 0), 3: (5, 0)}, {0: (5, 0), 1: (5, 0), 2: (4, 0), 3: (5, 0)})
    assert segments.dirty_segments([0], then, now) == {0, 1, 2}
    unchanged = ({0: (5, 0), 1: (5, 0), 2: (5, 0), 3: (5, 0)},) * 2
    assert segments.dirty_segments([], then, unchanged) == set()


def test_a_truncate_on_one_side_makes_every_segment_of_it_dirty():
    then = ({0: 5, 1: 5, 2: 5}, {0: 5, 1: 5, 2: 5})
    truncated = ({0: (5, 0), 1: (5, 0), 2: (5, 0)}, {})  # the target's scan finds no row
    assert segments.dirty_segments([], then, truncated) == {0, 1, 2}


def test_a_delete_compensated_by_an_insert_is_still_seen():
    # Same count in the segment, but the new row was written since the snapshot.
    assert segments.changed_segments({0: 3}, {0: (3, 1)}) == {0}


# --- transaction ids -------------------------------------------------------------------------

def test_snapshot_text_and_visibility():
    snap = Snapshot.parse("100:105:101,103")
    assert (snap.xmin, snap.xmax, snap.xip) == (100, 105, (101, 103))
    assert [snap.visible(x) for x in (99, 100, 101, 102, 103, 104, 105)] == [True, True, False, True, False, True,
                                                                            False]
    assert Snapshot.parse("7:7:") == Snapshot(7, 7, ())


@pytest.mark.parametrize("xid, reference, full", [
    (5, 10, 5),
    (10, 10, 10),
    (4_294_967_290, (1 << 32) + 3, 4_294_967_290),          # just before the wrap, read after it
    (3, (1 << 32) + 3, (1 << 32) + 3),
    (2_000_000_000, (5 << 32) + 100, (4 << 32) + 2_000_000_000),
])
def test_full_xid_takes_the_epoch_of_the_reference(xid, reference, full):
    assert segments.full_xid(xid, reference) == full


def age(xid8: int, reference8: int) -> int:
    """What PostgreSQL's age() answers: (int32)(reference - xid) on the low 32 bits."""
    diff = (reference8 - xid8) % (1 << 32)
    return diff - (1 << 32) if diff >= 1 << 31 else diff


@pytest.mark.parametrize("horizon, reference", [
    (1000, 1100), ((1 << 32) - 20, (1 << 32) + 30), (5 << 32, (5 << 32) + 7)])
def test_written_since_matches_the_64_bit_test_across_the_wrap(horizon, reference):
    window = segments.change_window(reference, horizon)
    for xid8 in range(horizon - 40, reference):
        assert segments.written_since(age(xid8, reference), window) == (xid8 >= horizon), xid8
        if xid8 >= horizon:
            assert segments.full_xid(xid8 % (1 << 32), reference) == xid8


def test_frozen_and_ancient_xmins_count_as_old():
    window = segments.change_window(10_000, 9_000)
    assert not segments.written_since(segments.AGE_MAX, window)          # frozen or bootstrap xid
    assert not segments.written_since(age(10_000 - (3 << 30), 10_000), window)  # 3*2^30 back: negative age
    assert segments.written_since(age(10_000 - (1 << 32) - 5, 10_000), window)  # aliased: recomputed for nothing


def test_age_reference_and_window_limits():
    assert segments.age_reference(5000, 3) == 5003
    with pytest.raises(ValueError):
        segments.age_reference(5000, segments.AGE_MAX)
    assert segments.change_window(100, 90) == 10
    assert segments.change_window(100, 101) is None
    assert segments.change_window(segments.WINDOW_MAX + 2, 1) is None


# --- queries and decisions -------------------------------------------------------------------

def test_scan_query_groups_by_segment_counts_rows_written_since_without_row_text():
    q = text(incremental.scan_query(rows.shape(PUNCH, PUNCH), Grid(1, 1000, 250), 77))
    assert 'CASE WHEN k < 1 THEN -1 WHEN k > 1000 THEN 4 ELSE (k - 1) / 250 END' in q
    assert 'count(*) FILTER (WHERE a BETWEEN 0 AND 77)' in q
    assert 'SELECT "punch_id" AS k, age(xmin) AS a FROM "public"."punch" OFFSET 0' in q
    assert "ROW(" not in q
    hashed = text(incremental.scan_query(rows.shape(NO_KEY, NO_KEY), Grid(0, rows.HASH_BUCKETS - 1, 1024), 5))
    assert 'hashtextextended(ROW("terminal_code", "raw_line")::text, 0) & 1048575) AS k' in hashed


def test_outside_ranges_cover_keys_beyond_the_grid_on_either_side():
    g = Grid(100, 199, 50)
    found = [(-1, 2, 0, 90, 95), (0, 50, 0, 100, 149), (2, 3, 3, 205, 210), (-1, 1, 1, 80, 80), (2, 1, 1, 230, 230)]
    assert incremental.outside_ranges(g, found) == [(80, 99), (200, 230)]
    assert incremental.outside_ranges(g, found[1:2]) == []


def base_of(s, **changes):
    return {"key": incremental.key_sql(s), "columns": list(s.columns), "grid": {"lo": 1, "hi": 10, "width": 5},
            "kind": "segments", **changes}


def test_full_reasons():
    punch, hashed, small = rows.shape(PUNCH, PUNCH), rows.shape(NO_KEY, NO_KEY), rows.shape(REASON, REASON)
    assert incremental.key_sql(punch) == '"punch_id"'
    assert incremental.key_sql(hashed).startswith('(hashtextextended(ROW("terminal_code", "raw_line")::text, 0)')
    assert incremental.full_reason(punch, base_of(punch), False) is None
    assert incremental.full_reason(hashed, base_of(hashed), False) is None
    assert "no baseline" in incremental.full_reason(punch, None, False)
    assert "changed" in incremental.full_reason(punch, base_of(punch, columns=["punch_id"]), False)
    assert "changed" in incremental.full_reason(punch, base_of(punch, key='"employee_id"'), False)
    assert "empty" in incremental.full_reason(punch, base_of(punch, grid=None), False)
    assert "evidence" in incremental.full_reason(punch, base_of(punch), True)
    assert incremental.full_reason(punch, base_of(punch, kind="blocks"), True) is None
    assert "small" in incremental.full_reason(small, base_of(small), False)


def test_incremental_result_reports_its_figures():
    r = incremental.IncrementalResult("a/b", "public.punch", "checksums", 10, 10, 0.5, (), 3, mode="incremental",
                                      segments=61, dirty=2, outside=1)
    assert r.to_json()["mode"] == "incremental" and r.to_json()["dirty"] == 2 and r.status == "ok"


def test_reference_sql_reads_the_snapshot_xmax_and_its_age():
    assert "pg_snapshot_xmax(pg_current_snapshot())" in incremental.REFERENCE_SQL
    assert "age((x::text::bigint % 4294967296)::text::xid)" in incremental.REFERENCE_SQL


def test_a_baseline_of_another_version_or_database_is_refused():
    d = SimpleNamespace(source=SimpleNamespace(server="src-db", dbname="presenze"),
                        target=SimpleNamespace(server="tgt-db", dbname="presenze"))
    base = {"version": incremental.VERSION, "source": {"server": "src-db", "dbname": "presenze"},
            "target": {"server": "tgt-db", "dbname": "presenze"}}
    incremental.check_baseline(base, d)
    for wrong in ({"version": incremental.VERSION - 1}, {"target": {"server": "tgt-db", "dbname": "other"}}):
        with pytest.raises(MigrateError, match="take it again"):
            incremental.check_baseline({**base, **wrong}, d)
