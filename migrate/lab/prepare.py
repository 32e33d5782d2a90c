"""Before a lab starts: the machine can run it, its directories exist, and its keys, configs
and secrets are written (the missing ones only)."""

from __future__ import annotations

import os
from pathlib import Path

from migrate.lab.cloud import ensure_s3_credentials, moto_binary
from migrate.lab.errors import LabError
from migrate.lab.hosts import SFTP_SERVER, SSHD, build_hosts
from migrate.lab.layout import HOST_TREES, PG_OS_USER, LabPaths, LabPorts
from migrate.lab.postgres import PG_BIN, postgres_ids

# Linux limits a unix socket path to 107 bytes; PostgreSQL refuses longer socket paths late
# and obscurely, so check up front.
MAX_SOCKET_PATH = 100


def check_prerequisites(paths: LabPaths) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab must be started as root (it runs sshd and switches to postgres)")
    for binary in (PG_BIN / "initdb", SSHD, SFTP_SERVER, moto_binary()):
        if not binary.exists():
            raise LabError(f"{binary} is missing")
    postgres_ids()
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


def make_dirs(paths: LabPaths) -> None:
    uid, gid = postgres_ids()
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


def build_files(paths: LabPaths, ports: LabPorts) -> None:
    """Create the keys, configs and secrets that are missing; never replace existing ones."""
    build_hosts(paths, ports)
    ensure_s3_credentials(paths)
