"""The lab inventory from git, pointed at a lab in another directory or on other ports.

`inventories/lab` is written for the default lab (`.lab/`, the default ports). Tests and
benchmarks run labs of their own; they get the same two files with paths and ports replaced.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from migrate.lab.services import LabPorts

ROOT = Path(__file__).resolve().parents[2]


def write_lab_inventory(lab_dir: Path, ports: LabPorts, dest: Path | None = None) -> Path:
    """Write `hosts.yml` and `migrate.yml` for the lab at lab_dir (default dest: lab_dir/inventory)."""
    dest = dest or lab_dir / "inventory"
    dest.mkdir(parents=True, exist_ok=True)
    defaults, wanted = asdict(LabPorts()), asdict(ports)
    for name in ("hosts.yml", "migrate.yml"):
        text = (ROOT / "inventories" / "lab" / name).read_text()
        text = text.replace("{{ inventory_dir }}/../../.lab/", f"{lab_dir}/").replace("../../.lab/", f"{lab_dir}/")
        for key, port in defaults.items():
            text = text.replace(str(port), str(wanted[key]))
        (dest / name).write_text(text)
    return dest
