"""The lab's public face: two PostgreSQL clusters, three SSH hosts, an S3 (and Route53)
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

import json
import logging
import shutil
import time
from pathlib import Path

from migrate.lab import baseline, cloud, databases, postgres, prepare, signing, supervisor
from migrate.lab.cloud import BUCKET
from migrate.lab.errors import LabError
from migrate.lab.layout import (DATABASES, HOST, LabPaths, LabPorts, dsn, lab_paths, ssh_ports,
                                web_ports)
from migrate.lab.load import CheckResult, Load
from migrate.lab.load import check as check_load
from migrate.lab.processes import probe_http
from migrate.lab.state import locked, new_state, ports_of, read_state, resolve_ports, write_state
from migrate.lab.supervisor import Service

__all__ = [
    "BUCKET",
    "CheckResult",
    "LabError",
    "LabPaths",
    "LabPorts",
    "Load",
    "check_load",
    "down",
    "lab_paths",
    "reseed",
    "reset",
    "status",
    "up",
]

log = logging.getLogger(__name__)


def up(lab_dir: Path | str, *, ports: LabPorts | None = None, employees: int = 40,
       years: int = 2, seed: int = 1, documents: int = 0) -> dict:
    """Build what is missing, start what is not running, seed a new lab; return `status`.

    `ports` defaults to LabPorts() for a new lab and to the recorded ports for an existing
    one (other ports for an existing lab are refused). An up-and-seeded lab is left untouched.
    `documents`: historical files added to a new lab's archive (as `reseed`).
    If this call fails, it stops the services it started (data and keys are kept).
    """
    paths = lab_paths(lab_dir)
    wanted = ports
    prepare.check_prerequisites(paths)
    state = read_state(paths)
    ports = resolve_ports(state, wanted)
    # Before creating or starting anything: a stale server on one of our ports would otherwise
    # show up later as a confusing host-key or authentication error.
    supervisor.require_free_ports(supervisor.not_running(paths, state or new_state(ports), ports))

    prepare.make_dirs(paths)
    with locked(paths):
        state = read_state(paths)
        if state is None:
            state = new_state(ports)
            write_state(paths, state)  # from now on the directory is recognisably a lab
        before = json.dumps(state, sort_keys=True, default=str)
        ports = resolve_ports(state, wanted)  # records the ports of services added since
        _stop_unanswering(paths, state, ports)
        pending = supervisor.not_running(paths, state, ports)
        supervisor.require_free_ports(pending)
        prepare.build_files(paths, ports)
        _start_and_seed(paths, state, ports, pending, employees=employees, years=years,
                        seed=seed, documents=documents)
        if json.dumps(state, sort_keys=True, default=str) != before:
            write_state(paths, state)
    return status(paths.root)


def _stop_unanswering(paths: LabPaths, state: dict, ports: LabPorts) -> None:
    """The S3 endpoint when its process runs but does not answer (right after it died, or hung)
    is stopped here, so that `up` starts it again like any other service that is down."""
    for svc, pid in supervisor.unanswering(paths, state, ports):
        log.warning("%s (pid %s) runs but does not answer on port %s: restarting it", svc.name, pid, svc.port)
        supervisor.stop(paths, svc, pid)
        supervisor.wait_ports_free(svc)
        state["pids"][svc.name] = None
        write_state(paths, state)


def _start_and_seed(paths: LabPaths, state: dict, ports: LabPorts, pending: list[Service], *,
                    employees: int, years: int, seed: int, documents: int) -> None:
    """Start the pending services, provision them, seed a new lab; on failure, stop what was
    started here and record that."""
    started: list[tuple[Service, int]] = []

    def record(svc: Service, pid: int) -> None:
        # Record before relying on it: if we crash now, `down` still finds this PID.
        started.append((svc, pid))
        state["pids"][svc.name] = pid
        write_state(paths, state)

    try:
        supervisor.start_pending(paths, state, ports, pending, record)
        _provision(paths, state, ports, s3_started=any(s.kind == "moto" for s in pending))
        _ensure_seeded(paths, state, ports, employees=employees, years=years, seed=seed,
                       documents=documents)
    except BaseException:
        _stop_started(paths, state, started)
        write_state(paths, state)
        raise


def _provision(paths: LabPaths, state: dict, ports: LabPorts, s3_started: bool) -> None:
    postgres.provision_cluster(paths, "source", ports.pg_source, state)
    postgres.provision_cluster(paths, "target", ports.pg_target, state)
    postgres.write_replication_pgpass(paths, ports.pg_target)
    postgres.write_replication_pgpass(paths, ports.pg_source, paths.sync_pgpass)
    signing.ensure_signing_key(paths)  # the lab spec's evidence.signing_key
    for port in (ports.pg_source, ports.pg_target):
        postgres.warn_without_logical_wal(paths, port)
    if s3_started:
        cloud.ensure_bucket(paths, ports.s3)
    cloud.reset_dns(paths, ports.s3, only_if_new=True)


def _ensure_seeded(paths: LabPaths, state: dict, ports: LabPorts, *, employees: int,
                   years: int, seed: int, documents: int) -> None:
    if state["seeded"] is None:
        state["seeded"] = baseline.seed_lab(paths, ports, employees=employees, years=years,
                                            seed=seed, documents=documents)
    elif not state["seeded"].get("baseline"):
        # Seeded before the lab had a baseline: the source is still as seeded.
        baseline.make_baseline(paths, ports)
        state["seeded"]["baseline"] = True
    elif (employees, years, seed, documents) != _seed_params(state["seeded"]):
        log.info("lab already seeded with %s; use reseed to change it",
                 _seed_params(state["seeded"]))


def _seed_params(seeded: dict) -> tuple[int, int, int, int]:
    # A lab seeded before historical files existed has none.
    return seeded["employees"], seeded["years"], seeded["seed"], seeded.get("documents", 0)


def _stop_started(paths: LabPaths, state: dict, started: list[tuple[Service, int]]) -> None:
    for svc, pid in reversed(started):
        try:
            supervisor.stop(paths, svc, pid)
            state["pids"][svc.name] = None
        except LabError as exc:
            log.error("could not stop %s after a failed up: %s", svc.name, exc)


def down(lab_dir: Path | str, *, purge: bool = False) -> None:
    """Stop every process the lab started (by recorded PID); keep data unless `purge`."""
    paths = lab_paths(lab_dir)
    state = read_state(paths)
    if state is None:
        if purge and paths.root.exists() and any(paths.root.iterdir()):
            raise LabError(f"{paths.root} has no lab.json; refusing to delete it")
        if purge and paths.root.exists():
            paths.root.rmdir()
        return
    with locked(paths):
        failures = []
        for svc in reversed(supervisor.lab_services(ports_of(state))):
            pid = supervisor.running_pid(paths, state, svc)
            try:
                if pid is not None:
                    supervisor.stop(paths, svc, pid)
                state["pids"][svc.name] = None
            except LabError as exc:
                failures.append(str(exc))
        write_state(paths, state)
        if failures:
            raise LabError("; ".join(failures))
        if purge:
            # The data directories belong to postgres but root may remove them; nothing runs now.
            shutil.rmtree(paths.root)


def status(lab_dir: Path | str) -> dict:
    """Where each service is and whether it answers (recorded PID alive and port answering)."""
    paths = lab_paths(lab_dir)
    state = read_state(paths)
    if state is None:
        raise LabError(f"no lab at {paths.root} (run `up` first)")
    ports = ports_of(state)
    services = supervisor.lab_services(ports)
    alive = {svc.name: supervisor.running_pid(paths, state, svc) is not None for svc in services}
    up_now = {svc.name: alive[svc.name] and supervisor.probe(svc) for svc in services
              if svc.kind != "web"}
    return {
        "lab_dir": str(paths.root),
        "databases": {db: {"source": dsn(paths, ports.pg_source, db),
                           "target": dsn(paths, ports.pg_target, db)} for db in DATABASES},
        "s3": {"endpoint_url": f"http://{HOST}:{ports.s3}", "buckets": [BUCKET],
               "up": up_now["s3"]},
        "ssh": {host: {"host": HOST, "port": port, "up": up_now[host]}
                for host, port in ssh_ports(ports).items()},
        "postgres": {"source": {"port": ports.pg_source, "up": up_now["pg-source"]},
                     "target": {"port": ports.pg_target, "up": up_now["pg-target"]}},
        "http": {name: {"port": port, "up": alive["web"] and probe_http(port)}
                 for name, port in web_ports(ports).items()},
        "dns": cloud.dns_status(paths, ports.s3, up_now["s3"]),
    }


def _require_up(paths: LabPaths) -> None:
    current = status(paths.root)
    down_now = [name for name, ok in _up_flags(current).items() if not ok]
    if down_now:
        raise LabError(f"lab is not fully up ({', '.join(down_now)} down); run `up` first")


def _up_flags(current: dict) -> dict[str, bool]:
    flags = {f"pg-{name}": info["up"] for name, info in current["postgres"].items()}
    flags.update({host: info["up"] for host, info in current["ssh"].items()})
    flags["s3"] = current["s3"]["up"]
    flags.update({f"http-{name}": info["up"] for name, info in current["http"].items()})
    return flags


def reseed(lab_dir: Path | str, *, employees: int, years: int, seed: int,
           documents: int = 0) -> dict:
    """Return the lab to its initial state with new synthetic data; the lab must be up.

    Drops replication (subscriptions, slots) on both clusters, resets the target side
    (databases and non-built-in roles on the target cluster, every object version in the
    bucket), reseeds the source, then writes the post-seed state of the hosts and DNS and the
    baseline `reset` restores. Returns what `migrate.lab.data.seed` returned (row counts per
    db.table, archive totals), with "bulk_archive" ({"files", "bytes", "seconds"}) when
    `documents` historical files were added to the archive.
    """
    paths = lab_paths(lab_dir)
    _require_up(paths)
    with locked(paths):
        state = read_state(paths)
        ports = ports_of(state)
        databases.drop_replication(paths, [ports.pg_source, ports.pg_target])
        databases.reset_target_cluster(paths, ports.pg_target)
        cloud.empty_bucket(paths, ports.s3)
        state["seeded"] = None
        write_state(paths, state)  # a crash mid-seed leaves "not seeded": `up` redoes it
        state["seeded"] = baseline.seed_lab(paths, ports, employees=employees, years=years,
                                            seed=seed, documents=documents)
        write_state(paths, state)
    return state["seeded"]["result"]


def reset(lab_dir: Path | str) -> dict:
    """Return the lab to the state right after its last seed, in seconds; the lab must be up.

    Everything a cutover touches: replication (subscriptions, slots, publications), the
    target cluster (databases, non-built-in roles), the source databases (recreated from the
    templates made at seed time), the bucket (every version), every host's tree (from the
    copy made at seed time), the DNS records. Returns {"seconds": time taken}.
    """
    paths = lab_paths(lab_dir)
    _require_up(paths)
    began = time.monotonic()
    with locked(paths):
        state = read_state(paths)
        if not (state.get("seeded") or {}).get("baseline"):
            raise LabError("this lab has no post-seed baseline; run `up` or `lab seed` first")
        baseline.restore(paths, ports_of(state))
    return {"seconds": round(time.monotonic() - began, 2)}
