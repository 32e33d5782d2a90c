"""Legal-evidence digests: one SHA-256 over every row of a table, the same whatever the rows'
physical order, taken on the source before the copy and on the target after.

Rows are read in blocks of 65,536 primary-key values (an index range scan each); inside a
block the row texts are ordered by the key (or byte-wise, COLLATE "C", when the key is not all
integers: another collation on the target must not change the order) and hashed inside the
database; the block digests are chained here. A block's boundaries depend on key values only,
so equal tables give equal digests. A chain resists forgery where a sum or XOR of row hashes
would not.

On an evidence table the blocks also serve as the top level of the row comparison: equal
blocks are equal rows (one pass per side gives both the digest and the comparison); a block
that differs is bisected like any other segment.
"""

from __future__ import annotations

import hashlib
import time

from psycopg import sql

from migrate.transfer.catalog import INTEGER_TYPES, Table
from migrate.verify import rows
from migrate.verify.model import Difference, TableResult
from migrate.verify.probes import Pair, Session

VERSION = "migrate-evidence-v1"
BLOCK_BITS = 16


def qualified(name: str) -> str:
    return name if "." in name else f"public.{name}"


def integer_key(facts: Table) -> bool:
    return bool(facts.key) and all(facts.types[facts.columns.index(k)] in INTEGER_TYPES for k in facts.key)


def block_query(facts: Table, columns: tuple[str, ...], ranged: bool) -> sql.Composable:
    text = sql.SQL("{}::text").format(rows.row_text(columns))
    if integer_key(facts):
        order = sql.SQL(", ").join(sql.Identifier(k) for k in facts.key)
    else:
        order = sql.SQL('x COLLATE "C"')
    where = sql.SQL(" WHERE {k} >= %s AND {k} < %s").format(k=sql.Identifier(facts.key[0])) if ranged else sql.SQL("")
    # Ordered in a subquery, not inside string_agg: PostgreSQL 15 would sort again what the
    # index scan already returns in key order. A subquery with ORDER BY is never flattened, so
    # the aggregate reads its rows in that order; if that ever failed, the digests would
    # differ (a false alarm), never match wrongly.
    return sql.SQL("SELECT count(*), encode(sha256(convert_to(coalesce(string_agg(x, E'\\n'), ''), 'UTF8')), 'hex')"
                   " FROM (SELECT {text} AS x FROM {t}{where} ORDER BY {order}) s").format(
        text=text, order=order, t=sql.Identifier(facts.schema, facts.name), where=where)


def bounds_query(facts: Table) -> sql.Composable:
    return sql.SQL("SELECT min({k}), max({k}) FROM {t}").format(
        k=sql.Identifier(facts.key[0]), t=sql.Identifier(facts.schema, facts.name))


def block_ranges(lo: int | None, hi: int | None) -> list[tuple[int, int]]:
    if lo is None:
        return []
    return [(b << BLOCK_BITS, (b + 1) << BLOCK_BITS) for b in range(lo >> BLOCK_BITS, (hi >> BLOCK_BITS) + 1)]


def chain(facts: Table, columns, blocks: list[tuple]) -> dict:
    """blocks: (start, count, sha256) in key order -> {"rows", "sha256", "columns"}."""
    digest = hashlib.sha256(f"{VERSION}\n{facts.qualified}\n{','.join(columns)}\n".encode())
    for start, count, block_hash in blocks:
        if count:
            digest.update(f"{start}:{count}:{block_hash}\n".encode())
    return {"rows": sum(b[1] for b in blocks), "sha256": digest.hexdigest(), "columns": list(columns)}


def digest(session: Session, facts: Table, columns: tuple[str, ...]) -> dict:
    """The digest of one table on one side (the wave's pre-copy step)."""
    if not facts.key or facts.types[facts.columns.index(facts.key[0])] not in INTEGER_TYPES:
        (count, block_hash), = session.rows(block_query(facts, columns, False))
        return chain(facts, columns, [(None, count, block_hash)])
    (lo, hi), = session.rows(bounds_query(facts))
    query = block_query(facts, columns, True)
    return chain(facts, columns, [(start, *session.rows(query, (start, end))[0]) for start, end in block_ranges(lo, hi)])


def compare_table(pair: Pair, s: rows.Shape, database: str) -> tuple[TableResult, dict, dict]:
    """Row comparison of an evidence table and both sides' digests, from one pass per side."""
    started, before = time.monotonic(), pair.queries
    facts, columns = s.facts, s.columns
    if not s.integer_key:
        src, tgt = pair.both(block_query(facts, columns, False))
        src_blocks, tgt_blocks = [(None, *src[0])], [(None, *tgt[0])]
        diffs = [] if src == tgt else list(rows.compare_checksums(pair, s, database).differences)
    else:
        src_b, tgt_b = pair.both(bounds_query(facts))
        lows = [r[0] for r in (src_b[0], tgt_b[0]) if r[0] is not None]
        highs = [r[1] for r in (src_b[0], tgt_b[0]) if r[1] is not None]
        ranges = block_ranges(min(lows), max(highs)) if lows else []
        query, src_blocks, tgt_blocks, diffs = block_query(facts, columns, True), [], [], []
        for start, end in ranges:
            src, tgt = pair.both(query, params=(start, end))
            src_blocks.append((start, *src[0]))
            tgt_blocks.append((start, *tgt[0]))
            if src[0] != tgt[0]:
                diffs += rows.bisect(pair, s, database, start, end - 1, rows.FAN_OUT, {}, top=False)
    src_digest, tgt_digest = chain(facts, columns, src_blocks), chain(facts, columns, tgt_blocks)
    result = TableResult(database, facts.qualified, "evidence blocks", src_digest["rows"], tgt_digest["rows"],
                         time.monotonic() - started, tuple(diffs), pair.queries - before)
    return result, src_digest, tgt_digest


def compare(database: str, table: str, before: dict | None, after: dict, taken: str) -> list[Difference]:
    if before is None:
        return [Difference("evidence", database, table, "no_source_digest",
                           "take the source digest before any copy (the wave's evidence step) and verify again")]
    if before["sha256"] == after["sha256"] and before["rows"] == after["rows"]:
        return []
    return [Difference("evidence", database, table, "digest_differs",
                       "legal evidence differs from the source digest taken " + taken +
                       ": do not go live; re-copy the table and keep both digests with the record",
                       detail=f"source {before['rows']} rows, target {after['rows']} rows")]
