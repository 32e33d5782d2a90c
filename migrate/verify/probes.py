"""The only part of verification that talks to servers, through the adapters: database
sessions with pinned settings, the catalog, the bucket and the archive hosts.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor

import psycopg

from migrate.adapters import cloud, db, ssh
from migrate.config import Inventory
from migrate.errors import StepFailed
from migrate.transfer import catalog
from migrate.transfer.catalog import Table
from migrate.transfer.pool import Pool

# Pinned on both sides so that the text of a value depends on the value only: a cloud target
# in UTC with another DateStyle or float precision must not look different from the source.
SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("search_path", "\"$user\", public"),  # what business checks expect; our own SQL is qualified
    ("statement_timeout", "0"),
    ("jit", "off"),  # compiling costs more than it saves on these scans
    # Segment checksums group by an expression the planner cannot estimate; it would sort
    # millions of rows to build a thousand groups. Off only penalises sorting, never forbids it.
    ("enable_sort", "off"),
    ("application_name", "migrate-verify"),
)


class Session:
    """One read-only REPEATABLE READ connection: every query sees the same snapshot."""

    def __init__(self, inv: Inventory, server: str, dbname: str):
        self.server, self.dbname = server, dbname
        self.conn = db.connect(inv, server, dbname, autocommit=True)
        for name, value in SESSION_SETTINGS:
            # set_config is parameterised; SET cannot take a bind parameter.
            self.conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
        self.conn.autocommit = False
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.conn.read_only = True

    def rows(self, query, params=()) -> list[tuple]:
        try:
            return self.conn.execute(query, params or None).fetchall()
        except psycopg.Error:
            self.conn.rollback()  # session settings survive: they were set outside the transaction
            raise

    def close(self) -> None:
        self.conn.close()


class Pair:
    """A source and a target session; `both` runs one query on each side at the same time."""

    def __init__(self, source: Session, target: Session):
        self.source, self.target = source, target
        self._source_thread = ThreadPoolExecutor(max_workers=1)
        self.queries = 0

    def both(self, source_query, target_query=None, params=()) -> tuple[list, list]:
        pending = self._source_thread.submit(self.source.rows, source_query, params)
        try:
            target_rows = self.target.rows(target_query if target_query is not None else source_query, params)
        finally:
            source_rows = pending.result()
        self.queries += 1
        return source_rows, target_rows

    def close(self) -> None:
        self._source_thread.shutdown()
        self.source.close()
        self.target.close()


# --- catalog ---------------------------------------------------------------------------------

USER_SCHEMAS = ("n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'")


def by_name(tables: list[Table]) -> dict[str, Table]:
    return {t.qualified: t for t in tables}


def tables(session: Session) -> dict[str, Table]:
    return by_name(catalog.tables(session.rows(catalog.TABLES_SQL)))


# --- bucket ----------------------------------------------------------------------------------

def objects_sha256(s3, bucket: str, keys: list[str], workers: int = 8) -> dict[str, str]:
    with Pool(workers, name="hash") as hashers:
        return dict(hashers.map(lambda _, key: (key, cloud.object_sha256(s3, bucket, key)), keys))


# --- archive host ----------------------------------------------------------------------------

def archive_listing(inv: Inventory, host: str, path: str) -> dict[str, int]:
    """Files of the source archive: relative path -> size (the source is frozen)."""
    return {posixpath.normpath(rel): size for rel, size, _, _ in ssh.list_files(inv, host, path)}


def archive_scan(inv: Inventory, host: str, path: str, *, with_hash: bool) -> dict[str, dict]:
    """Every file under a spec path as our program on the host lists it (size, mtime in ns, mode;
    the SHA-256 computed there with `with_hash`): path -> entry. Nothing but hashes crosses."""
    _, files, _ = ssh.scan_program(inv, host, ssh.host_path(ssh.host(inv, host), path), with_hash=with_hash)
    return {f["path"]: f for f in files}


def restored_archive(inv: Inventory, host: str, path: str, hash_paths: list[str] | None) -> tuple[dict, dict]:
    """The archive restored on the target host: relative path -> size, and SHA-256 of
    `hash_paths` computed on the host (no file crosses the network); empty when it is missing."""
    top = ssh.host_path(ssh.host(inv, host), path)
    with ssh.sftp_session(inv, host) as (client, sftp):
        try:
            sizes = {posixpath.normpath(rel): attrs.st_size for rel, attrs in ssh.walk(sftp, top)}
        except FileNotFoundError:
            return {}, {}
        wanted = [p for p in (hash_paths or []) if p in sizes]
        hashes = ssh.remote_hashes(client, top, wanted) if wanted else {}
    if hashes is None:
        raise StepFailed(f"{top}: the target host could not hash the restored files")
    return sizes, hashes


def open_pair(inv: Inventory, d) -> Pair:
    """Source and target sessions of one database of the spec (`config.Database`)."""
    source = Session(inv, d.source.server, d.source.dbname)
    try:
        return Pair(source, Session(inv, d.target.server, d.target.dbname))
    except BaseException:
        source.close()
        raise
