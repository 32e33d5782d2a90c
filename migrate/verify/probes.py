"""The only part of verification that talks to servers: database sessions with pinned
settings, the catalog, the bucket and the source archive host.

Helpers live here rather than in `adapters/db.py` and `adapters/cloud.py` (being rewritten
for the copy engine); they build on those adapters' connections and clients.
"""

from __future__ import annotations

import hashlib
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from botocore.exceptions import ClientError

from migrate.adapters import db, ssh
from migrate.config import Inventory

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

TABLES = f"""
SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       array(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       coalesce(array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.ord),
                '{{}}')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.relkind = 'r' AND {USER_SCHEMAS}
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class TableFacts:
    schema: str
    name: str
    estimated_rows: int
    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]     # primary-key columns, in key order; () without a primary key

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def tables(session: Session) -> dict[str, TableFacts]:
    found = {}
    for schema, name, rows, columns, types, key in session.rows(TABLES):
        facts = TableFacts(schema, name, rows, tuple(columns), tuple(types), tuple(key))
        found[facts.qualified] = facts
    return found


# --- bucket ----------------------------------------------------------------------------------

def read_object(s3, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"].get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def list_objects(s3, bucket: str, prefix: str) -> dict[str, int]:
    """Current objects under prefix: key -> size."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return found


def object_sha256(s3, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(8 * 1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def objects_sha256(s3, bucket: str, keys: list[str], workers: int = 8) -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(keys, pool.map(lambda k: object_sha256(s3, bucket, k), keys)))


# --- archive host ----------------------------------------------------------------------------

def archive_listing(inv: Inventory, host: str, path: str) -> dict[str, int]:
    """Files of the source archive: relative path -> size (the source is frozen)."""
    h = ssh.host(inv, host)
    with ssh.connect(inv, host) as client, client.open_sftp() as sftp:
        top = ssh.host_path(h, path)
        return {posixpath.normpath(rel): attrs.st_size for rel, attrs in ssh.walk(sftp, top)}


def restored_archive(inv: Inventory, host: str, path: str, hash_paths: list[str] | None) -> tuple[dict, dict]:
    """The archive restored on the target host: relative path -> size, and SHA-256 of
    `hash_paths` computed on the host (no file crosses the network); empty when it is missing."""
    from migrate.transfer.restore import remote_hashes  # the host-side hashing of the restore
    h = ssh.host(inv, host)
    with ssh.connect(inv, host) as client, client.open_sftp() as sftp:
        top = ssh.host_path(h, path)
        try:
            sizes = {posixpath.normpath(rel): attrs.st_size for rel, attrs in ssh.walk(sftp, top)}
        except FileNotFoundError:
            return {}, {}
        wanted = [p for p in (hash_paths or []) if p in sizes]
        return sizes, remote_hashes(client, top, wanted) if wanted else {}
