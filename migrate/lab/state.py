"""lab.json, the lab's record of itself (ports, PIDs, build steps, seed; never a secret), and
the lock that lets one lab command at a time change a lab directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict
from typing import Iterator

from migrate.lab.errors import LabError
from migrate.lab.layout import LabPaths, LabPorts

STATE_VERSION = 1


def read_state(paths: LabPaths) -> dict | None:
    try:
        return json.loads(paths.state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {paths.state_file}: {exc}") from None


def write_state(paths: LabPaths, state: dict) -> None:
    # Write-temp-then-rename: a crash never leaves a half-written lab.json.
    tmp = paths.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, paths.state_file)


def new_state(ports: LabPorts) -> dict:
    return {"version": STATE_VERSION, "ports": asdict(ports), "pids": {}, "steps": [],
            "seeded": None}


def ports_of(state: dict) -> LabPorts:
    return LabPorts(**state["ports"])


def _check_distinct(ports: LabPorts) -> LabPorts:
    taken = list(asdict(ports).values())
    if len(set(taken)) != len(taken):
        raise LabError(f"lab ports must be distinct: {asdict(ports)}")
    return ports


def resolve_ports(state: dict | None, wanted: LabPorts | None) -> LabPorts:
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
    if wanted is not None and wanted != ports_of(state):
        raise LabError(f"this lab was built with ports {state['ports']}; "
                       f"run `down --purge` to rebuild it with other ports")
    return ports_of(state)


@contextlib.contextmanager
def locked(paths: LabPaths) -> Iterator[None]:
    """One `up`/`down`/`reseed` at a time per lab directory."""
    paths.run.mkdir(parents=True, exist_ok=True)
    with open(paths.lock_file, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(f"another lab command is running on {paths.root}") from None
        yield
