"""Which key ranges a verification inside the freeze must recompute, as pure arithmetic.

A *grid* cuts the range [lo, hi] of a table's verification key (`rows.Shape.key_expression`)
into segments of `width` keys, numbered from 0; a key below lo falls in segment -1, above hi in
segment `size` (keys that did not exist when the grid was drawn).

A side (source or target) has not changed in a segment since a snapshot when the segment holds
as many rows as it did then and none of its rows was written by a transaction the snapshot did
not see. Every INSERT and UPDATE leaves a row version whose xmin is its (sub)transaction's xid,
so a row present now but not then has such an xmin; a row gone since then lowers the count
unless a new row replaced it, and that row is new. The test needs nothing installed on either
side, and it is exact: "not seen by the snapshot" is taken as "xid at or after the snapshot's
xmin", which over-counts the few transactions that finished while the snapshot was taken (a
segment recomputed for nothing), never under-counts (`pg_visible_in_snapshot` would: it cannot
judge a subtransaction's xid).

xmin is 32 bits; PostgreSQL's `age(xmin)` is `(int32)(reference - xmin)` against one xid read
once per transaction (INT_MAX for frozen and bootstrap xids). A row version written at or after
the horizon (a 64-bit xid) has an age between 0 and `reference - horizon`; an older row never
has (its age is larger, negative after 2^31 xids, or INT_MAX); a row frozen more than 2^32 xids
ago may alias into the window and be recomputed for nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

XID_SPAN = 1 << 32
AGE_MAX = (1 << 31) - 1          # what age() answers for a frozen or bootstrap xid
WINDOW_MAX = 1 << 30             # a baseline further back than this many xids is not used


@dataclass(frozen=True)
class Grid:
    lo: int
    hi: int
    width: int

    @property
    def size(self) -> int:
        return (self.hi - self.lo) // self.width + 1

    def segment(self, key: int) -> int:
        if key < self.lo:
            return -1
        if key > self.hi:
            return self.size
        return (key - self.lo) // self.width

    def bounds(self, seg: int) -> tuple[int, int]:
        """[first, last] key of an in-range segment (the last one is cut at hi)."""
        first = self.lo + seg * self.width
        return first, min(self.hi, first + self.width - 1)

    def to_json(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "width": self.width}

    @classmethod
    def from_json(cls, data: dict | None) -> Grid | None:
        return None if data is None else cls(data["lo"], data["hi"], data["width"])


def grid(lo: int | None, hi: int | None, parts: int) -> Grid | None:
    """At most `parts` segments over [lo, hi], as `rows.bisect` splits its top level."""
    if lo is None or hi is None:
        return None
    return Grid(lo, hi, max(1, math.ceil((hi - lo + 1) / parts)))


def block_grid(lo: int | None, hi: int | None, bits: int) -> Grid | None:
    """Aligned blocks of 2^bits keys (the evidence digest's), covering [lo, hi]."""
    if lo is None or hi is None:
        return None
    return Grid((lo >> bits) << bits, (((hi >> bits) + 1) << bits) - 1, 1 << bits)


def parts_for(rows: int, rows_per_segment: int, most: int) -> int:
    return max(1, min(most, math.ceil(rows / max(1, rows_per_segment))))


def runs(segments: Iterable[int], size: int) -> list[tuple[int, int]]:
    """In-range segment numbers as runs of consecutive ones: [(first, last)], ascending."""
    found: list[list[int]] = []
    for seg in sorted(s for s in set(segments) if 0 <= s < size):
        if found and found[-1][1] == seg - 1:
            found[-1][1] = seg
        else:
            found.append([seg, seg])
    return [(a, b) for a, b in found]


def run_bounds(g: Grid, run: tuple[int, int]) -> tuple[int, int, int]:
    """(first key, last key, segments) of a run: `rows.bisect` over it splits at the grid's lines."""
    first, _ = g.bounds(run[0])
    _, last = g.bounds(run[1])
    return first, last, run[1] - run[0] + 1


def changed_segments(then: dict[int, int], now: dict[int, tuple[int, int]]) -> set[int]:
    """Segments of one side that may differ from a snapshot: then {seg: rows}, now {seg:
    (rows, rows written since)}."""
    return {seg for seg in set(then) | set(now)
            if now.get(seg, (0, 0))[1] or now.get(seg, (0, 0))[0] != then.get(seg, 0)}


def dirty_segments(mismatched: Iterable[int], then: tuple[dict, dict], now: tuple[dict, dict]) -> set[int]:
    """What the freeze recomputes: segments that differed at the baseline, and those either side
    may have changed in since (then/now: (source, target)); a segment outside both is equal now
    because it was equal then and neither side changed it."""
    found = set(mismatched)
    for side_then, side_now in zip(then, now):
        found |= changed_segments(side_then, side_now)
    return found


# --- transaction ids -------------------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """A pg_snapshot: xmin, xmax and the top-level xids in progress, 64-bit."""

    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), tuple(int(x) for x in xip.split(",") if x))

    def visible(self, xid: int) -> bool:
        """Committed before the snapshot, for a top-level xid (as pg_visible_in_snapshot)."""
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)


def full_xid(xid: int, reference: int) -> int:
    """The 64-bit xid of a 32-bit one: the last value at or before `reference` (a recent 64-bit
    xid) that has those low 32 bits."""
    return reference - ((reference - xid) % XID_SPAN)


def age_reference(snapshot_xmax: int, age_of_xmax: int) -> int:
    """The 64-bit xid `age()` measures from, given the age of the low 32 bits of the session's
    snapshot xmax (read after it, so the age is small and not negative)."""
    if not 0 <= age_of_xmax < AGE_MAX:
        raise ValueError(f"age() of the snapshot's xmax is {age_of_xmax}: no reference xid")
    return snapshot_xmax + age_of_xmax


def change_window(reference: int, horizon: int) -> int | None:
    """The largest age of a row version written at or after `horizon`; None when the horizon
    is too far back for age() to tell (then the table is compared in full)."""
    window = reference - horizon
    return window if 0 <= window <= WINDOW_MAX else None


def written_since(age: int, window: int) -> bool:
    """The SQL test `age(xmin) BETWEEN 0 AND window`, for the unit tests."""
    return 0 <= age <= window
