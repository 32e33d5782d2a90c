"""Helpers of bench/verify.py: the bench lab's inventory and its copy (pg_dump | pg_restore)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
LAB_DIR = ROOT / ".lab-bench-verify"
PORTS = {"pg_source": 20432, "pg_target": 20433, "ssh_src_app": 20201, "ssh_tgt_app": 20202, "s3": 20900,
         "ssh_front": 20203, "http_src_app": 20281, "http_tgt_app": 20282, "http_front": 20280}
DATABASES = ("personale", "presenze")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def lab_ports():
    from migrate.lab.api import LabPorts
    return LabPorts(**PORTS)


def write_inventory() -> Path:
    """inventories/lab pointed at the bench lab (as for the integration tests)."""
    from migrate.lab.inventory import write_lab_inventory
    return write_lab_inventory(LAB_DIR, lab_ports())


def dsn(side: str, dbname: str) -> str:
    port = PORTS["pg_source" if side == "source" else "pg_target"]
    return f"host=127.0.0.1 port={port} dbname={dbname} user=migrate passfile={LAB_DIR}/secrets/pgpass"


def env() -> dict:
    return {"PATH": "/usr/bin:/bin", "PGPASSFILE": str(LAB_DIR / "secrets" / "pgpass")}


def copy_databases() -> float:
    """Drop the target databases and copy both with pg_dump | pg_restore, in parallel; seconds."""
    with psycopg.connect(dsn("target", "postgres"), autocommit=True) as conn:
        for db in DATABASES:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {db} TEMPLATE template0 ENCODING 'UTF8'")
    started = time.monotonic()
    pipes = [_dump_into_restore(db) for db in DATABASES]
    if any(p.wait() != 0 for pair in pipes for p in pair):
        raise SystemExit("copy failed")
    return time.monotonic() - started


def _dump_into_restore(db: str) -> tuple[subprocess.Popen, subprocess.Popen]:
    """pg_dump | pg_restore as two processes joined by a pipe (no shell)."""
    dump = subprocess.Popen([f"{PG_BIN}/pg_dump", "-h", "127.0.0.1", "-p", str(PORTS["pg_source"]), "-U", "migrate",
                             "--format=custom", "--compress=0", "--no-owner", "--no-acl", db],
                            stdout=subprocess.PIPE, env=env())
    restore = subprocess.Popen([f"{PG_BIN}/pg_restore", "-h", "127.0.0.1", "-p", str(PORTS["pg_target"]),
                                "-U", "migrate", "--no-owner", "--no-acl", "--single-transaction",
                                "--exit-on-error", "-d", db], stdin=dump.stdout, env=env())
    dump.stdout.close()  # pg_restore holds the only read end: pg_dump sees a closed pipe if it dies
    return dump, restore
