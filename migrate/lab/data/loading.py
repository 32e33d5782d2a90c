"""Getting the data into PostgreSQL: the databases recreated, one owner session per database,
the SQL files of migrate/lab/sql/ run, rows loaded with COPY, sequences and counts."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import date
from pathlib import Path
from typing import Iterable, Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from migrate.lab.data.reference import TERMINALS

log = logging.getLogger(__name__)

# Beside this package, in migrate/lab/sql/ (installed as package data).
SQL_DIR = Path(__file__).parent.parent / "sql"
DATABASES = ("personale", "presenze")


def _conninfo(admin_dsn: str, dbname: str) -> str:
    return make_conninfo(admin_dsn, dbname=dbname)


def recreate_databases(admin_dsn: str, owner: str) -> None:
    with psycopg.connect(_conninfo(admin_dsn, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        for db in DATABASES:
            # FORCE: a session left open by an earlier run must not block the reseed.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(db)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'")
                         .format(sql.Identifier(db), sql.Identifier(owner)))
            # A per-database setting, as Italian installations have: a migration that only
            # copies tables would lose it.
            conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'Europe/Rome'")
                         .format(sql.Identifier(db)))


@contextlib.contextmanager
def session(admin_dsn: str, dbname: str, owner: str) -> Iterator[psycopg.Connection]:
    """One transaction as `owner` (so it owns every object); committed only on success."""
    conn = psycopg.connect(_conninfo(admin_dsn, dbname))
    try:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        # Set before any temp table is touched: the generator's work tables stay in memory.
        conn.execute("SET temp_buffers = '512MB'")
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")
        # The generator's expressions are long: JIT would spend more compiling than it saves.
        conn.execute("SET jit = off")
        conn.execute("SET TimeZone = 'Europe/Rome'")
        yield conn
        conn.commit()
    finally:
        conn.close()


def run_sql(conn: psycopg.Connection, name: str) -> None:
    began = time.monotonic()
    conn.execute((SQL_DIR / name).read_text(encoding="utf-8"))
    log.debug("%s ran in %.1f s", name, time.monotonic() - began)


def copy_rows(conn: psycopg.Connection, table: str, columns: list[str], rows: Iterable[tuple]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def install_parameters(conn: psycopg.Connection, seed_value: int, start: date, end: date) -> None:
    """Session-local constant functions the SQL files read their parameters from."""
    constants = {"p_seed": ("bigint", f"SELECT {seed_value}::bigint"),
                 "p_start": ("date", f"SELECT DATE '{start.isoformat()}'"),
                 "p_end": ("date", f"SELECT DATE '{end.isoformat()}'"),
                 "p_terminals": ("integer", f"SELECT {len(TERMINALS)}")}
    for name, (kind, body) in constants.items():
        conn.execute(sql.SQL("CREATE FUNCTION pg_temp.{}() RETURNS {} LANGUAGE sql IMMUTABLE "
                             "PARALLEL SAFE AS {}").format(sql.Identifier(name), sql.SQL(kind),
                                                            sql.Literal(body)))
    run_sql(conn, "generator.sql")


def sync_sequences(conn: psycopg.Connection) -> None:
    """Ids were loaded explicitly: move every owned sequence past its column's maximum."""
    owned = conn.execute("""
        SELECT s.oid::regclass::text, t.oid::regclass::text, a.attname
        FROM pg_class s
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE s.relkind = 'S' ORDER BY 1""").fetchall()
    for sequence, table, column in owned:
        statement = sql.SQL("SELECT setval(%s::regclass, "
                            "coalesce((SELECT max({}) FROM {}), 0) + 1, false)")
        conn.execute(statement.format(sql.Identifier(column), sql.SQL(table)), (sequence,))


def count_rows(conn: psycopg.Connection, db: str) -> dict[str, int]:
    tables = conn.execute("SELECT relname FROM pg_class WHERE relkind = 'r' "
                          "AND relnamespace = 'public'::regnamespace ORDER BY relname").fetchall()
    counts = {}
    for (table,) in tables:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        counts[f"{db}.{table}"] = conn.execute(query).fetchone()[0]
    return counts
