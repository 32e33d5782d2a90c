"""PostgreSQL: connections (psycopg 3) and the client tools (pg_dump, pg_restore).

Secrets stay with libpq: a passfile path, or a password read from the environment variable
the spec names and handed only to the child process that needs it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import psycopg
from psycopg import sql

from migrate.adapters import environ, guard
from migrate.config import SPEC_FILE, Inventory
from migrate.errors import ConfigError, StepFailed

class _LostCopyTermination(logging.Filter):
    """A COPY left by an error on a connection that is lost: psycopg raises that error and, when
    ending the COPY then fails as well (it must, the server is gone), logs "error ignored
    terminating <psycopg.Copy [BAD]>" on the side, which Python prints on stderr. The error we
    report is the first one; any other psycopg message still gets through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "error ignored terminating %r: %s" or not record.args:
            return True
        conn = getattr(record.args[0], "connection", None)
        return not (conn is not None and conn.broken)


logging.getLogger("psycopg").addFilter(_LostCopyTermination())

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def conninfo(inv: Inventory, server: str, dbname: str) -> str:
    s = inv.spec.db_servers[server]
    guard.check(inv, s.host, f"db server {server}")
    parts = {"host": s.host, "port": s.port, "dbname": dbname, "user": s.user,
             "sslmode": s.sslmode, "connect_timeout": 10, "application_name": "migrate"}
    if s.passfile:
        passfile = inv.resolve(s.passfile)
        problem = _not_a_file(passfile)
        if problem:
            raise ConfigError(f"{inv.path / SPEC_FILE}: db_servers.{server}.passfile: {passfile} {problem}")
        parts["passfile"] = str(passfile)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})


def _not_a_file(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory, not a libpq passfile"
    if not path.is_file():
        return "not found"
    return None


def check_passfiles(inv: Inventory, wave: str) -> None:
    """Every libpq passfile the wave's servers name is a file, before any connection (exit 2,
    one line naming file and field). A replication_passfile lives on its server's host: it is
    looked at only when that is this machine (a path relative to the inventory, or a server on
    loopback), as in the lab."""
    servers = sorted({side.server for name in inv.spec.waves[wave].systems
                      for d in inv.spec.systems[name].databases.values() for side in (d.source, d.target)})
    problems = []
    for name in servers:
        s = inv.spec.db_servers[name]
        here = not (s.replication_passfile or "/").startswith("/") or _is_loopback(s.host)
        for field, value in (("passfile", s.passfile), ("replication_passfile", s.replication_passfile if here else None)):
            problem = value and _not_a_file(inv.resolve(value))
            if problem:
                problems.append(f"{inv.path / SPEC_FILE}: db_servers.{name}.{field}: {inv.resolve(value)} {problem}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)


def _is_loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def subscription_conninfo(inv: Inventory, *, to: str, dbname: str, on: str, name: str) -> str:
    """How server `on` reaches server `to` for a subscription: no password in the catalog, a
    passfile on `on`'s host (`db_servers.<on>.replication_passfile`); `name` is the walsender's
    application_name on `to` (where the lag is read)."""
    t, passfile = inv.spec.db_servers[to], inv.spec.db_servers[on].replication_passfile
    if passfile and not passfile.startswith("/"):
        passfile = str(inv.resolve(passfile))
    return psycopg.conninfo.make_conninfo(host=t.host, port=str(t.port), dbname=dbname, user=t.user,
                                          sslmode=t.sslmode, passfile=passfile or "", application_name=name)


def secret_env(inv: Inventory, server: str) -> dict:
    """Environment for a child process: the password only when the spec takes it from one."""
    s = inv.spec.db_servers[server]
    if not s.password_env:
        return {}
    value = environ.get(s.password_env)
    if value is None:
        raise ConfigError(f"db_servers.{server}.password_env: variable {s.password_env} is not set")
    return {"PGPASSWORD": value}


def connect(inv: Inventory, server: str, dbname: str, **kwargs) -> psycopg.Connection:
    password = secret_env(inv, server).get("PGPASSWORD")
    extra = {"password": password} if password else {}
    try:
        return psycopg.connect(conninfo(inv, server, dbname), **extra, **kwargs)
    except psycopg.OperationalError as exc:
        raise StepFailed(f"db server {server}, database {dbname}: cannot connect ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or ["?"])[0]


def database_exists(inv: Inventory, server: str, dbname: str) -> bool:
    with connect(inv, server, "postgres") as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def database_size(inv: Inventory, server: str, dbname: str) -> int:
    with connect(inv, server, dbname) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def server_version(inv: Inventory, server: str) -> int:
    with connect(inv, server, "postgres") as conn:
        return conn.info.server_version


def create_database(inv: Inventory, server: str, dbname: str) -> None:
    with connect(inv, server, "postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(dbname)))


def drop_database(inv: Inventory, server: str, dbname: str) -> bool:
    with connect(inv, server, "postgres", autocommit=True) as conn:
        existed = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        return existed is not None


def tool(name: str) -> str:
    for d in PG_BIN_DIRS:
        if Path(d, name).exists():
            return str(Path(d, name))
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"{name} not found; install the PostgreSQL client tools")
    return found


def child_env(inv: Inventory, server: str) -> dict:
    """A small environment for pg_dump/pg_restore: nothing of ours leaks into it."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TZ")}
    return {**keep, **secret_env(inv, server)}


# --- the copy engine's I/O: sessions, COPY streams, schema archives ----------------------

# Text COPY depends on these session settings (a DMY DateStyle on one side and MDY on the
# other would swap days and months): both sides use pg_dump's choices.
COPY_SETTINGS = "-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c TimeZone=UTC"
COPY_BLOCK = 1024 * 1024


def copy_session(inv: Inventory, server: str, dbname: str, *, settings: str = "", **kwargs) -> psycopg.Connection:
    """A connection with the settings text COPY needs; the caller manages transactions."""
    return connect(inv, server, dbname, options=f"{COPY_SETTINGS} {settings}".strip(),
                   client_encoding="UTF8", application_name="migrate-copy", **kwargs)


def export_snapshot(conn: psycopg.Connection) -> str:
    """Open a repeatable-read transaction and export its snapshot: other sessions that import
    it see exactly the same data, whatever commits meanwhile."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn.execute("SELECT pg_export_snapshot()").fetchone()[0]


@dataclass(frozen=True)
class Slot:
    name: str
    lsn: str        # the consistent point: changes after it go through the slot
    snapshot: str   # the database as of that point, while the creating connection stays open


@contextmanager
def slot_with_snapshot(inv: Inventory, server: str, dbname: str, name: str) -> Iterator[Slot]:
    """Create logical slot `name` (pgoutput) and export its snapshot. The snapshot lives only
    while this replication connection stays open and runs nothing else: the block is where
    other sessions import it. The slot outlives the block."""
    info = conninfo(inv, server, dbname) + " replication=database"
    password = secret_env(inv, server).get("PGPASSWORD")
    try:
        conn = psycopg.connect(info, autocommit=True, **({"password": password} if password else {}))
    except psycopg.OperationalError as exc:
        raise StepFailed(f"db server {server}, database {dbname}: no replication connection"
                         f" ({_first_line(exc)})") from None
    with conn:
        try:
            row = conn.execute(sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')").format(
                sql.Identifier(name))).fetchone()
        except psycopg.Error as exc:
            raise StepFailed(f"{server}/{dbname}: cannot create replication slot {name} ({_first_line(exc)})") from None
        yield Slot(name=row[0], lsn=row[1], snapshot=row[2])


def import_snapshot(conn: psycopg.Connection, snapshot: str) -> None:
    """This session sees exactly the data of `snapshot` (until its transaction ends)."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))


def copy_out(inv: Inventory, server: str, dbname: str, statement: str, *, snapshot: str | None,
             sink) -> int:
    """Stream `COPY ... TO STDOUT` into sink(block), through psql in a pipe; return the rows.

    psql rather than psycopg: libpq hands a COPY over one row at a time, and a Python call per
    row cost more than the whole copy (4.9 M rows: 8.6 s against psql's 3.7 s). Rows are
    counted as newlines: text COPY escapes every newline inside a value. With `snapshot`, the
    COPY sees exactly the data of that exported snapshot.
    """
    args = [tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo(inv, server, dbname)]
    if snapshot:
        args += ["-c", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                 "-c", f"SET TRANSACTION SNAPSHOT '{snapshot}'"]  # pg_export_snapshot()'s own output
    args += ["-c", statement] + (["-c", "COMMIT"] if snapshot else [])
    env = {**child_env(inv, server), "PGOPTIONS": COPY_SETTINGS, "PGCLIENTENCODING": "UTF8",
           "PGAPPNAME": "migrate-copy"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    rows = 0
    try:
        while block := proc.stdout.read(COPY_BLOCK):
            rows += block.count(b"\n")
            sink(block)
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.wait()
    if proc.returncode != 0:
        # The message itself stays out: a COPY error can quote the bytes it choked on.
        state = "ERROR" if "ERROR:" in err else f"exit {proc.returncode}"
        raise StepFailed(f"COPY out of {dbname} failed in psql ({state}; see the source's server log)")
    return rows


def copy_in(conn: psycopg.Connection, statement: sql.Composable, blocks) -> int:
    """Stream blocks into `COPY ... FROM STDIN`; return the row count from the command tag."""
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            for block in blocks:
                copy.write(block)
        return cur.rowcount


@dataclass
class Dump:
    stream: BinaryIO
    error: str | None = None  # when pg_dump failed: its last line of complaint (or its exit code)


@contextmanager
def schema_dump(inv: Inventory, server: str, dbname: str) -> Iterator[Dump]:
    """pg_dump of the object definitions with their owners and grants (custom format, --create:
    the database's own settings and comment too), streamed to the caller. Restores leave owners
    and grants out; `transfer.roles` maps them and applies them at the end. After the block,
    `error` says whether pg_dump failed (a failed dump may still have been read to its end)."""
    args = [tool("pg_dump"), "--format=custom", "--schema-only", "--create",
            "--dbname", conninfo(inv, server, dbname)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(inv, server))
    dump = Dump(proc.stdout)
    try:
        yield dump
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.wait()
    if proc.returncode != 0:
        dump.error = err.splitlines()[-1] if err else str(proc.returncode)


def restore_section(inv: Inventory, server: str, dbname: str, archive: Path, section: str) -> None:
    """Apply one section of a schema archive to the target, in one transaction."""
    args = [tool("pg_restore"), "--no-owner", "--no-acl", "--single-transaction", "--exit-on-error",
            f"--section={section}", "--dbname", conninfo(inv, server, dbname), str(archive)]
    done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(inv, server))
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise StepFailed(f"pg_restore --section={section} into {server}/{dbname} failed: {err[-1] if err else '?'}")


def section_script(archive: Path, section: str, *, create: bool = False, owners: bool = False) -> str:
    """The SQL of one section of a schema archive (no database needed); with `create`, the
    database-level entries too; with `owners`, owners and grants too."""
    args = [tool("pg_restore"), *([] if owners else ["--no-owner", "--no-acl"]), f"--section={section}", "--file=-",
            str(archive)]
    args += ["--create"] if create else []
    done = subprocess.run(args, capture_output=True, env={k: v for k, v in os.environ.items() if k in ("PATH", "LANG")})
    if done.returncode != 0:
        raise StepFailed(f"pg_restore could not read the schema archive: {done.stderr.decode(errors='replace')[-200:]}")
    return done.stdout.decode("utf-8")
