"""What a database holds, as its catalog says: tables (columns, types, primary key, size),
sequences and populated materialized views.

One reader for the copy and for verification. The table query is plain text and `tables()`
a pure function of its rows, so verification can run the query on both sides at once
(`verify.probes.Pair`) and the copy on its snapshot's connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

INTEGER_TYPES = ("smallint", "integer", "bigint")  # as format_type() names them

# Plain tables, partition leaves and inheritance members (not views, not partitioned parents),
# outside the system schemas (a user's schema cannot start with pg_).
TABLES_SQL = """
SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       array(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       coalesce(array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.ord),
                '{}'),
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
             ORDER BY a.attnum),
       pg_table_size(c.oid), pg_relation_size(c.oid) / current_setting('block_size')::int,
       EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
 WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
 ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    estimated_rows: int
    columns: tuple[str, ...]            # every column, in order
    types: tuple[str, ...]              # format_type() of each column
    key: tuple[str, ...]                # primary-key columns, in key order; () without a primary key
    generated: tuple[str, ...] = ()     # generated columns (the target computes them)
    bytes: int = 0                      # on disk, TOAST included
    blocks: int = 0
    extension: bool = False             # a member of an extension (the extension creates it)
    key_min: int | None = None          # the range of an integer key, read when the copy splits by it
    key_max: int | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def tables(rows: list[tuple]) -> list[Table]:
    """The rows of TABLES_SQL as tables, in its order."""
    return [Table(schema, name, estimated, tuple(columns), tuple(types), tuple(key), tuple(generated), size,
                  blocks, extension)
            for schema, name, estimated, columns, types, key, generated, size, blocks, extension in rows]


def read_tables(conn) -> list[Table]:
    return tables(conn.execute(TABLES_SQL).fetchall())


SEQUENCES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""


def read_sequences(conn) -> list[tuple[str, str, int, bool]]:
    """(schema, name, last_value, is_called) of every sequence, as the snapshot sees it."""
    found = []
    for schema, name in conn.execute(SEQUENCES_SQL).fetchall():
        last, called = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(name))).fetchone()
        found.append((schema, name, last, called))
    return found


MATVIEWS_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'm' AND c.relispopulated
"""


def populated_matviews(conn) -> set[tuple[str, str]]:
    return {(s, n) for s, n in conn.execute(MATVIEWS_SQL).fetchall()}
