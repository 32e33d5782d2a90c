"""Where the lab is: its ports, the paths under its directory, and the names it gives things.

Everything listens on 127.0.0.1 and lives under one lab directory (see CONTRACT.md for the
layout). Pure data: nothing here touches the disk or the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding migrate/
HOST = "127.0.0.1"
PG_OS_USER = "postgres"
PG_ROLE = "migrate"
DATABASES = ("personale", "presenze")
APP_SERVICES = ("personale", "presenze")

# The directories each SSH host starts with, relative to its root/ (playbooks use it as
# host_root). The application hosts have the software installed (directories), but only
# src-app has configs, running services and a collector buffer (see baseline.py).
APP_TREE = ("etc/hr", "run/hr", "var/lib/hr", "var/spool/hr/presenze",
            "srv/personale/documents")
HOST_TREES = {
    "src-app": APP_TREE,
    "tgt-app": APP_TREE,
    "front": ("etc/front",),
}


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
    def sync_pgpass(self) -> Path:
        # The same for the target cluster: a warm sync's subscription on the target reads the
        # source's line from here.
        return self.pg / "sync.pgpass"

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


def ssh_ports(ports: LabPorts) -> dict[str, int]:
    return {"src-app": ports.ssh_src_app, "tgt-app": ports.ssh_tgt_app,
            "front": ports.ssh_front}


def web_ports(ports: LabPorts) -> dict[str, int]:
    return {"src-app": ports.http_src_app, "tgt-app": ports.http_tgt_app,
            "front": ports.http_front}


def dsn(paths: LabPaths, port: int, dbname: str) -> str:
    """A DSN for role migrate that names the passfile, never a password."""
    return f"host={HOST} port={port} dbname={dbname} user={PG_ROLE} passfile={paths.pgpass}"
