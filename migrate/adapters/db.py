"""PostgreSQL: connections (psycopg 3) and the client tools (pg_dump, pg_restore).

Secrets stay with libpq: a passfile path, or a password read from the environment variable
the spec names and handed only to the child process that needs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from migrate.adapters import guard
from migrate.config import Inventory
from migrate.errors import ConfigError, StepFailed

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def conninfo(inv: Inventory, server: str, dbname: str) -> str:
    s = inv.spec.db_servers[server]
    guard.check(inv, s.host, f"db server {server}")
    parts = {"host": s.host, "port": s.port, "dbname": dbname, "user": s.user,
             "sslmode": s.sslmode, "connect_timeout": 10, "application_name": "migrate"}
    if s.passfile:
        passfile = inv.resolve(s.passfile)
        if not passfile.is_file():
            raise ConfigError(f"db_servers.{server}.passfile: {passfile} not found (is the lab up?)")
        parts["passfile"] = str(passfile)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})


def secret_env(inv: Inventory, server: str) -> dict:
    """Environment for a child process: the password only when the spec takes it from one."""
    s = inv.spec.db_servers[server]
    if not s.password_env:
        return {}
    value = os.environ.get(s.password_env)
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


def dump_process(inv: Inventory, server: str, dbname: str) -> subprocess.Popen:
    """pg_dump in custom format writing to a pipe; the caller streams it."""
    args = [tool("pg_dump"), "--format=custom", "--compress=0", "--no-owner", "--no-acl",
            "--dbname", conninfo(inv, server, dbname)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(inv, server))


def restore_process(inv: Inventory, server: str, dbname: str) -> subprocess.Popen:
    """pg_restore reading a custom-format archive from its stdin, in one transaction."""
    args = [tool("pg_restore"), "--no-owner", "--no-acl", "--single-transaction", "--exit-on-error",
            "--dbname", conninfo(inv, server, dbname)]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=child_env(inv, server))
