"""Rows: counts, then checksums computed inside each database over key-range segments,
bisected down to the exact differing primary keys.

A segment is a range [lo, hi] of a bigint *key expression*: the first primary-key column when
it is an integer (so a segment is an index range scan), else a 20-bit hash of the key, or of
the whole row for a table without a primary key (then a table is a multiset of rows). Each
level asks both sides, at once, for count and sum of a 64-bit row hash per sub-segment; only
the segments that disagree go one level down. At the bottom (a few thousand rows) both sides
list key and one md5 per column, so a difference is named by key and column, never by value.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from psycopg import sql

from migrate.transfer.catalog import INTEGER_TYPES, Table
from migrate.verify.model import Difference, TableResult
from migrate.verify.probes import Pair

HASH_BUCKETS = 1 << 20
LEAF_ROWS = 2000          # at or below this many rows a segment is listed, not split again
FAN_OUT = 32              # sub-segments per level below the top
TOP_SEGMENTS_MAX = 1024   # the top level aims at LEAF_ROWS per segment, up to this many


@dataclass(frozen=True)
class Shape:
    """How one table is read on both sides: the columns both have, the key, the key expression."""

    facts: Table
    columns: tuple[str, ...]

    @property
    def table(self) -> sql.Composable:
        return sql.Identifier(self.facts.schema, self.facts.name)

    @property
    def integer_key(self) -> bool:
        return bool(self.facts.key) and self.facts.types[self.facts.columns.index(self.facts.key[0])] in INTEGER_TYPES

    def key_expression(self) -> sql.Composable:
        if self.integer_key:
            return sql.Identifier(self.facts.key[0])
        hashed = self.facts.key or self.columns
        return sql.SQL("(hashtextextended({}::text, 0) & {})").format(row_text(hashed), sql.Literal(HASH_BUCKETS - 1))

    def row_hash(self) -> sql.Composable:
        return sql.SQL("hashtextextended({}::text, 0)").format(row_text(self.columns))


def row_text(columns) -> sql.Composable:
    """ROW(a, b, ...): its text form quotes and escapes, so NULL, '' and ' ' stay distinct."""
    return sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in columns))


def shape(source: Table, target: Table) -> Shape:
    common = tuple(c for c in source.columns if c in target.columns)  # the rest is a schema difference
    return Shape(source, common)


# --- queries (pure: tested without a database) -----------------------------------------------

def count_query(s: Shape) -> sql.Composable:
    return sql.SQL("SELECT count(*) FROM {}").format(s.table)


def bounds_query(s: Shape) -> sql.Composable:
    return sql.SQL("SELECT min({k}), max({k}) FROM {t}").format(k=s.key_expression(), t=s.table)


def segments_query(s: Shape) -> sql.Composable:
    """count and hash sum per sub-segment of [lo, hi]; params: lo, width, lo, hi."""
    return sql.SQL(
        "SELECT ({k} - %s::bigint) / %s::bigint AS seg, count(*), coalesce(sum({h}), 0)"
        " FROM {t} WHERE {k} >= %s::bigint AND {k} <= %s::bigint GROUP BY 1"
    ).format(k=s.key_expression(), h=s.row_hash(), t=s.table)


def leaf_query(s: Shape) -> sql.Composable:
    """Key and per-column md5 of every row of [lo, hi]; params: lo, hi."""
    keys = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in s.facts.key)
    cols = sql.SQL(", ").join(sql.SQL("md5({}::text)").format(sql.Identifier(c)) for c in s.columns)
    return sql.SQL("SELECT ARRAY[{keys}], ARRAY[{cols}] FROM {t} WHERE {k} >= %s::bigint AND {k} <= %s::bigint"
                   ).format(keys=keys, cols=cols, t=s.table, k=s.key_expression())


def multiset_leaf_query(s: Shape) -> sql.Composable:
    """Row md5 and multiplicity of every distinct row of [lo, hi]; params: lo, hi."""
    return sql.SQL("SELECT md5({r}::text), count(*) FROM {t} WHERE {k} >= %s::bigint AND {k} <= %s::bigint"
                   " GROUP BY 1").format(r=row_text(s.columns), t=s.table, k=s.key_expression())


# --- comparison ------------------------------------------------------------------------------

def compare_counts(pair: Pair, s: Shape, database: str) -> TableResult:
    started = time.monotonic()
    (src,), (tgt,) = (r[0] for r in pair.both(count_query(s)))
    diffs = [] if src == tgt else [count_difference(database, s, src, tgt)]
    return TableResult(database, s.facts.qualified, "counts", src, tgt, time.monotonic() - started, tuple(diffs), 1)


def count_difference(database: str, s: Shape, src: int, tgt: int) -> Difference:
    return Difference("rows", database, s.facts.qualified, "row_count_differs",
                      "run `migrate verify --depth full` to find the keys, then re-copy them",
                      detail=f"source {src} rows, target {tgt} rows")


def compare_checksums(pair: Pair, s: Shape, database: str) -> TableResult:
    started, before = time.monotonic(), pair.queries
    lo, hi = table_bounds(pair, s)
    counts = {"source": 0, "target": 0}
    diffs: list[Difference] = []
    if lo is not None:
        top = top_segments(s.facts.estimated_rows)
        diffs = bisect(pair, s, database, lo, hi, top, counts)
    method = "checksums" if s.facts.key else "multiset"
    return TableResult(database, s.facts.qualified, method, counts["source"], counts["target"],
                       time.monotonic() - started, tuple(diffs), pair.queries - before)


def table_bounds(pair: Pair, s: Shape) -> tuple[int | None, int | None]:
    if not s.integer_key:
        return 0, HASH_BUCKETS - 1  # a hash bucket range; an empty table simply has no segments
    src, tgt = pair.both(bounds_query(s))
    lows = [r[0] for r in (src[0], tgt[0]) if r[0] is not None]
    highs = [r[1] for r in (src[0], tgt[0]) if r[1] is not None]
    return (min(lows), max(highs)) if lows else (None, None)


def top_segments(estimated_rows: int) -> int:
    return max(1, min(TOP_SEGMENTS_MAX, math.ceil(estimated_rows / LEAF_ROWS)))


def split(lo: int, hi: int, parts: int) -> int:
    """The width of each of at most `parts` sub-segments covering [lo, hi]."""
    return max(1, math.ceil((hi - lo + 1) / parts))


def bisect(pair: Pair, s: Shape, database: str, lo: int, hi: int, parts: int, counts: dict,
           top: bool = True) -> list[Difference]:
    width = split(lo, hi, parts)
    src, tgt = pair.both(segments_query(s), params=(lo, width, lo, hi))
    src_segs, tgt_segs = {r[0]: (r[1], r[2]) for r in src}, {r[0]: (r[1], r[2]) for r in tgt}
    if top:
        counts["source"] = sum(c for c, _ in src_segs.values())
        counts["target"] = sum(c for c, _ in tgt_segs.values())
    diffs = []
    for seg in sorted(set(src_segs) | set(tgt_segs)):
        if src_segs.get(seg) == tgt_segs.get(seg):
            continue
        seg_lo, seg_hi = lo + seg * width, min(hi, lo + (seg + 1) * width - 1)
        rows = max(src_segs.get(seg, (0, 0))[0], tgt_segs.get(seg, (0, 0))[0])
        if rows <= LEAF_ROWS or seg_lo == seg_hi:
            diffs += compare_leaf(pair, s, database, seg_lo, seg_hi)
        else:
            diffs += bisect(pair, s, database, seg_lo, seg_hi, FAN_OUT, counts, top=False)
    return diffs


def compare_leaf(pair: Pair, s: Shape, database: str, lo: int, hi: int) -> list[Difference]:
    if not s.facts.key:
        src, tgt = pair.both(multiset_leaf_query(s), params=(lo, hi))
        return multiset_differences(database, s.facts.qualified, dict(src), dict(tgt))
    src, tgt = pair.both(leaf_query(s), params=(lo, hi))
    return row_differences(database, s, {tuple(k): h for k, h in src}, {tuple(k): h for k, h in tgt}, (lo, hi))


def row_differences(database: str, s: Shape, src: dict, tgt: dict, segment: tuple[int, int]) -> list[Difference]:
    """Rows keyed by primary key on each side -> one difference per key."""
    name, key_cols = s.facts.qualified, s.facts.key
    diffs = []
    for key in sorted(set(src) | set(tgt), key=_sortable):
        named = dict(zip(key_cols, key))
        if key not in tgt:
            diffs.append(Difference("rows", database, name, "missing_on_target", remedy_copy(s, key, segment), named))
        elif key not in src:
            diffs.append(Difference("rows", database, name, "extra_on_target",
                                    "delete it on the target (it is not in the source), or find what wrote"
                                    " to the target during the freeze", named))
        elif src[key] != tgt[key]:
            changed = tuple(c for c, a, b in zip(s.columns, src[key], tgt[key]) if a != b)
            diffs.append(Difference("rows", database, name, "changed", remedy_copy(s, key, segment), named, changed))
    return diffs


def _sortable(key: tuple) -> tuple:
    return tuple((0, int(k), "") if k is not None and k.lstrip("-").isdigit() else (1, 0, k or "") for k in key)


def remedy_copy(s: Shape, key: tuple, segment: tuple[int, int]) -> str:
    if s.integer_key:
        return (f"re-copy {s.facts.qualified} rows with {s.facts.key[0]} in [{segment[0]}, {segment[1]}]"
                " from the source")
    return f"re-copy this row of {s.facts.qualified} from the source"


def multiset_differences(database: str, table: str, src: dict, tgt: dict) -> list[Difference]:
    """A table without primary key: rows by md5 and multiplicity. The key is a hash prefix."""
    diffs = []
    for digest in sorted(set(src) | set(tgt)):
        a, b = src.get(digest, 0), tgt.get(digest, 0)
        if a == b:
            continue
        problem = "missing_on_target" if b < a else ("duplicated_on_target" if a else "extra_on_target")
        diffs.append(Difference("rows", database, table, problem,
                                f"re-copy {table} (no primary key: truncate it on the target and copy it again)",
                                {"row_md5": digest[:16]}, detail=f"{a} on source, {b} on target"))
    return diffs
