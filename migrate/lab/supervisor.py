"""The lab's services and how each kind is started, recognised, probed and stopped.

sshd, moto and the web stand-ins are spawned here and their PIDs handed to the caller to
record; the clusters are started by pg_ctl and known by their postmaster.pid. A PID counts as
ours only if its command line still says it is (see `identity_of`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from migrate.lab.cloud import moto_binary, start_moto
from migrate.lab.errors import LabError
from migrate.lab.hosts import SSHD, start_sshd
from migrate.lab.layout import HOST, PACKAGE_ROOT, LabPaths, LabPorts
from migrate.lab.postgres import (init_clusters, postmaster_pid, probe_postgres, start_cluster,
                                  stop_cluster)
from migrate.lab.processes import (READY_TIMEOUT, SERVER_ENV, STOP_TIMEOUT, children, log_tail,
                                   pid_is, port_is_free, probe_banner, probe_http, spawn,
                                   terminate, wait_gone)


@dataclass(frozen=True)
class Service:
    name: str  # pg-source, pg-target, src-app, tgt-app, front, s3, web
    kind: str  # postgres, sshd, moto, web
    port: int
    more_ports: tuple[int, ...] = ()  # the web process listens on three ports

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.more_ports)


def lab_services(ports: LabPorts) -> list[Service]:
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


def cluster_of(svc: Service) -> str:
    return svc.name.removeprefix("pg-")


def identity_of(paths: LabPaths, svc: Service) -> list[str]:
    """Words the command line of this service's process must contain.

    A recorded PID can be reused by an unrelated process after a crash or reboot; checking the
    command line makes sure we only ever treat as ours (and signal) our own server. Matched as
    substrings: sshd rewrites its title to "sshd: /usr/sbin/sshd -D -e -f CONFIG [listener] ...".
    """
    if svc.kind == "postgres":
        return [f"-D {paths.cluster_dir(cluster_of(svc))}"]
    if svc.kind == "sshd":
        return [str(SSHD), f"-f {paths.sshd_config(svc.name)}"]
    if svc.kind == "web":
        return ["-m migrate.lab.webapps", f"--lab-dir {paths.root}"]
    return [str(moto_binary()), f"-p {svc.port}"]


def running_pid(paths: LabPaths, state: dict, svc: Service) -> int | None:
    """The PID of this service if it is running as ours, else None."""
    if svc.kind == "postgres":
        # postmaster.pid is the cluster's own truth (it also covers a manual pg_ctl start).
        pid = postmaster_pid(paths.cluster_dir(cluster_of(svc)))
    else:
        pid = state["pids"].get(svc.name)
    return pid if pid_is(pid, identity_of(paths, svc)) else None


def not_running(paths: LabPaths, state: dict, ports: LabPorts) -> list[Service]:
    return [svc for svc in lab_services(ports) if running_pid(paths, state, svc) is None]


UNANSWERED_GRACE = 5.0  # seconds a running server may take to answer (or to finish stopping)


def unanswering(paths: LabPaths, state: dict, ports: LabPorts,
                grace: float = UNANSWERED_GRACE) -> list[tuple[Service, int]]:
    """The S3 endpoint when its process runs but its port does not answer within `grace`: one
    that just died or hangs, which `up` restarts. Only moto: it holds no connection of a run in
    progress that a restart would cut (an sshd does), and its state is lost anyway once it hangs."""
    suspects = [(svc, pid) for svc in lab_services(ports) if svc.kind == "moto"
                and (pid := running_pid(paths, state, svc)) is not None and not probe(svc)]
    deadline = time.monotonic() + grace
    while suspects and time.monotonic() < deadline:
        time.sleep(0.2)
        suspects = [(svc, pid) for svc, pid in suspects if pid_is(pid, identity_of(paths, svc)) and not probe(svc)]
    return [(svc, pid) for svc, pid in suspects if pid_is(pid, identity_of(paths, svc))]


def wait_ports_free(svc: Service, timeout: float = STOP_TIMEOUT) -> None:
    """A killed server's sockets close a moment after its command line is gone."""
    deadline = time.monotonic() + timeout
    while not all(port_is_free(port) for port in svc.ports) and time.monotonic() < deadline:
        time.sleep(0.05)


PORT_GRACE = 3.0  # a server killed a moment ago may still hold its socket


def require_free_ports(pending: list[Service]) -> None:
    for svc in pending:
        wait_ports_free(svc, PORT_GRACE)
        for port in svc.ports:
            if not port_is_free(port):
                raise LabError(
                    f"port {port} on {HOST} (for {svc.name}) is held by another process; "
                    f"stop it or choose another port — nothing was started")


def probe(svc: Service) -> bool:
    if svc.kind == "postgres":
        return probe_postgres(svc.port)
    if svc.kind == "sshd":
        return probe_banner(svc.port, b"SSH-")
    return all(probe_http(port) for port in svc.ports)


def start_pending(paths: LabPaths, state: dict, ports: LabPorts, pending: list[Service],
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
    init_clusters(paths, state, ports)
    for svc in pending:
        if svc.kind == "postgres":
            on_started(svc, start_cluster(paths, cluster_of(svc), svc.port))
    for svc, pid, log_file in watching:
        _wait_ready(paths, svc, pid, log_file)


def stop(paths: LabPaths, svc: Service, pid: int) -> None:
    identity = identity_of(paths, svc)
    if not pid_is(pid, identity):
        return
    if svc.kind == "postgres":
        stop_cluster(paths, cluster_of(svc))
    else:
        # Connection processes of sshd run in their own sessions and would outlive the
        # listener (an ansible ControlPersist connection, say): stop them first.
        if svc.kind == "sshd":
            for child in children(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
        terminate(pid, identity)
    if not wait_gone(pid, identity, STOP_TIMEOUT):
        raise LabError(f"{svc.name} (pid {pid}) did not stop")


def _launch_background(paths: LabPaths, svc: Service) -> tuple[int, Path]:
    """Start sshd, moto or the web process without waiting; returns its PID and its log."""
    if svc.kind == "sshd":
        return start_sshd(paths, svc.name)
    if svc.kind == "web":
        return _start_web(paths, svc)
    return start_moto(paths, svc.port)


def _start_web(paths: LabPaths, svc: Service) -> tuple[int, Path]:
    log_file = paths.web_dir / "web.log"
    src_app, tgt_app = svc.more_ports
    argv = [sys.executable, "-m", "migrate.lab.webapps", "--lab-dir", str(paths.root),
            "--src-app", str(src_app), "--tgt-app", str(tgt_app), "--front", str(svc.port)]
    # This checkout's code, whatever the caller's working directory; no PG* variables, so
    # libpq takes only what the applications' configs say.
    env = {**SERVER_ENV, "PYTHONPATH": str(PACKAGE_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return spawn(argv, log_file, env), log_file


def _wait_ready(paths: LabPaths, svc: Service, pid: int, log_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    identity = identity_of(paths, svc)
    while time.monotonic() < deadline:
        if probe(svc):
            return
        if not pid_is(pid, identity):
            raise LabError(f"{svc.name} exited during startup: {log_tail(log_file)}")
        time.sleep(0.05)
    raise LabError(f"{svc.name} not ready on port {svc.port} after {READY_TIMEOUT:.0f}s: "
                   f"{log_tail(log_file)}")
