"""Verification in a warm wave's freeze that recomputes only what may have changed since a
baseline taken during the sync, and still judges every row at the fenced position.

Baseline (source live, subscription streaming): per worker, a REPEATABLE READ session on the
target, whose first statement records its snapshot, then one on the source (a later snapshot).
Per table, the top segments of its key (`segments.Grid`, as `rows.bisect`'s top level, or the
evidence digest's blocks for an evidence table) with count and hash sum on both sides; the
segments that differed, the rows per segment on each side, both snapshots. Names, counts,
hashes and xids only: never a value.

Freeze (`compare_table`, or `verify_since` for one database): one scan per side groups the rows
by segment, counting them and those written since that side's baseline snapshot (see
`segments`). A segment that was equal at the baseline and that neither side changed since is
equal now; every other one (differed then, changed since on either side, or keys beyond the
baseline's range) is compared exactly with `rows.bisect`, which names keys and columns as a full
comparison would. Nothing is installed on either side: a TRUNCATE, like any delete, shows as a
lower count. An evidence table's block digests are recomputed for its changed blocks only and
chained with the baseline's others: the same digest a full pass gives. A table is compared in
full when it has no usable baseline, its shape changed, it has a hashed key and is small (or
would need many scans), or the baseline is too many xids back.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from psycopg import sql

from migrate.config import Database, Inventory
from migrate.errors import MigrateError
from migrate.transfer import catalog
from migrate.transfer.pool import Pool, worker_count
from migrate.verify import evidence, probes, rows, segments
from migrate.verify.model import TableResult
from migrate.verify.segments import Grid, Snapshot

VERSION = 2                # of the baseline's JSON: a baseline of another version is taken again
SIDES = ("source", "target")
HASH_FULL_ROWS = 100_000   # below this, a hashed key's table is compared in full (one pass, as cheap)
HASH_MAX_RUNS = 4          # each range of a hashed key is a scan of the table: beyond this, full
SNAPSHOT_SQL = "SELECT pg_current_snapshot()::text"
# The session's snapshot xmax, and the age of its low 32 bits: age() measures from one xid read
# once per transaction, at or after that xmax (see segments.age_reference).
REFERENCE_SQL = ("SELECT x::text::bigint, age((x::text::bigint % 4294967296)::text::xid)"
                 " FROM (SELECT pg_snapshot_xmax(pg_current_snapshot()) AS x) s")


@dataclass(frozen=True)
class IncrementalResult(TableResult):
    mode: str = "full"       # incremental or full
    reason: str = ""         # why full, or a note
    segments: int = 0        # top segments (or evidence blocks) of the baseline
    dirty: int = 0           # of which recomputed
    outside: int = 0         # key ranges beyond the baseline's, compared exactly

    def to_json(self) -> dict:
        return {**super().to_json(), "mode": self.mode, "reason": self.reason, "segments": self.segments,
                "dirty": self.dirty, "outside": self.outside}


@dataclass(frozen=True)
class Plan:
    grid: Grid
    now: tuple[dict, dict]            # per side {seg: (rows, rows written since the baseline)}
    outside: list[tuple[int, int]]    # key ranges below / above the grid holding rows now


class SnapshotPair(probes.Pair):
    def __init__(self, source: probes.Session, target: probes.Session, snapshots: dict):
        super().__init__(source, target)
        self.snapshots = snapshots


# --- queries (pure) --------------------------------------------------------------------------

def scan_query(s: rows.Shape, g: Grid, window: int) -> sql.Composable:
    """Per segment of the grid (-1 below, size above): rows, rows written within `window` xids,
    lowest and highest key. One pass, no row text."""
    return sql.SQL(
        "SELECT CASE WHEN k < {lo} THEN -1 WHEN k > {hi} THEN {size} ELSE (k - {lo}) / {w} END, count(*),"
        " count(*) FILTER (WHERE a BETWEEN 0 AND {window}), min(k), max(k)"
        " FROM (SELECT {k} AS k, age(xmin) AS a FROM {t} OFFSET 0) r GROUP BY 1").format(
        k=s.key_expression(), t=s.table, lo=sql.Literal(g.lo), hi=sql.Literal(g.hi), size=sql.Literal(g.size),
        w=sql.Literal(g.width), window=sql.Literal(window))


def scan_counts(found: list[tuple]) -> dict[int, tuple[int, int]]:
    return {seg: (count, written) for seg, count, written, _, _ in found}


def outside_ranges(g: Grid, found: list[tuple]) -> list[tuple[int, int]]:
    """Key ranges beyond the grid that hold rows on either side (rows of both scans)."""
    below = [lo for seg, _, _, lo, _ in found if seg == -1]
    above = [hi for seg, _, _, _, hi in found if seg == g.size]
    return ([(min(below), g.lo - 1)] if below else []) + ([(g.hi + 1, max(above))] if above else [])


def key_sql(s: rows.Shape) -> str:
    """The key expression as text: a baseline's segments are ranges of it, a freeze that computes
    the key otherwise compares in full."""
    return s.key_expression().as_string(None)


def full_reason(s: rows.Shape, base: dict | None, is_evidence: bool) -> str | None:
    """Why a table is compared in full whatever the freeze finds, or None."""
    if base is None:
        return "no baseline of this table"
    if base["key"] != key_sql(s) or base["columns"] != list(s.columns):
        return "the table's key or columns changed since the baseline"
    if base["grid"] is None:
        return "empty at the baseline"
    if is_evidence and base["kind"] != "blocks":
        return "evidence table without block digests in the baseline"
    if not s.integer_key and s.facts.estimated_rows < HASH_FULL_ROWS:
        return "hashed key on a small table: one full pass is as cheap"
    return None


# --- baseline --------------------------------------------------------------------------------

def open_snapshot_pair(inv: Inventory, d: Database) -> SnapshotPair:
    """The target's session first, its snapshot read by its first statement, then the source's."""
    target = probes.Session(inv, d.target.server, d.target.dbname)
    try:
        snapshots = {"target": target.rows(SNAPSHOT_SQL)[0][0]}
        source = probes.Session(inv, d.source.server, d.source.dbname)
    except BaseException:
        target.close()
        raise
    try:
        snapshots["source"] = source.rows(SNAPSHOT_SQL)[0][0]
        return SnapshotPair(source, target, snapshots)
    except BaseException:
        source.close()
        target.close()
        raise


def common_tables(pair: probes.Pair) -> list[tuple[catalog.Table, catalog.Table]]:
    src, tgt = (probes.by_name(catalog.tables(found)) for found in pair.both(catalog.TABLES_SQL))
    return [(src[t], tgt[t]) for t in src if t in tgt]


def baseline(inv: Inventory, d: Database, *, segment_rows: int = rows.LEAF_ROWS, workers: int | None = None) -> dict:
    """Every table's segments on both sides, during the sync. JSON: journal it, pass it to the
    freeze's verification."""
    started = time.monotonic()
    first = open_snapshot_pair(inv, d)
    try:
        tables = sorted(common_tables(first), key=lambda t: -t[0].estimated_rows)
    finally:
        first.close()
    names = {evidence.qualified(t) for t in d.evidence_tables}

    def one(pair: SnapshotPair, item):
        return baseline_table(pair, rows.shape(*item), item[0].qualified in names, segment_rows)

    size = worker_count(workers or inv.spec.transfer.workers)
    with Pool(size, lambda: open_snapshot_pair(inv, d), name="baseline") as pairs:
        found = dict(pairs.map(one, tables))
    return {"version": VERSION, "source": _where(d.source), "target": _where(d.target), "segment_rows": segment_rows,
            "taken": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 3), "tables": dict(sorted(found.items()))}


def _where(ref) -> dict:
    return {"server": ref.server, "dbname": ref.dbname}


def baseline_table(pair: SnapshotPair, s: rows.Shape, is_evidence: bool, segment_rows: int) -> tuple[str, dict]:
    entry = {"key": key_sql(s), "columns": list(s.columns), "snapshots": dict(pair.snapshots)}
    if is_evidence and s.integer_key:
        entry.update(_blocks_baseline(pair, s))
    else:
        entry.update(_segments_baseline(pair, s, segment_rows))
    return s.facts.qualified, entry


def _segments_baseline(pair: probes.Pair, s: rows.Shape, segment_rows: int) -> dict:
    lo, hi = rows.table_bounds(pair, s)
    g = segments.grid(lo, hi, segments.parts_for(s.facts.estimated_rows, segment_rows, rows.TOP_SEGMENTS_MAX))
    sides = ([], [])
    if g is not None:
        sides = pair.both(rows.segments_query(s), params=(g.lo, g.width, g.lo, g.hi))
    return _summary("segments", g, *({seg: (count, total) for seg, count, total in side} for side in sides))


def _blocks_baseline(pair: probes.Pair, s: rows.Shape) -> dict:
    src, tgt = pair.both(evidence.bounds_query(s.facts))
    lows = [r[0] for r in (src[0], tgt[0]) if r[0] is not None]
    highs = [r[1] for r in (src[0], tgt[0]) if r[1] is not None]
    g = segments.block_grid(min(lows), max(highs), evidence.BLOCK_BITS) if lows else None
    found = _block_digests(pair, s, g, range(g.size) if g else ())
    summary = _summary("blocks", g, *found)
    summary["digests"] = {side: [[seg, h] for seg, (_, h) in sorted(blocks.items())]
                          for side, blocks in zip(SIDES, found)}
    return summary


def _block_digests(pair: probes.Pair, s: rows.Shape, g: Grid | None, segs) -> tuple[dict, dict]:
    """{seg: (rows, sha256)} of the blocks that hold rows, per side."""
    query, found = evidence.block_query(s.facts, s.columns, True), ({}, {})
    for seg in segs:
        first, last = g.bounds(seg)
        for side, (count, digest) in zip(found, (r[0] for r in pair.both(query, params=(first, last + 1)))):
            if count:
                side[seg] = (count, digest)
    return found


def _summary(kind: str, g: Grid | None, src: dict, tgt: dict) -> dict:
    """src/tgt: {seg: (rows, hash)}; the hashes are compared, only the counts are kept."""
    return {"kind": kind, "grid": g.to_json() if g else None,
            "mismatched": sorted(seg for seg in set(src) | set(tgt) if src.get(seg) != tgt.get(seg)),
            "counts": {side: [[seg, v[0]] for seg, v in sorted(found.items())]
                       for side, found in zip(SIDES, (src, tgt))},
            "rows": {side: sum(v[0] for v in found.values()) for side, found in zip(SIDES, (src, tgt))}}


# --- the freeze ------------------------------------------------------------------------------

def check_baseline(base: dict, d: Database) -> None:
    ours = (VERSION, _where(d.source), _where(d.target))
    if (base.get("version"), base.get("source"), base.get("target")) != ours:
        raise MigrateError(f"the baseline given is not one of {d.source.server}/{d.source.dbname} ->"
                           f" {d.target.server}/{d.target.dbname} (version {VERSION}): take it again")


def compare_table(pair: probes.Pair, s: rows.Shape, database: str, base: dict | None,
                  is_evidence: bool) -> tuple[IncrementalResult, list | None]:
    """One table at the freeze: (result, [source digest, target digest] for an evidence table)."""
    started, before = time.monotonic(), pair.queries
    reason = full_reason(s, base, is_evidence)
    plan = _plan(pair, s, base) if reason is None else reason
    if isinstance(plan, str):
        done = plan
    else:
        done = (_compare_blocks if base["kind"] == "blocks" else _compare_segments)(pair, s, database, base, plan)
    if isinstance(done, str):
        return _full(pair, s, database, is_evidence, done, started, before)
    result, digests, figures = done
    return _result(result, started, before, pair, mode="incremental", **figures), digests


TOO_FAR = "the baseline is too many transactions back (or age() gives no reference)"


def _window(reference: tuple, snapshot: str) -> int | None:
    """How many xids back from age()'s reference the baseline snapshot's horizon lies."""
    try:
        return segments.change_window(segments.age_reference(*reference), Snapshot.parse(snapshot).xmin)
    except ValueError:
        return None


def _plan(pair: probes.Pair, s: rows.Shape, base: dict) -> Plan | str:
    g = Grid.from_json(base["grid"])
    windows = [_window(r[0], base["snapshots"][side]) for side, r in zip(SIDES, pair.both(REFERENCE_SQL))]
    if None in windows:
        return TOO_FAR
    src, tgt = pair.both(scan_query(s, g, windows[0]), scan_query(s, g, windows[1]))
    return Plan(g, (scan_counts(src), scan_counts(tgt)), outside_ranges(g, src + tgt))


def _then(base: dict) -> tuple[dict, dict]:
    return tuple({seg: count for seg, count in base["counts"][side]} for side in SIDES)


def _compare_segments(pair: probes.Pair, s: rows.Shape, database: str, base: dict, plan: Plan):
    g = plan.grid
    dirty = segments.dirty_segments(base["mismatched"], _then(base), plan.now)
    ranges = [segments.run_bounds(g, run) for run in segments.runs(dirty, g.size)]
    ranges += [(lo, hi, segments.parts_for(hi - lo + 1, g.width, rows.TOP_SEGMENTS_MAX)) for lo, hi in plan.outside]
    if not s.integer_key and len(ranges) > HASH_MAX_RUNS:
        return f"{len(ranges)} ranges of a hashed key to scan: one full pass is cheaper"
    diffs, scratch = [], {}
    for lo, hi, parts in ranges:
        diffs += rows.bisect(pair, s, database, lo, hi, parts, scratch, top=False)
    counts = [sum(c for c, _ in side.values()) for side in plan.now]
    result = TableResult(database, s.facts.qualified, "checksums" if s.facts.key else "multiset", *counts, 0.0,
                         tuple(diffs))
    figures = {"segments": g.size, "dirty": len([seg for seg in dirty if 0 <= seg < g.size]),
               "outside": len(plan.outside)}
    return result, None, figures


def _compare_blocks(pair: probes.Pair, s: rows.Shape, database: str, base: dict, plan: Plan):
    """Each side's blocks: the baseline's where that side did not change, recomputed elsewhere."""
    g, then = plan.grid, _then(base)
    changed = segments.changed_segments(then[0], plan.now[0]) | segments.changed_segments(then[1], plan.now[1])
    fresh = _block_digests(pair, s, g, sorted(seg for seg in changed if 0 <= seg < g.size))
    blocks = []
    for side, new in zip(SIDES, fresh):
        kept = {seg: (count, h) for (seg, count), (_, h) in zip(base["counts"][side], base["digests"][side])
                if seg not in changed}
        blocks.append({g.bounds(seg)[0]: v for seg, v in {**kept, **new}.items()})
    for lo, hi in plan.outside:
        _outside_blocks(pair, s, lo, hi, blocks)
    src_digest, tgt_digest = (evidence.chain(s.facts, s.columns, [(start, *b[start]) for start in sorted(b)])
                              for b in blocks)
    diffs = []
    for start in sorted(set(blocks[0]) | set(blocks[1])):
        if blocks[0].get(start) != blocks[1].get(start):
            end = start + (1 << evidence.BLOCK_BITS)
            diffs += rows.bisect(pair, s, database, start, end - 1, rows.FAN_OUT, {}, top=False)
    result = TableResult(database, s.facts.qualified, "evidence blocks", src_digest["rows"], tgt_digest["rows"],
                         0.0, tuple(diffs))
    recomputed = [seg for seg in changed | set(base["mismatched"]) if 0 <= seg < g.size]
    figures = {"segments": g.size, "dirty": len(recomputed), "outside": len(plan.outside)}
    return result, [src_digest, tgt_digest], figures


def _outside_blocks(pair: probes.Pair, s: rows.Shape, lo: int, hi: int, blocks: list[dict]) -> None:
    query = evidence.block_query(s.facts, s.columns, True)
    for start, end in evidence.block_ranges(lo, hi):
        for side, (count, digest) in zip(blocks, (r[0] for r in pair.both(query, params=(start, end)))):
            if count:
                side[start] = (count, digest)


def _full(pair: probes.Pair, s: rows.Shape, database: str, is_evidence: bool, reason: str, started: float,
          before: int) -> tuple[IncrementalResult, list | None]:
    if is_evidence:
        result, *digests = evidence.compare_table(pair, s, database)
    else:
        result, digests = rows.compare_checksums(pair, s, database), None
    return _result(result, started, before, pair, mode="full", reason=reason), digests


def _result(result: TableResult, started: float, before: int, pair: probes.Pair, **figures) -> IncrementalResult:
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(TableResult)}
    fields.update(seconds=time.monotonic() - started, queries=pair.queries - before)
    return IncrementalResult(**fields, **figures)


def source_digest(session: probes.Session, s: rows.Shape, base: dict | None) -> dict:
    """One evidence table's digest on the source: the same as `evidence.digest`'s."""
    window = None
    if full_reason(s, base, True) is None:
        window = _window(session.rows(REFERENCE_SQL)[0], base["snapshots"]["source"])
    if window is None:
        return evidence.digest(session, s.facts, s.columns)
    g = Grid.from_json(base["grid"])
    found = session.rows(scan_query(s, g, window))
    changed = segments.changed_segments(_then(base)[0], scan_counts(found))
    blocks = {g.bounds(seg)[0]: (count, h) for (seg, count), (_, h) in zip(base["counts"]["source"],
                                                                           base["digests"]["source"])
              if seg not in changed}
    ranges = [(g.bounds(seg)[0], g.bounds(seg)[1] + 1) for seg in sorted(changed) if 0 <= seg < g.size]
    ranges += [r for lo, hi in outside_ranges(g, found) for r in evidence.block_ranges(lo, hi)]
    query = evidence.block_query(s.facts, s.columns, True)
    for start, end in ranges:
        count, digest = session.rows(query, (start, end))[0]
        if count:
            blocks[start] = (count, digest)
    return evidence.chain(s.facts, s.columns, [(start, *blocks[start]) for start in sorted(blocks)])


def verify_since(inv: Inventory, d: Database, base: dict, *, database: str | None = None, bus=None,
                 workers: int | None = None) -> list[IncrementalResult]:
    """Every common table of one database at the freeze, against `base` (from `baseline`)."""
    check_baseline(base, d)
    database = database or f"{d.source.server}/{d.source.dbname}"
    names = {evidence.qualified(t) for t in d.evidence_tables}
    first = probes.open_pair(inv, d)
    try:
        tables = sorted(common_tables(first), key=lambda t: -t[0].estimated_rows)
    finally:
        first.close()

    def one(pair: probes.Pair, item):
        s = rows.shape(*item)
        result, _ = compare_table(pair, s, database, base["tables"].get(s.facts.qualified), s.facts.qualified in names)
        if bus is not None:
            bus.emit("verify_table", database=database, table=result.table, status=result.status, mode=result.mode,
                     segments=result.segments, dirty=result.dirty, seconds=round(result.seconds, 3))
        return result

    with Pool(worker_count(workers or inv.spec.transfer.workers), lambda: probes.open_pair(inv, d), name="verify") as pairs:
        return sorted(pairs.map(one, tables), key=lambda r: r.table)
