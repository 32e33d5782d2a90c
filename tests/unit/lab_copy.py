"""The lab inventory copied for a unit test: every passfile a real file (run and rollback refuse a
missing one before anything else), nothing up, nothing reachable."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"


def lab_inventory(tmp_path: Path, edit=None) -> Path:
    """The copy at tmp_path/inv; `edit(spec)` changes its migrate.yml after the passfiles are set."""
    inv = tmp_path / "inv"
    shutil.copytree(LAB, inv, ignore=shutil.ignore_patterns(".state"))
    pgpass = tmp_path / "pgpass"
    pgpass.write_text("*:*:*:*:x\n")
    spec = yaml.safe_load((inv / "migrate.yml").read_text())
    for server in spec["db_servers"].values():
        server.update(passfile=str(pgpass), replication_passfile=str(pgpass))
    if edit:
        edit(spec)
    (inv / "migrate.yml").write_text(yaml.safe_dump(spec))
    return inv
