"""Business totals ("horizontal" checks): named queries from the spec, run on both sides under
the same pinned session settings, their results compared as multisets of rows.

A differing result row is named by its first column, the check's group label (a month, an
organisational unit code, a reason category): a check must not select a personal value there.
"""

from __future__ import annotations

from collections import Counter

import psycopg

from migrate.verify.model import Difference, Section
from migrate.verify.probes import Pair

REMEDY = ("find the rows behind this total among the row differences of the same database;"
          " if there are none, the check's query depends on something else (the session, the clock)")


def run_check(pair: Pair, database: str, name: str, query: str) -> tuple[Section, list[Difference]]:
    try:
        src, tgt = pair.both(query)
    except psycopg.Error as exc:
        # The server's message may quote data: keep the SQLSTATE only.
        problem = f"query failed (SQLSTATE {exc.sqlstate or '?'})"
        return (Section("business", database, name, "error", {}),
                [Difference("business", database, name, "check_failed",
                            "fix the query in the spec's business_checks", detail=problem)])
    diffs = compare(database, name, src, tgt)
    return Section("business", database, name, "differs" if diffs else "ok",
                   {"source_rows": len(src), "target_rows": len(tgt)}), diffs


def _text(row: tuple) -> tuple:
    return tuple(None if v is None else str(v) for v in row)


def compare(database: str, name: str, src: list[tuple], tgt: list[tuple]) -> list[Difference]:
    a, b = Counter(map(_text, src)), Counter(map(_text, tgt))
    only_src, only_tgt = a - b, b - a
    labels = sorted({r[0] if r else "" for r in (only_src + only_tgt).elements()}, key=str)
    return [Difference("business", database, name, "total_differs", REMEDY, {"group": label or ""},
                       detail=f"{sum(1 for r in only_src.elements() if r[:1] == (label,))} result row(s) only on"
                              f" source, {sum(1 for r in only_tgt.elements() if r[:1] == (label,))} only on target")
            for label in labels]
