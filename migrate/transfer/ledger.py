"""The load ledger: which chunks and post-data items the target already holds.

It lives in the target database and each row is written in the same transaction as the rows
of its chunk (or the index of its item). So the ledger and the data cannot disagree: after a
kill, a rolled-back chunk has neither rows nor a ledger row, a committed one has both. This is
what makes loading exactly-once; the journal cannot, because no transaction spans the journal
and the target. The ledger is dropped when the database is complete.
"""

from __future__ import annotations

from psycopg import sql

SCHEMA = "migrate_ledger"
TABLE = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier("done"))


def create(conn) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (item text PRIMARY KEY, rows bigint, sha256 text,"
                         " at timestamptz NOT NULL DEFAULT now())").format(TABLE))


def exists(conn) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.done",)).fetchone()[0]


def done(conn) -> dict[str, tuple[int | None, str | None]]:
    return {item: (rows, sha) for item, rows, sha in conn.execute(sql.SQL("SELECT item, rows, sha256 FROM {}").format(TABLE))}


def mark(conn, item: str, *, rows: int | None = None, sha256: str | None = None) -> None:
    """Inside the caller's transaction: a duplicate item fails the transaction (it was loaded)."""
    conn.execute(sql.SQL("INSERT INTO {} (item, rows, sha256) VALUES (%s, %s, %s)").format(TABLE), (item, rows, sha256))


def drop(conn) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
