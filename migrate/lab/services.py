"""The lab's infrastructure: two PostgreSQL clusters, three SSH hosts, an S3 (and Route53)
endpoint, and the web stand-ins of the applications and of the front door.

Everything listens on 127.0.0.1 and lives under one lab directory (see CONTRACT.md for the
layout). `up` builds what is missing and starts what is not running, `down` stops exactly the
processes the lab started (by recorded PID, never by name), `status` probes each service,
`reseed` puts the lab back to its initial state with fresh synthetic data, and `reset` puts it
back to the state right after the last seed, fast (for tests).

Secrets (PostgreSQL passwords, S3 keys, the SSH client key) live only in files under
`secrets/` and `ssh/`; lab.json, logs and return values carry paths, never secret values.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import fcntl
import hashlib
import hmac
import importlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

__all__ = [
    "BUCKET",
    "LabError",
    "LabPaths",
    "LabPorts",
    "down",
    "lab_paths",
    "reseed",
    "reset",
    "status",
    "up",
]

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding migrate/
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
HOST = "127.0.0.1"
PG_OS_USER = "postgres"
PG_ROLE = "migrate"
SOURCE_OWNER = "hr_owner"
DATABASES = ("personale", "presenze")
BUCKET = "comune-migration-staging"
REGION = "eu-south-1"
APP_SERVICES = ("personale", "presenze")

# The directories each SSH host starts with, relative to its root/ (playbooks use it as
# host_root). The application hosts have the software installed (directories), but only
# src-app has configs, running services and a collector buffer (see _write_initial_hosts).
APP_TREE = ("etc/hr", "run/hr", "var/lib/hr", "var/spool/hr/presenze",
            "srv/personale/documents")
HOST_TREES = {
    "src-app": APP_TREE,
    "tgt-app": APP_TREE,
    "front": ("etc/front",),
}
ARCHIVE_DIR = "srv/personale/documents"  # on src-app; written by the seed, not by us
SPOOLED_PUNCHES = 3

# The users' entry points: CNAMEs in a public zone of moto's Route53.
DNS_ZONE = "comune.lab."
DNS_RECORDS = tuple(f"{service}.{DNS_ZONE}" for service in APP_SERVICES)
DNS_SOURCE = f"src-app.{DNS_ZONE}"
DNS_TTL = 60

# Source databases are copied to these templates right after a seed; `reset` recreates the
# source from them in a fraction of the time a reseed takes.
TEMPLATE_PREFIX = "lab_seed_"

STATE_VERSION = 1
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Linux limits a unix socket path to 107 bytes; PostgreSQL refuses longer socket paths late
# and obscurely, so check up front.
MAX_SOCKET_PATH = 100
# A clean environment for the servers: the caller's AWS credentials and the like stay out of
# /proc/PID/environ of processes that do not need them.
SERVER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


class LabError(Exception):
    """An operator-facing failure of the lab, with a one-line message."""


@dataclass(frozen=True)
class LabPorts:
    # Below Linux's ephemeral range (32768-60999): a port in it can be taken at any moment by
    # the local end of some outgoing connection, and `up` would then find it "held".
    pg_source: int = 15432
    pg_target: int = 15433
    ssh_src_app: int = 12201
    ssh_tgt_app: int = 12202
    s3: int = 15900
    ssh_front: int = 12203
    http_src_app: int = 12281
    http_tgt_app: int = 12282
    http_front: int = 12280


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def pg_socket_dir(self) -> Path:
        return self.run / "pg"

    @property
    def lock_file(self) -> Path:
        return self.run / "lab.lock"

    @property
    def pg(self) -> Path:
        return self.root / "pg"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def pgpass(self) -> Path:
        return self.secrets / "pgpass"

    @property
    def s3_ini(self) -> Path:
        return self.secrets / "s3.ini"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def client_key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def s3_dir(self) -> Path:
        return self.root / "s3"

    @property
    def web_dir(self) -> Path:
        return self.root / "web"

    @property
    def replication_pgpass(self) -> Path:
        # Read by the source cluster's own processes (a subscription's apply worker), so it
        # lives outside secrets/ (0700, root) and belongs to the postgres OS user.
        return self.pg / "replication.pgpass"

    @property
    def baseline(self) -> Path:
        return self.root / "baseline"

    def cluster_dir(self, cluster: str) -> Path:
        return self.pg / cluster

    def cluster_log(self, cluster: str) -> Path:
        return self.pg / f"{cluster}.log"

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def host_root(self, host: str) -> Path:
        return self.host_dir(host) / "root"

    def sshd_config(self, host: str) -> Path:
        return self.host_dir(host) / "sshd_config"

    def host_key(self, host: str) -> Path:
        return self.host_dir(host) / "ssh_host_ed25519_key"


def lab_paths(lab_dir: Path | str) -> LabPaths:
    """Where everything lives; absolute, because sshd and libpq need absolute paths."""
    return LabPaths(Path(lab_dir).absolute())


# --- services ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Service:
    name: str  # pg-source, pg-target, src-app, tgt-app, front, s3, web
    kind: str  # postgres, sshd, moto, web
    port: int
    more_ports: tuple[int, ...] = ()  # the web process listens on three ports

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.more_ports)


def _services(ports: LabPorts) -> list[Service]:
    # Order matters: S3, the SSH hosts and the web process start in the background while the
    # clusters start.
    return [
        Service("s3", "moto", ports.s3),
        Service("src-app", "sshd", ports.ssh_src_app),
        Service("tgt-app", "sshd", ports.ssh_tgt_app),
        Service("front", "sshd", ports.ssh_front),
        Service("web", "web", ports.http_front, (ports.http_src_app, ports.http_tgt_app)),
        Service("pg-source", "postgres", ports.pg_source),
        Service("pg-target", "postgres", ports.pg_target),
    ]


def _web_ports(ports: LabPorts) -> dict[str, int]:
    return {"src-app": ports.http_src_app, "tgt-app": ports.http_tgt_app,
            "front": ports.http_front}


def _cluster(svc: Service) -> str:
    return svc.name.removeprefix("pg-")


def _moto_binary() -> Path:
    # Next to the interpreter that runs us (the venv's bin/), not resolved through symlinks:
    # resolving would land in the system Python's bin/, where moto is not installed.
    return Path(sys.executable).parent / "moto_server"


def _identity(paths: LabPaths, svc: Service) -> list[str]:
    """Words the command line of this service's process must contain.

    A recorded PID can be reused by an unrelated process after a crash or reboot; checking the
    command line makes sure we only ever treat as ours (and signal) our own server. Matched as
    substrings: sshd rewrites its title to "sshd: /usr/sbin/sshd -D -e -f CONFIG [listener] ...".
    """
    if svc.kind == "postgres":
        return [f"-D {paths.cluster_dir(_cluster(svc))}"]
    if svc.kind == "sshd":
        return [str(SSHD), f"-f {paths.sshd_config(svc.name)}"]
    if svc.kind == "web":
        return ["-m migrate.lab.webapps", f"--lab-dir {paths.root}"]
    return [str(_moto_binary()), f"-p {svc.port}"]


# --- processes -----------------------------------------------------------------------------

# Servers started by this Python process, kept so they can be reaped once stopped (a zombie
# still has a /proc entry) and so that Popen does not warn about them being dropped.
_SPAWNED: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    proc = _SPAWNED.get(pid)
    if proc is not None and proc.poll() is not None:
        del _SPAWNED[pid]


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _pid_is(pid: int | None, identity: list[str]) -> bool:
    """True if `pid` is alive and is the process described by `identity`."""
    if not pid:
        return False
    _reap(pid)
    args = _cmdline(pid)
    if not args:  # gone, or a zombie (empty cmdline)
        return False
    # The trailing space makes "-D /lab/pg/source" not match "-D /lab/pg/source2".
    return all(word + " " in args + " " for word in identity)


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (sshd forks one process per connection, in its own session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may contain spaces: parse after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _wait_gone(pid: int, identity: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_is(pid, identity):
            return True
        time.sleep(0.05)
    return not _pid_is(pid, identity)


def _terminate(pid: int, identity: list[str]) -> None:
    """SIGTERM, then SIGKILL after a grace period; only if `pid` is still our process."""
    if not _pid_is(pid, identity):
        return
    os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, identity, STOP_TIMEOUT):
        return
    log.warning("pid %s ignored SIGTERM; sending SIGKILL", pid)
    os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, identity, STOP_TIMEOUT):
        raise LabError(f"process {pid} did not stop")


def _run(argv: list[str], *, as_postgres: bool = False, stdin: str | None = None,
         what: str) -> str:
    """Run a short command; a failure becomes a LabError naming `what` and the output tail."""
    if as_postgres:
        argv = ["runuser", "-u", PG_OS_USER, "--", *argv]
    # cwd=/ because the postgres user cannot enter the caller's directory (often /root).
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd="/",
                          env=SERVER_ENV, start_new_session=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LabError(f"{what} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "empty log"


# --- ports and probes ----------------------------------------------------------------------

def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so that a just-closed connection in TIME_WAIT does not count as taken;
        # a listening socket (on 127.0.0.1 or 0.0.0.0) still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _require_free_ports(pending: list[Service]) -> None:
    for svc in pending:
        for port in svc.ports:
            if not _port_is_free(port):
                raise LabError(
                    f"port {port} on {HOST} (for {svc.name}) is held by another process; "
                    f"stop it or choose another port — nothing was started")


def _probe(svc: Service) -> bool:
    if svc.kind == "postgres":
        return _probe_postgres(svc.port)
    if svc.kind == "sshd":
        return _probe_banner(svc.port, b"SSH-")
    return all(_probe_http(port) for port in svc.ports)


def _probe_postgres(port: int) -> bool:
    # PQping, as pg_isready does: asks "accepting connections?" without authenticating.
    from psycopg import pq

    conninfo = f"host={HOST} port={port} dbname=postgres connect_timeout=2".encode()
    return pq.PGconn.ping(conninfo) == pq.Ping.OK


def _probe_banner(port: int, prefix: bytes) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            return sock.recv(64).startswith(prefix)
    except OSError:
        return False


def _probe_http(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _wait_ready(paths: LabPaths, svc: Service, pid: int, log_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    identity = _identity(paths, svc)
    while time.monotonic() < deadline:
        if _probe(svc):
            return
        if not _pid_is(pid, identity):
            raise LabError(f"{svc.name} exited during startup: {_log_tail(log_file)}")
        time.sleep(0.05)
    raise LabError(f"{svc.name} not ready on port {svc.port} after {READY_TIMEOUT:.0f}s: "
                   f"{_log_tail(log_file)}")


# --- state (lab.json) ----------------------------------------------------------------------

def _read_state(paths: LabPaths) -> dict | None:
    try:
        return json.loads(paths.state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {paths.state_file}: {exc}") from None


def _write_state(paths: LabPaths, state: dict) -> None:
    # Write-temp-then-rename: a crash never leaves a half-written lab.json.
    tmp = paths.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, paths.state_file)


def _new_state(ports: LabPorts) -> dict:
    return {"version": STATE_VERSION, "ports": asdict(ports), "pids": {}, "steps": [],
            "seeded": None}


def _ports_of(state: dict) -> LabPorts:
    return LabPorts(**state["ports"])


def _check_distinct(ports: LabPorts) -> LabPorts:
    taken = list(asdict(ports).values())
    if len(set(taken)) != len(taken):
        raise LabError(f"lab ports must be distinct: {asdict(ports)}")
    return ports


def _resolve_ports(state: dict | None, wanted: LabPorts | None) -> LabPorts:
    if state is None:
        return _check_distinct(wanted or LabPorts())
    recorded = state["ports"]
    # A lab built before some services existed records fewer ports: the new ones come from
    # the caller (or the defaults), and `up` records them.
    missing = {name: port for name, port in asdict(wanted or LabPorts()).items()
               if name not in recorded}
    if missing:
        _check_distinct(LabPorts(**recorded, **missing))
        state["ports"] = {**recorded, **missing}
    if wanted is not None and wanted != _ports_of(state):
        raise LabError(f"this lab was built with ports {state['ports']}; "
                       f"run `down --purge` to rebuild it with other ports")
    return _ports_of(state)


def _running(paths: LabPaths, state: dict, svc: Service) -> int | None:
    """The PID of this service if it is running as ours, else None."""
    if svc.kind == "postgres":
        # postmaster.pid is the cluster's own truth (it also covers a manual pg_ctl start).
        pid = _postmaster_pid(paths.cluster_dir(_cluster(svc)))
    else:
        pid = state["pids"].get(svc.name)
    return pid if _pid_is(pid, _identity(paths, svc)) else None


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(paths: LabPaths) -> Iterator[None]:
    """One `up`/`down`/`reseed` at a time per lab directory."""
    paths.run.mkdir(parents=True, exist_ok=True)
    with open(paths.lock_file, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(f"another lab command is running on {paths.root}") from None
        yield


# --- building: directories, keys, secrets, configs -----------------------------------------

def _postgres_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise LabError(f"OS user {PG_OS_USER!r} is missing (apt-get install postgresql)") from None
    return entry.pw_uid, entry.pw_gid


def _check_prerequisites(paths: LabPaths) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab must be started as root (it runs sshd and switches to postgres)")
    for binary in (PG_BIN / "initdb", SSHD, SFTP_SERVER, _moto_binary()):
        if not binary.exists():
            raise LabError(f"{binary} is missing")
    _postgres_ids()
    socket_path = paths.pg_socket_dir / ".s.PGSQL.65535.lock"
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise LabError(f"lab directory path is too long for a unix socket: {paths.root}")
    _check_reachable_by_postgres(paths.root)


def _check_reachable_by_postgres(lab_dir: Path) -> None:
    # The postgres OS user must traverse every parent of the lab directory to reach its data
    # directory and socket; pytest's /tmp/pytest-of-root (mode 0700) is a classic trap.
    for parent in reversed(lab_dir.parents):
        if not parent.exists():
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise LabError(f"{parent} (mode {mode & 0o777:o}) is not searchable by the "
                           f"{PG_OS_USER} user; put the lab under a traversable directory")


def _make_dirs(paths: LabPaths) -> None:
    uid, gid = _postgres_ids()
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o755)  # postgres must traverse it; secrets/ and ssh/ stay private
    for private in (paths.secrets, paths.ssh):
        private.mkdir(mode=0o700, exist_ok=True)
    for public in (paths.run, paths.pg, paths.s3_dir, paths.web_dir):
        public.mkdir(mode=0o755, exist_ok=True)
    paths.baseline.mkdir(mode=0o700, exist_ok=True)
    paths.pg_socket_dir.mkdir(mode=0o755, exist_ok=True)
    os.chown(paths.pg_socket_dir, uid, gid)  # the clusters create their sockets here
    for host, trees in HOST_TREES.items():
        for tree in trees:
            (paths.host_root(host) / tree).mkdir(parents=True, exist_ok=True)


def _write_private(path: Path, text: str) -> None:
    """Write a secret file 0600 from the first byte (no window with looser permissions)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _ensure_keypair(key: Path, comment: str) -> None:
    if key.exists() and key.with_suffix(".pub").exists():
        return
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
         what=f"ssh-keygen for {key.name}")


def _sshd_config(paths: LabPaths, host: str, port: int) -> str:
    hdir = paths.host_dir(host)
    return "\n".join([
        f"# sshd for the lab host {host}; generated by migrate.lab.services",
        f"Port {port}",
        f"ListenAddress {HOST}",
        f"HostKey {paths.host_key(host)}",
        f"PidFile {hdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {hdir / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "AllowUsers root",
        # Lab only: the lab directory may sit under a world-writable directory such as /tmp in
        # tests, and StrictModes would then refuse the authorized keys. Never do this in prod.
        "StrictModes no",
        "PrintMotd no",
        "X11Forwarding no",
        f"Subsystem sftp {SFTP_SERVER}",
        "",
    ])


def _build_hosts(paths: LabPaths, ports: LabPorts) -> None:
    _ensure_keypair(paths.client_key, "migrate-lab-orchestrator")
    client_pub = paths.client_key.with_suffix(".pub").read_text()
    host_ports = {"src-app": ports.ssh_src_app, "tgt-app": ports.ssh_tgt_app,
                  "front": ports.ssh_front}
    known = []
    for host, port in host_ports.items():
        _ensure_keypair(paths.host_key(host), host)
        _write_if_changed(paths.host_dir(host) / "authorized_keys", client_pub)
        _write_if_changed(paths.sshd_config(host), _sshd_config(paths, host, port))
        key_type, key_b64 = paths.host_key(host).with_suffix(".pub").read_text().split()[:2]
        known.append(f"[{HOST}]:{port} {key_type} {key_b64}\n")
    _write_if_changed(paths.known_hosts, "".join(known))


def _ensure_s3_credentials(paths: LabPaths) -> None:
    if paths.s3_ini.exists():
        return
    config = configparser.ConfigParser()
    config["lab"] = {
        "aws_access_key_id": "LAB" + secrets.token_hex(8).upper(),
        "aws_secret_access_key": secrets.token_urlsafe(30),
    }
    lines = ["[lab]"] + [f"{key} = {value}" for key, value in config["lab"].items()]
    _write_private(paths.s3_ini, "\n".join(lines) + "\n")


def _s3_credentials(paths: LabPaths) -> tuple[str, str]:
    config = configparser.ConfigParser()
    if not config.read(paths.s3_ini):
        raise LabError(f"{paths.s3_ini} is missing")
    section = config["lab"]
    return section["aws_access_key_id"], section["aws_secret_access_key"]


# --- PostgreSQL ----------------------------------------------------------------------------

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


def _init_clusters(paths: LabPaths, state: dict, ports: LabPorts) -> None:
    """initdb the clusters that were never initialised, both at once (each takes ~0.7 s)."""
    wanted = {"source": ports.pg_source, "target": ports.pg_target}
    missing = [c for c in wanted if f"pg-{c}:initdb" not in state["steps"]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        # list() re-raises the first failure here.
        list(pool.map(lambda c: _init_cluster(paths, c, wanted[c]), missing))
    if missing:
        state["steps"].extend(f"pg-{c}:initdb" for c in missing)
        _write_state(paths, state)


def _init_cluster(paths: LabPaths, cluster: str, port: int) -> None:
    data = paths.cluster_dir(cluster)
    if data.exists():  # left half-built by a crash: start over, it holds nothing yet
        shutil.rmtree(data)
    uid, gid = _postgres_ids()
    data.mkdir(mode=0o700)
    os.chown(data, uid, gid)
    _run([str(PG_BIN / "initdb"), "-D", str(data), "--no-sync", "-E", "UTF8",
          "--locale=C.UTF-8", "-U", "postgres", "--auth-local=peer",
          "--auth-host=scram-sha-256"], as_postgres=True, what=f"initdb of {cluster}")
    (data / "pg_hba.conf").write_text(PG_HBA)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(_pg_settings(paths, cluster, port))
    logfile = paths.cluster_log(cluster)
    logfile.touch()
    os.chown(logfile, uid, gid)  # pg_ctl opens it as postgres


def _processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is `directory` (every PostgreSQL process
    chdirs into its data directory, whatever its title says)."""
    target = os.path.realpath(directory)  # the kernel reports cwd with symlinks resolved
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == target:
                    found.append(int(entry.name))
    return found


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
    while (left := _processes_in(data)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        raise LabError(f"processes {left} still run in {data}; stop them before `up`")
    log.info("removing stale lock files of PostgreSQL %s", cluster)
    for lock in locks:
        lock.unlink(missing_ok=True)


def _start_cluster(paths: LabPaths, cluster: str, port: int) -> int:
    data = paths.cluster_dir(cluster)
    _clear_stale_locks(paths, cluster, port)
    # pg_ctl -w waits until the server accepts connections.
    logfile = paths.cluster_log(cluster)
    try:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t",
              str(int(READY_TIMEOUT)), "-o", PG_START_OPTIONS, "start"],
             as_postgres=True, what="pg_ctl start")
    except LabError as exc:
        # pg_ctl itself only says "Examine the log output": the reason is in the log.
        raise LabError(f"PostgreSQL {cluster} did not start ({exc}): {_log_tail(logfile)}"
                       ) from None
    pid = _postmaster_pid(data)
    if pid is None:
        raise LabError(f"PostgreSQL {cluster} started but wrote no postmaster.pid")
    return pid


def _stop_cluster(paths: LabPaths, cluster: str) -> None:
    _run([str(PG_BIN / "pg_ctl"), "-D", str(paths.cluster_dir(cluster)), "-m", "fast", "-w",
          "-t", str(int(STOP_TIMEOUT * 3)), "stop"],
         as_postgres=True, what=f"stopping PostgreSQL {cluster}")


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


def _provision_cluster(paths: LabPaths, cluster: str, port: int, state: dict) -> None:
    """Create the roles and give `migrate` a fresh random password, kept only in pgpass."""
    step = f"pg-{cluster}:roles"
    if step in state["steps"] and _has_pgpass_line(paths, port):
        return
    password = secrets.token_hex(24)  # hex: no characters that pgpass would need escaped
    _run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
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
    _write_private(paths.pgpass, "\n".join(lines) + "\n")


def _dsn(paths: LabPaths, port: int, dbname: str) -> str:
    return f"host={HOST} port={port} dbname={dbname} user={PG_ROLE} passfile={paths.pgpass}"


def _warn_without_logical_wal(paths: LabPaths, port: int) -> None:
    # A cluster started by an older lab keeps its wal_level until it restarts.
    with _admin(paths, port) as conn:
        (level,) = conn.execute("SHOW wal_level").fetchone()
    if level != "logical":
        log.warning("PostgreSQL on port %s runs with wal_level=%s: logical replication needs "
                    "a restart (`migrate lab down`, then `migrate lab up`)", port, level)


def _write_replication_pgpass(paths: LabPaths, target_port: int) -> None:
    """The target's line of the passfile, for the source cluster's own processes.

    A subscription on the source connects to the target from a backend of the source, as the
    postgres OS user: its conninfo names this file (`passfile=...`) instead of carrying a
    password that would be readable in pg_subscription.
    """
    prefix = f"{HOST}:{target_port}:"
    lines = [line for line in paths.pgpass.read_text().splitlines() if line.startswith(prefix)]
    text = "\n".join(lines) + "\n"
    target = paths.replication_pgpass
    if target.exists() and target.read_text() == text:
        return
    uid, gid = _postgres_ids()
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchown(fd, uid, gid)  # before any byte is written: never readable by anyone else
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, target)


# --- sshd, moto and the web stand-ins ------------------------------------------------------

def _spawn(argv: list[str], log_file: Path, env: dict[str, str]) -> int:
    with open(log_file, "ab") as out:
        # A new session: Ctrl-C in the terminal that ran `up` must not take the lab down.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd="/", env=env,
                                start_new_session=True, close_fds=True)
    _SPAWNED[proc.pid] = proc
    return proc.pid


def _start_sshd(paths: LabPaths, host: str) -> tuple[int, Path]:
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    config = paths.sshd_config(host)
    _run([str(SSHD), "-t", "-f", str(config)], what=f"checking sshd config of {host}")
    log_file = paths.host_dir(host) / "sshd.log"
    return _spawn([str(SSHD), "-D", "-e", "-f", str(config)], log_file, SERVER_ENV), log_file


def _start_moto(paths: LabPaths, port: int) -> tuple[int, Path]:
    log_file = paths.s3_dir / "moto.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    argv = [str(_moto_binary()), "-H", HOST, "-p", str(port)]
    return _spawn(argv, log_file, env), log_file


def _start_web(paths: LabPaths, svc: Service) -> tuple[int, Path]:
    log_file = paths.web_dir / "web.log"
    src_app, tgt_app = svc.more_ports
    argv = [sys.executable, "-m", "migrate.lab.webapps", "--lab-dir", str(paths.root),
            "--src-app", str(src_app), "--tgt-app", str(tgt_app), "--front", str(svc.port)]
    # This checkout's code, whatever the caller's working directory; no PG* variables, so
    # libpq takes only what the applications' configs say.
    env = {**SERVER_ENV, "PYTHONPATH": str(PACKAGE_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return _spawn(argv, log_file, env), log_file


def _aws_client(paths: LabPaths, port: int, service: str):
    import boto3
    from botocore.config import Config

    key_id, secret = _s3_credentials(paths)
    config = Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    return boto3.client(service, endpoint_url=f"http://{HOST}:{port}", region_name=REGION,
                        aws_access_key_id=key_id, aws_secret_access_key=secret, config=config)


def _s3_client(paths: LabPaths, port: int):
    return _aws_client(paths, port, "s3")


def _ensure_bucket(paths: LabPaths, port: int) -> None:
    # moto keeps everything in memory: after a restart the bucket is gone, so (re)create it.
    client = _s3_client(paths, port)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if BUCKET in existing:
        return
    client.create_bucket(Bucket=BUCKET,
                         CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET,
                                 VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    client.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True})


def _empty_bucket(paths: LabPaths, port: int) -> None:
    client = _s3_client(paths, port)
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=BUCKET):
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                  for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if doomed:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": doomed, "Quiet": True})


# --- DNS (moto's Route53) ------------------------------------------------------------------

def _find_zone(client) -> str | None:
    zones = client.list_hosted_zones_by_name(DNSName=DNS_ZONE).get("HostedZones", [])
    return next((zone["Id"] for zone in zones if zone["Name"] == DNS_ZONE), None)


def _record_sets(client, zone_id: str) -> list[dict]:
    """Every record set of the zone but the apex SOA and NS, which belong to the zone."""
    found = []
    for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
        found += [rs for rs in page["ResourceRecordSets"]
                  if not (rs["Name"] == DNS_ZONE and rs["Type"] in ("SOA", "NS"))]
    return found


def _initial_changes(client, zone_id: str) -> list[dict]:
    """Changes that leave exactly the initial records: the services' CNAMEs to src-app."""
    changes = [{"Action": "DELETE", "ResourceRecordSet": rs}
               for rs in _record_sets(client, zone_id)
               if not (rs["Name"] in DNS_RECORDS and rs["Type"] == "CNAME")]
    changes += [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": name, "Type": "CNAME", "TTL": DNS_TTL,
        "ResourceRecords": [{"Value": DNS_SOURCE}]}} for name in DNS_RECORDS]
    return changes


def _reset_dns(paths: LabPaths, port: int, *, only_if_new: bool = False) -> None:
    """The zone with its initial records; with only_if_new, leave an existing zone alone.

    `up` uses only_if_new: a cutover's DNS change must survive a later `up`. moto keeps the
    zone in memory, so after a moto restart it is created again.
    """
    client = _aws_client(paths, port, "route53")
    zone_id = _find_zone(client)
    if zone_id is not None and only_if_new:
        return
    if zone_id is None:
        zone_id = client.create_hosted_zone(
            Name=DNS_ZONE, CallerReference=f"migrate-lab-{time.time_ns()}",
            HostedZoneConfig={"Comment": "migrate lab: the Comune's public names",
                              "PrivateZone": False})["HostedZone"]["Id"]
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
        "Comment": "lab initial state", "Changes": _initial_changes(client, zone_id)})


def _dns_status(paths: LabPaths, port: int, s3_up: bool) -> dict:
    result = {"zone": DNS_ZONE, "zone_id": None, "records": {}}
    if not s3_up:
        return result
    client = _aws_client(paths, port, "route53")
    zone_id = _find_zone(client)
    if zone_id is None:
        return result
    result["zone_id"] = zone_id
    for rs in _record_sets(client, zone_id):
        values = [r["Value"] for r in rs.get("ResourceRecords", [])]
        if "AliasTarget" in rs:
            values.append(rs["AliasTarget"]["DNSName"])
        result["records"][rs["Name"]] = ",".join(values)
    return result


# --- starting and stopping services --------------------------------------------------------

def _launch_background(paths: LabPaths, svc: Service) -> tuple[int, Path]:
    """Start sshd, moto or the web process without waiting; returns its PID and its log."""
    if svc.kind == "sshd":
        return _start_sshd(paths, svc.name)
    if svc.kind == "web":
        return _start_web(paths, svc)
    return _start_moto(paths, svc.port)


def _stop(paths: LabPaths, svc: Service, pid: int) -> None:
    identity = _identity(paths, svc)
    if not _pid_is(pid, identity):
        return
    if svc.kind == "postgres":
        _stop_cluster(paths, _cluster(svc))
    else:
        # Connection processes of sshd run in their own sessions and would outlive the
        # listener (an ansible ControlPersist connection, say): stop them first.
        if svc.kind == "sshd":
            for child in _children(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
        _terminate(pid, identity)
    if not _wait_gone(pid, identity, STOP_TIMEOUT):
        raise LabError(f"{svc.name} (pid {pid}) did not stop")


def _start_pending(paths: LabPaths, state: dict, ports: LabPorts, pending: list[Service],
                   on_started: Callable[[Service, int], None]) -> None:
    """Start every pending service and return once all of them answer.

    sshd, moto and the web process start in the background first, so that moto's slow import
    overlaps with initdb and the cluster starts (pg_ctl -w returns only when a cluster is
    ready).
    """
    watching = []
    for svc in pending:
        if svc.kind != "postgres":
            pid, log_file = _launch_background(paths, svc)
            on_started(svc, pid)
            watching.append((svc, pid, log_file))
    _init_clusters(paths, state, ports)
    for svc in pending:
        if svc.kind == "postgres":
            on_started(svc, _start_cluster(paths, _cluster(svc), svc.port))
    for svc, pid, log_file in watching:
        _wait_ready(paths, svc, pid, log_file)


def _provision(paths: LabPaths, state: dict, ports: LabPorts, s3_started: bool) -> None:
    _provision_cluster(paths, "source", ports.pg_source, state)
    _provision_cluster(paths, "target", ports.pg_target, state)
    _write_replication_pgpass(paths, ports.pg_target)
    for port in (ports.pg_source, ports.pg_target):
        _warn_without_logical_wal(paths, port)
    if s3_started:
        _ensure_bucket(paths, ports.s3)
    _reset_dns(paths, ports.s3, only_if_new=True)


def _seed(paths: LabPaths, ports: LabPorts, *, employees: int, years: int, seed: int) -> dict:
    # Looked up at call time through the import system, so tests can swap in a stub module.
    try:
        data = importlib.import_module("migrate.lab.data")
    except ModuleNotFoundError as exc:
        raise LabError(f"cannot seed the source: {exc}") from None
    result = data.seed(admin_dsn=_dsn(paths, ports.pg_source, "postgres"),
                       archive_dir=paths.host_root("src-app") / ARCHIVE_DIR,
                       employees=employees, years=years, seed=seed)
    _make_baseline(paths, ports)
    return {"employees": employees, "years": years, "seed": seed, "result": result,
            "baseline": True}


# --- the post-seed baseline ----------------------------------------------------------------
#
# Right after a seed the lab is in its initial state: the source applications run on src-app
# against the source databases, the collector holds a few late punches, the front door and
# DNS send users to src-app, tgt-app is installed but empty. `_make_baseline` writes that
# state and keeps what `reset` needs to bring it back fast: template copies of the source
# databases and a copy of every host's tree.

SOURCE_CONFIGS = {
    "personale": """\
# Personnel management (gestione giuridica del personale): personale
# On-premises installation (lab source host).
[database]
dsn = {dsn}

[documents]
root = /srv/personale/documents
""",
    "presenze": """\
# Staff attendance (rilevazione presenze): presenze
# On-premises installation (lab source host).
[database]
dsn = {dsn}

[collector]
# Terminals upload late punches: the collector drains its buffer before a freeze.
spool = /var/spool/hr/presenze
buffer_drain_seconds = 60
""",
}

# The front door's file is rendered from the template the cutover renders it from (with
# Ansible's template settings), so a rollback puts back the very same bytes.
FRONT_TEMPLATE = PACKAGE_ROOT / "templates" / "front_upstreams.conf.j2"


def _front_upstreams(upstreams: dict[str, str]) -> str:
    import jinja2
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.from_string(FRONT_TEMPLATE.read_text()).render(upstreams=upstreams)

# Three active employees who have punched before, each with the badge they hold and their
# home terminal; the late punch is the one that follows their last punch, an hour later.
SPOOL_QUERY = """
SELECT s.employee_id, b.badge_id, s.home_terminal_id, last.punched_at, last.direction
FROM staff s
LEFT JOIN LATERAL (SELECT badge_id FROM badge
                   WHERE employee_id = s.employee_id AND valid_to IS NULL AND NOT lost
                   ORDER BY badge_id DESC LIMIT 1) b ON true
JOIN LATERAL (SELECT punched_at, direction FROM punch
              WHERE employee_id = s.employee_id
              ORDER BY punched_at DESC, punch_id DESC LIMIT 1) last ON true
WHERE s.active
ORDER BY s.employee_id
LIMIT %s"""


def _source_dsn(ports: LabPorts, dbname: str) -> str:
    # No passfile and no password: the application brings its own credentials.
    return f"host={HOST} port={ports.pg_source} dbname={dbname} user={PG_ROLE}"


def _app_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def _spooled_punches(paths: LabPaths, ports: LabPorts) -> list[dict]:
    """The collector's late punches, derived from the seeded data (so deterministic)."""
    from zoneinfo import ZoneInfo

    import psycopg

    rome = ZoneInfo("Europe/Rome")
    try:
        with psycopg.connect(_dsn(paths, ports.pg_source, "presenze")) as conn:
            rows = conn.execute(SPOOL_QUERY, (SPOOLED_PUNCHES,)).fetchall()
    except psycopg.errors.UndefinedTable:
        # A stub seed (tests of the infrastructure) has no attendance tables: no buffer.
        log.info("presenze has no attendance tables: no late punches spooled")
        return []
    return [{"employee_id": employee_id, "badge_id": badge_id, "terminal_id": terminal_id,
             "direction": "OUT" if direction == "IN" else "IN",
             "punched_at": (punched_at + timedelta(hours=1)).astimezone(rome).isoformat()}
            for employee_id, badge_id, terminal_id, punched_at, direction in rows]


def _clear_tree(root: Path, keep: str | None = None) -> None:
    """Empty `root` except the subtree `keep` (relative) and the directories leading to it."""
    root.mkdir(parents=True, exist_ok=True)
    kept = root / keep if keep else None
    for entry in root.iterdir():
        if kept is not None and entry == kept:
            continue
        if kept is not None and entry.is_dir() and not entry.is_symlink() \
                and kept.is_relative_to(entry):
            _clear_tree(entry, str(kept.relative_to(entry)))
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _write_file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _write_initial_hosts(paths: LabPaths, ports: LabPorts, spool: list[dict]) -> None:
    """Every host's tree as right after a seed (src-app's document archive is the seed's)."""
    _clear_tree(paths.host_root("src-app"), keep=ARCHIVE_DIR)
    _clear_tree(paths.host_root("tgt-app"))
    _clear_tree(paths.host_root("front"))
    for host, trees in HOST_TREES.items():
        for tree in trees:
            (paths.host_root(host) / tree).mkdir(parents=True, exist_ok=True)
    src = paths.host_root("src-app")
    for service in APP_SERVICES:
        dsn = _source_dsn(ports, service)
        _write_file(src / "etc/hr" / f"{service}.conf",
                    SOURCE_CONFIGS[service].format(dsn=dsn), 0o600)
        # The lab's service manager: a service runs while its flag file exists.
        _write_file(src / "run/hr" / f"{service}.running", "started by the lab\n")
    for number, punch in enumerate(spool, start=1):
        _write_file(src / "var/spool/hr/presenze" / f"punch-{number:04d}.json",
                    json.dumps(punch, sort_keys=True) + "\n")
    _write_file(paths.host_root("front") / "etc/front/upstreams.conf",
                _front_upstreams({service: _app_url(ports.http_src_app) for service in APP_SERVICES}))


def _make_baseline(paths: LabPaths, ports: LabPorts) -> None:
    """Write the post-seed state and keep what `reset` restores it from."""
    _write_initial_hosts(paths, ports, _spooled_punches(paths, ports))
    _make_source_templates(paths, ports.pg_source)
    for host in HOST_TREES:
        saved = paths.baseline / "hosts" / host
        if saved.exists():
            shutil.rmtree(saved)
        shutil.copytree(paths.host_root(host), saved, symlinks=True)
    _reset_dns(paths, ports.s3)


def _admin(paths: LabPaths, port: int, dbname: str = "postgres"):
    import psycopg

    # A frozen database (default_transaction_read_only=on, as a cutover may leave it) must
    # not stop the lab from dropping its subscriptions.
    return psycopg.connect(_dsn(paths, port, dbname), autocommit=True,
                           options="-c default_transaction_read_only=off")


def _copy_database(conn, name: str, template: str) -> None:
    """CREATE DATABASE name as a copy of template, with the template's owner and settings.

    CREATE DATABASE copies the contents only: the per-database settings (the source's
    Europe/Rome time zone) live in a shared catalog and are copied here by hand.
    """
    import psycopg
    from psycopg import sql

    owner, oid = conn.execute("SELECT pg_get_userbyid(datdba), oid FROM pg_database "
                              "WHERE datname = %s", (template,)).fetchone()
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
        sql.Identifier(name), sql.Identifier(template), sql.Identifier(owner))
    for attempt in range(10):
        try:
            conn.execute(statement)
            break
        except psycopg.errors.ObjectInUse:  # a client of the template is just leaving
            if attempt == 9:
                raise
            time.sleep(0.2)
    settings = conn.execute("SELECT unnest(setconfig) FROM pg_db_role_setting "
                            "WHERE setdatabase = %s AND setrole = 0", (oid,)).fetchall()
    for (setting,) in settings:
        key, _, value = setting.partition("=")
        conn.execute(sql.SQL("ALTER DATABASE {} SET {} TO {}").format(
            sql.Identifier(name), sql.Identifier(key), sql.Literal(value)))


def _drop_template(conn, name: str) -> None:
    from psycopg import sql

    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def _make_source_templates(paths: LabPaths, port: int) -> None:
    from psycopg import sql

    with _admin(paths, port) as conn:
        for db in DATABASES:
            template = TEMPLATE_PREFIX + db
            _drop_template(conn, template)
            _copy_database(conn, template, db)
            # Nobody may connect (so it can always be copied) and no tool lists it as data.
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS "
                                 "false").format(sql.Identifier(template)))


def _restore_source(paths: LabPaths, port: int) -> None:
    from psycopg import sql

    with _admin(paths, port) as conn:
        for db in DATABASES:
            template = TEMPLATE_PREFIX + db
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (template,)).fetchone():
                raise LabError(f"template {template} is missing; run `migrate lab seed`")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(db)))
            _copy_database(conn, db, template)


def _drop_replication(paths: LabPaths, ports: list[int]) -> None:
    """Drop every subscription, then every replication slot, on the given clusters.

    A subscription or a slot makes DROP DATABASE fail, even WITH (FORCE). A subscription is
    detached from its remote slot first (disable, slot_name = NONE): the remote end may be
    gone, and its slot is dropped on its own cluster below.
    """
    from psycopg import sql

    for port in ports:
        with _admin(paths, port) as conn:
            subscriptions = conn.execute(
                "SELECT d.datname, s.subname, d.datallowconn FROM pg_subscription s "
                "JOIN pg_database d ON d.oid = s.subdbid ORDER BY 1, 2").fetchall()
            for db in {db for db, _, allowed in subscriptions if not allowed}:
                # Closed to connections (a freeze may do that): the database is about to be
                # dropped or recreated anyway.
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(db)))
        for db, name, _ in subscriptions:
            with _admin(paths, port, db) as conn:
                ident = sql.Identifier(name)
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    for port in ports:
        with _admin(paths, port) as conn:
            for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
                _drop_slot(conn, slot)


def _drop_slot(conn, slot: str) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                           (slot,)).fetchone()
        if row is None:
            return
        if row[0] is None:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        if time.monotonic() > deadline:
            raise LabError(f"replication slot {slot} stays in use")
        # The walsender of a subscriber that is still connected (or reconnecting).
        conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        time.sleep(0.1)


def _sync_tree(saved: Path, live: Path) -> None:
    """Make `live` an exact copy of `saved` (files, directories, modes), touching only what
    differs: the document archive can be large, and most of it is never changed."""
    live.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(live):
        here, there = Path(dirpath), saved / Path(dirpath).relative_to(live)
        for name in list(dirnames) + filenames:
            if _kind(here / name) != _kind(there / name):
                _remove(here / name)
                if name in dirnames:
                    dirnames.remove(name)
    for dirpath, dirnames, filenames in os.walk(saved):
        there, here = Path(dirpath), live / Path(dirpath).relative_to(saved)
        here.mkdir(exist_ok=True)
        shutil.copymode(there, here)
        for name in filenames:
            if _differs(there / name, here / name):
                tmp = here / f".{name}.lab-restore"
                shutil.copy2(there / name, tmp, follow_symlinks=False)
                os.replace(tmp, here / name)


def _kind(path: Path) -> str | None:
    if path.is_symlink():
        return "link"
    if path.is_dir():
        return "dir"
    return "file" if path.exists() else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _differs(saved: Path, live: Path) -> bool:
    if not live.exists() and not live.is_symlink():
        return True
    if saved.is_symlink():
        return os.readlink(saved) != os.readlink(live)
    a, b = saved.stat(), live.stat()
    # copy2 keeps the modification time to the nanosecond: any later write changes it.
    return (a.st_size, a.st_mtime_ns, a.st_mode) != (b.st_size, b.st_mtime_ns, b.st_mode)


def _restore_hosts(paths: LabPaths) -> None:
    for host in HOST_TREES:
        saved = paths.baseline / "hosts" / host
        if not saved.is_dir():
            raise LabError(f"{saved} is missing; run `migrate lab seed`")
        _sync_tree(saved, paths.host_root(host))


# --- public API ----------------------------------------------------------------------------

def up(lab_dir: Path | str, *, ports: LabPorts | None = None, employees: int = 40,
       years: int = 2, seed: int = 1) -> dict:
    """Build what is missing, start what is not running, seed a new lab; return `status`.

    `ports` defaults to LabPorts() for a new lab and to the recorded ports for an existing
    one (other ports for an existing lab are refused). An up-and-seeded lab is left untouched.
    If this call fails, it stops the services it started (data and keys are kept).
    """
    paths = lab_paths(lab_dir)
    wanted = ports
    _check_prerequisites(paths)
    state = _read_state(paths)
    ports = _resolve_ports(state, wanted)
    # Before creating or starting anything: a stale server on one of our ports would otherwise
    # show up later as a confusing host-key or authentication error.
    _require_free_ports(_pending(paths, state or _new_state(ports), ports))

    _make_dirs(paths)
    with _locked(paths):
        state = _read_state(paths)
        if state is None:
            state = _new_state(ports)
            _write_state(paths, state)  # from now on the directory is recognisably a lab
        before = json.dumps(state, sort_keys=True, default=str)
        ports = _resolve_ports(state, wanted)  # records the ports of services added since
        pending = _pending(paths, state, ports)
        _require_free_ports(pending)
        _build_files(paths, ports)
        started: list[tuple[Service, int]] = []

        def record(svc: Service, pid: int) -> None:
            # Record before relying on it: if we crash now, `down` still finds this PID.
            started.append((svc, pid))
            state["pids"][svc.name] = pid
            _write_state(paths, state)

        try:
            _start_pending(paths, state, ports, pending, record)
            _provision(paths, state, ports, s3_started=any(s.kind == "moto" for s in pending))
            if state["seeded"] is None:
                state["seeded"] = _seed(paths, ports, employees=employees, years=years,
                                        seed=seed)
            elif not state["seeded"].get("baseline"):
                # Seeded before the lab had a baseline: the source is still as seeded.
                _make_baseline(paths, ports)
                state["seeded"]["baseline"] = True
            elif (employees, years, seed) != _seed_params(state["seeded"]):
                log.info("lab already seeded with %s; use reseed to change it",
                         _seed_params(state["seeded"]))
        except BaseException:
            _stop_started(paths, state, started)
            _write_state(paths, state)
            raise
        if json.dumps(state, sort_keys=True, default=str) != before:
            _write_state(paths, state)
    return status(paths.root)


def _seed_params(seeded: dict) -> tuple[int, int, int]:
    return seeded["employees"], seeded["years"], seeded["seed"]


def _pending(paths: LabPaths, state: dict, ports: LabPorts) -> list[Service]:
    return [svc for svc in _services(ports) if _running(paths, state, svc) is None]


def _build_files(paths: LabPaths, ports: LabPorts) -> None:
    """Create the keys, configs and secrets that are missing; never replace existing ones."""
    _build_hosts(paths, ports)
    _ensure_s3_credentials(paths)


def _stop_started(paths: LabPaths, state: dict, started: list[tuple[Service, int]]) -> None:
    for svc, pid in reversed(started):
        try:
            _stop(paths, svc, pid)
            state["pids"][svc.name] = None
        except LabError as exc:
            log.error("could not stop %s after a failed up: %s", svc.name, exc)


def down(lab_dir: Path | str, *, purge: bool = False) -> None:
    """Stop every process the lab started (by recorded PID); keep data unless `purge`."""
    paths = lab_paths(lab_dir)
    state = _read_state(paths)
    if state is None:
        if purge and paths.root.exists() and any(paths.root.iterdir()):
            raise LabError(f"{paths.root} has no lab.json; refusing to delete it")
        if purge and paths.root.exists():
            paths.root.rmdir()
        return
    with _locked(paths):
        failures = []
        for svc in reversed(_services(_ports_of(state))):
            pid = _running(paths, state, svc)
            try:
                if pid is not None:
                    _stop(paths, svc, pid)
                state["pids"][svc.name] = None
            except LabError as exc:
                failures.append(str(exc))
        _write_state(paths, state)
        if failures:
            raise LabError("; ".join(failures))
        if purge:
            _purge(paths)


def _purge(paths: LabPaths) -> None:
    # The data directories belong to postgres but root may remove them; nothing runs now.
    shutil.rmtree(paths.root)


def status(lab_dir: Path | str) -> dict:
    """Where each service is and whether it answers (recorded PID alive and port answering)."""
    paths = lab_paths(lab_dir)
    state = _read_state(paths)
    if state is None:
        raise LabError(f"no lab at {paths.root} (run `up` first)")
    ports = _ports_of(state)
    alive = {svc.name: _running(paths, state, svc) is not None for svc in _services(ports)}
    up_now = {svc.name: alive[svc.name] and _probe(svc) for svc in _services(ports)
              if svc.kind != "web"}
    ssh_ports = {"src-app": ports.ssh_src_app, "tgt-app": ports.ssh_tgt_app,
                 "front": ports.ssh_front}
    return {
        "lab_dir": str(paths.root),
        "databases": {db: {"source": _dsn(paths, ports.pg_source, db),
                           "target": _dsn(paths, ports.pg_target, db)} for db in DATABASES},
        "s3": {"endpoint_url": f"http://{HOST}:{ports.s3}", "buckets": [BUCKET],
               "up": up_now["s3"]},
        "ssh": {host: {"host": HOST, "port": port, "up": up_now[host]}
                for host, port in ssh_ports.items()},
        "postgres": {"source": {"port": ports.pg_source, "up": up_now["pg-source"]},
                     "target": {"port": ports.pg_target, "up": up_now["pg-target"]}},
        "http": {name: {"port": port, "up": alive["web"] and _probe_http(port)}
                 for name, port in _web_ports(ports).items()},
        "dns": _dns_status(paths, ports.s3, up_now["s3"]),
    }


def _require_up(paths: LabPaths) -> None:
    current = status(paths.root)
    down_now = [name for name, ok in _up_flags(current).items() if not ok]
    if down_now:
        raise LabError(f"lab is not fully up ({', '.join(down_now)} down); run `up` first")


def reseed(lab_dir: Path | str, *, employees: int, years: int, seed: int) -> dict:
    """Return the lab to its initial state with new synthetic data; the lab must be up.

    Drops replication (subscriptions, slots) on both clusters, resets the target side
    (databases and non-built-in roles on the target cluster, every object version in the
    bucket), reseeds the source, then writes the post-seed state of the hosts and DNS and the
    baseline `reset` restores. Returns what `migrate.lab.data.seed` returned (row counts per
    db.table, archive totals).
    """
    paths = lab_paths(lab_dir)
    _require_up(paths)
    with _locked(paths):
        state = _read_state(paths)
        ports = _ports_of(state)
        _drop_replication(paths, [ports.pg_source, ports.pg_target])
        _reset_target_cluster(paths, ports.pg_target)
        _empty_bucket(paths, ports.s3)
        state["seeded"] = None
        _write_state(paths, state)  # a crash mid-seed leaves "not seeded": `up` redoes it
        state["seeded"] = _seed(paths, ports, employees=employees, years=years, seed=seed)
        _write_state(paths, state)
    return state["seeded"]["result"]


def reset(lab_dir: Path | str) -> dict:
    """Return the lab to the state right after its last seed, in seconds; the lab must be up.

    Everything a cutover touches: replication (subscriptions, slots, publications), the
    target cluster (databases, non-built-in roles), the source databases (recreated from the
    templates made at seed time), the bucket (every version), every host's tree (from the
    copy made at seed time), the DNS records. Returns {"seconds": time taken}.
    """
    import psycopg

    paths = lab_paths(lab_dir)
    _require_up(paths)
    began = time.monotonic()
    with _locked(paths):
        state = _read_state(paths)
        if not (state.get("seeded") or {}).get("baseline"):
            raise LabError("this lab has no post-seed baseline; run `up` or `lab seed` first")
        ports = _ports_of(state)
        try:
            _drop_replication(paths, [ports.pg_source, ports.pg_target])
            _restore_source(paths, ports.pg_source)
        except psycopg.Error as exc:
            raise LabError(f"could not reset the source databases: {exc}") from None
        _reset_target_cluster(paths, ports.pg_target)
        _empty_bucket(paths, ports.s3)
        _restore_hosts(paths)
        _reset_dns(paths, ports.s3)
    return {"seconds": round(time.monotonic() - began, 2)}


def _up_flags(current: dict) -> dict[str, bool]:
    flags = {f"pg-{name}": info["up"] for name, info in current["postgres"].items()}
    flags.update({host: info["up"] for host, info in current["ssh"].items()})
    flags["s3"] = current["s3"]["up"]
    flags.update({f"http-{name}": info["up"] for name, info in current["http"].items()})
    return flags


def _reset_target_cluster(paths: LabPaths, port: int) -> None:
    import psycopg

    try:
        _drop_target_objects(psycopg.connect(_dsn(paths, port, "postgres"), autocommit=True))
    except psycopg.Error as exc:
        raise LabError(f"could not reset the target cluster: {exc}") from None


def _drop_target_objects(conn) -> None:
    with conn:
        # Every database: the initial target has none of its own (tests create others too).
        # FORCE: a forgotten session from an earlier migration run must not block reseed.
        for (db,) in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate"
                                  " AND datname <> 'postgres'").fetchall():
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        # Roles a migration carried over (hr_owner, ...): the initial target has only
        # postgres and migrate.
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname NOT IN ('postgres', %s) "
            "AND rolname NOT LIKE 'pg\\_%%'", (PG_ROLE,)).fetchall()
        for (role,) in rows:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
