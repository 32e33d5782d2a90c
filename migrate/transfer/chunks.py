"""Chunks: how a database's tables (see `catalog`) are cut for parallel copying.

A chunk is one slice of one table: the whole table, a range of an integer primary key, or a
range of physical blocks (ctid) for a table without one. The first and last ranges are open,
so every row falls in exactly one chunk, even a row inserted after planning. Chunks are plain
data (JSON in the plan); the SQL is built from identifiers and integers only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

from psycopg import sql

from migrate.transfer import catalog
from migrate.transfer.catalog import Table


@dataclass(frozen=True)
class Chunk:
    id: str
    schema: str
    table: str
    columns: tuple[str, ...]
    by: str = "all"            # all | key | ctid
    column: str | None = None  # the key column, when by == "key"
    lo: int | None = None      # inclusive; None: open
    hi: int | None = None      # exclusive; None: open

    def to_json(self) -> dict:
        return {**asdict(self), "columns": list(self.columns)}

    @classmethod
    def from_json(cls, data: dict) -> Chunk:
        return cls(**{**data, "columns": tuple(data["columns"])})

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def range_text(self) -> str:
        """The range in words, for manifests and logs (names and numbers, never values)."""
        if self.by == "all":
            return "all rows"
        what = self.column if self.by == "key" else "block"
        lo = "" if self.lo is None else f"{self.lo} <= "
        hi = "" if self.hi is None else f" < {self.hi}"
        return f"{lo}{what}{hi}"

    def _where(self) -> sql.Composable:
        if self.by == "all":
            return sql.SQL("")
        if self.by == "key":
            col = sql.Identifier(self.column)
            parts = ([sql.SQL("{} >= {}").format(col, sql.Literal(self.lo))] if self.lo is not None else []) + \
                    ([sql.SQL("{} < {}").format(col, sql.Literal(self.hi))] if self.hi is not None else [])
        else:
            # A TID range scan (PostgreSQL 14+) reads only these blocks.
            parts = ([sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({self.lo},0)"))] if self.lo is not None else []) + \
                    ([sql.SQL("ctid < {}::tid").format(sql.Literal(f"({self.hi},0)"))] if self.hi is not None else [])
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts) if parts else sql.SQL("")

    def copy_out_sql(self) -> sql.Composable:
        # ONLY: an inheritance parent's own rows; its children are chunks of their own.
        # Generated columns are left out on both sides: the target computes them.
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        return sql.SQL("COPY (SELECT {} FROM ONLY {}.{}{}) TO STDOUT").format(
            cols, sql.Identifier(self.schema), sql.Identifier(self.table), self._where())

    def copy_in_sql(self) -> sql.Composable:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        return sql.SQL("COPY {}.{} ({}) FROM STDIN").format(sql.Identifier(self.schema), sql.Identifier(self.table), cols)


def range_key(table: Table) -> str | None:
    """The column a table is cut by: its primary key when that is one integer column."""
    if len(table.key) == 1 and table.types[table.columns.index(table.key[0])] in catalog.INTEGER_TYPES:
        return table.key[0]
    return None


def copy_columns(table: Table) -> tuple[str, ...]:
    """The columns that are copied: generated ones are left out on both sides (the target computes them)."""
    return tuple(c for c in table.columns if c not in table.generated)


def parts_for(table: Table, chunk_bytes: int) -> int:
    return max(1, math.ceil(table.bytes / chunk_bytes))


def needs_key_range(table: Table, chunk_bytes: int) -> bool:
    return range_key(table) is not None and parts_for(table, chunk_bytes) > 1


def split(table: Table, index: int, chunk_bytes: int) -> list[Chunk]:
    """Cut one table into chunks of about chunk_bytes (by its size on disk, TOAST included)."""
    parts, key = parts_for(table, chunk_bytes), range_key(table)
    base = {"schema": table.schema, "table": table.name, "columns": copy_columns(table)}
    if parts == 1 or (key is not None and table.key_min is None):
        return [Chunk(f"{index:04d}.0000", **base)]
    if key is not None:
        span = table.key_max - table.key_min + 1
        parts = min(parts, span)
        bounds = [table.key_min + span * i // parts for i in range(1, parts)]
        by, column = "key", key
    else:
        parts = min(parts, max(table.blocks, 1))
        step = math.ceil(max(table.blocks, 1) / parts)
        bounds = list(range(step, max(table.blocks, 1), step))
        by, column = "ctid", None
    edges = [None, *bounds, None]
    return [Chunk(f"{index:04d}.{i:04d}", **base, by=by, column=column, lo=edges[i], hi=edges[i + 1])
            for i in range(len(edges) - 1)]


def plan_chunks(tables: list[Table], chunk_bytes: int) -> list[Chunk]:
    """Every table's chunks, largest tables first, so the long poles start early."""
    ordered = sorted(enumerate(tables), key=lambda it: -it[1].bytes)
    return [c for index, table in ordered for c in split(table, index, chunk_bytes)]


def read_tables(conn, chunk_bytes: int) -> list[Table]:
    """The tables with data to copy (not those an extension creates), with the key range of
    the ones large enough to split."""
    found = []
    for table in catalog.read_tables(conn):
        if table.extension:
            continue
        if needs_key_range(table, chunk_bytes):
            lo, hi = conn.execute(sql.SQL("SELECT min({0}), max({0}) FROM ONLY {1}.{2}").format(
                sql.Identifier(table.key[0]), sql.Identifier(table.schema), sql.Identifier(table.name))).fetchone()
            table = dataclasses.replace(table, key_min=lo, key_max=hi)
        found.append(table)
    return found
