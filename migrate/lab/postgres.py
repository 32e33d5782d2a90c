"""The lab's two PostgreSQL clusters: built with initdb, started and stopped with pg_ctl as the
postgres OS user, and given the role `migrate` with a random password kept only in passfiles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import pwd
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from migrate.lab.errors import LabError
from migrate.lab.files import write_private
from migrate.lab.layout import HOST, PG_OS_USER, PG_ROLE, LabPaths, LabPorts, dsn
from migrate.lab.processes import READY_TIMEOUT, STOP_TIMEOUT, log_tail, processes_in, run
from migrate.lab.state import write_state

log = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SOURCE_OWNER = "hr_owner"
PG_HBA = """\
# lab: peer for the postgres OS user on the socket, scram for everyone on loopback
local   all   postgres                 peer
host    all   all        127.0.0.1/32  scram-sha-256
"""
# Given on the command line at every start rather than written to postgresql.conf, so that a
# lab built before logical replication was needed gets it at its next start. Logical
# replication in both directions (a publication on the target, a subscription on the source
# for the fallback path, and the reverse) needs wal_level=logical on both clusters. The
# defaults max_wal_senders=10 and max_replication_slots=10 cover two subscriptions with their
# table-sync slots; four logical workers (the default) would make the table syncs of two
# subscriptions wait for each other, hence eight, and room for them among the background
# workers.
PG_START_OPTIONS = ("-c wal_level=logical -c max_logical_replication_workers=8 "
                    "-c max_worker_processes=16")


def postgres_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise LabError(f"OS user {PG_OS_USER!r} is missing (apt-get install postgresql)") from None
    return entry.pw_uid, entry.pw_gid


# --- building and running a cluster --------------------------------------------------------

def _pg_settings(paths: LabPaths, cluster: str, port: int) -> str:
    lines = [
        "",
        "# --- migrate lab ---",
        f"port = {port}",
        f"listen_addresses = '{HOST}'",
        f"unix_socket_directories = '{paths.pg_socket_dir}'",
        "password_encryption = 'scram-sha-256'",
    ]
    if cluster == "source":
        # The source is throwaway and reseeded often; the target keeps fsync on because
        # restore durability may be tested against it.
        lines.append("fsync = off")
    return "\n".join(lines) + "\n"


def init_clusters(paths: LabPaths, state: dict, ports: LabPorts) -> None:
    """initdb the clusters that were never initialised, both at once (each takes ~0.7 s)."""
    wanted = {"source": ports.pg_source, "target": ports.pg_target}
    missing = [c for c in wanted if f"pg-{c}:initdb" not in state["steps"]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        # list() re-raises the first failure here.
        list(pool.map(lambda c: _init_cluster(paths, c, wanted[c]), missing))
    if missing:
        state["steps"].extend(f"pg-{c}:initdb" for c in missing)
        write_state(paths, state)


def _init_cluster(paths: LabPaths, cluster: str, port: int) -> None:
    data = paths.cluster_dir(cluster)
    if data.exists():  # left half-built by a crash: start over, it holds nothing yet
        shutil.rmtree(data)
    uid, gid = postgres_ids()
    data.mkdir(mode=0o700)
    os.chown(data, uid, gid)
    run([str(PG_BIN / "initdb"), "-D", str(data), "--no-sync", "-E", "UTF8",
         "--locale=C.UTF-8", "-U", "postgres", "--auth-local=peer",
         "--auth-host=scram-sha-256"], as_postgres=True, what=f"initdb of {cluster}")
    (data / "pg_hba.conf").write_text(PG_HBA)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(_pg_settings(paths, cluster, port))
    logfile = paths.cluster_log(cluster)
    logfile.touch()
    os.chown(logfile, uid, gid)  # pg_ctl opens it as postgres


def _clear_stale_locks(paths: LabPaths, cluster: str, port: int) -> None:
    """Remove the lock files a crashed server left, so that it can start again.

    PostgreSQL refuses to start while the PID in postmaster.pid (or in the socket lock file)
    exists, and after a crash that PID can be a zombie that init has not reaped yet, or a
    reused PID. Removing them is safe only once no process of the old server is left.
    """
    data = paths.cluster_dir(cluster)
    locks = [data / "postmaster.pid", paths.pg_socket_dir / f".s.PGSQL.{port}.lock"]
    if not any(lock.exists() for lock in locks):
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while (left := processes_in(data)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        raise LabError(f"processes {left} still run in {data}; stop them before `up`")
    log.info("removing stale lock files of PostgreSQL %s", cluster)
    for lock in locks:
        lock.unlink(missing_ok=True)


def start_cluster(paths: LabPaths, cluster: str, port: int) -> int:
    data = paths.cluster_dir(cluster)
    _clear_stale_locks(paths, cluster, port)
    # pg_ctl -w waits until the server accepts connections.
    logfile = paths.cluster_log(cluster)
    try:
        run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t",
             str(int(READY_TIMEOUT)), "-o", PG_START_OPTIONS, "start"],
            as_postgres=True, what="pg_ctl start")
    except LabError as exc:
        # pg_ctl itself only says "Examine the log output": the reason is in the log.
        raise LabError(f"PostgreSQL {cluster} did not start ({exc}): {log_tail(logfile)}"
                       ) from None
    pid = postmaster_pid(data)
    if pid is None:
        raise LabError(f"PostgreSQL {cluster} started but wrote no postmaster.pid")
    return pid


def stop_cluster(paths: LabPaths, cluster: str) -> None:
    run([str(PG_BIN / "pg_ctl"), "-D", str(paths.cluster_dir(cluster)), "-m", "fast", "-w",
         "-t", str(int(STOP_TIMEOUT * 3)), "stop"],
        as_postgres=True, what=f"stopping PostgreSQL {cluster}")


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first)
    except (OSError, ValueError):
        return None


def probe_postgres(port: int) -> bool:
    # PQping, as pg_isready does: asks "accepting connections?" without authenticating.
    from psycopg import pq

    conninfo = f"host={HOST} port={port} dbname=postgres connect_timeout=2".encode()
    return pq.PGconn.ping(conninfo) == pq.Ping.OK


# --- the role migrate and its passfiles ----------------------------------------------------

def _scram_verifier(password: str, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it.

    Computed here so the plaintext password never reaches the server, its logs or psql.
    """
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _roles_sql(cluster: str, verifier: str) -> str:
    roles = [(PG_ROLE, "LOGIN SUPERUSER")]
    if cluster == "source":
        roles.append((SOURCE_OWNER, "NOLOGIN"))
    sql = []
    for role, options in roles:
        sql.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {role}; END IF; END $$;")
        sql.append(f"ALTER ROLE {role} {options};")
    sql.append(f"ALTER ROLE {PG_ROLE} PASSWORD '{verifier}';")
    return "\n".join(sql) + "\n"


def provision_cluster(paths: LabPaths, cluster: str, port: int, state: dict) -> None:
    """Create the roles and give `migrate` a fresh random password, kept only in pgpass."""
    step = f"pg-{cluster}:roles"
    if step in state["steps"] and _has_pgpass_line(paths, port):
        return
    password = secrets.token_hex(24)  # hex: no characters that pgpass would need escaped
    run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
         str(paths.pg_socket_dir), "-p", str(port), "-d", "postgres", "-f", "-"],
        as_postgres=True, stdin=_roles_sql(cluster, _scram_verifier(password)),
        what=f"creating roles on PostgreSQL {cluster}")
    _set_pgpass_line(paths, port, password)
    state["steps"].append(step)


def _has_pgpass_line(paths: LabPaths, port: int) -> bool:
    # A deleted or edited passfile is repaired with a new password rather than left broken.
    try:
        return any(line.startswith(f"{HOST}:{port}:")
                   for line in paths.pgpass.read_text().splitlines())
    except FileNotFoundError:
        return False


def _set_pgpass_line(paths: LabPaths, port: int, password: str) -> None:
    prefix = f"{HOST}:{port}:"
    lines = []
    if paths.pgpass.exists():
        lines = [line for line in paths.pgpass.read_text().splitlines()
                 if line and not line.startswith(prefix)]
    lines.append(f"{prefix}*:{PG_ROLE}:{password}")
    write_private(paths.pgpass, "\n".join(lines) + "\n")


def write_replication_pgpass(paths: LabPaths, target_port: int, target: Path | None = None) -> None:
    """One cluster's line of the passfile, for the other cluster's own processes.

    A subscription on the source connects to the target from a backend of the source, as the
    postgres OS user: its conninfo names this file (`passfile=...`) instead of carrying a
    password that would be readable in pg_subscription. (The same, the other way, for the warm
    sync's subscription on the target: `target` is then `paths.sync_pgpass`.)
    """
    prefix = f"{HOST}:{target_port}:"
    lines = [line for line in paths.pgpass.read_text().splitlines() if line.startswith(prefix)]
    text = "\n".join(lines) + "\n"
    target = target or paths.replication_pgpass
    if target.exists() and target.read_text() == text:
        return
    uid, gid = postgres_ids()
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchown(fd, uid, gid)  # before any byte is written: never readable by anyone else
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, target)


def admin(paths: LabPaths, port: int, dbname: str = "postgres"):
    import psycopg

    # A frozen database (default_transaction_read_only=on, as a cutover may leave it) must
    # not stop the lab from dropping its subscriptions.
    return psycopg.connect(dsn(paths, port, dbname), autocommit=True,
                           options="-c default_transaction_read_only=off")


def warn_without_logical_wal(paths: LabPaths, port: int) -> None:
    # A cluster started by an older lab keeps its wal_level until it restarts.
    with admin(paths, port) as conn:
        (level,) = conn.execute("SHOW wal_level").fetchone()
    if level != "logical":
        log.warning("PostgreSQL on port %s runs with wal_level=%s: logical replication needs "
                    "a restart (`migrate lab down`, then `migrate lab up`)", port, level)
