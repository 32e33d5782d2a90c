"""The lab inventory from git, pointed at a lab in another directory or on other ports.

`inventories/lab` is written for the default lab (`.lab/`, the default ports). Tests and
benchmarks run labs of their own; they get the same two files with paths and ports replaced.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

from migrate.lab.layout import LabPorts

ROOT = Path(__file__).resolve().parents[2]


def write_lab_inventory(lab_dir: Path, ports: LabPorts, dest: Path | None = None) -> Path:
    """Write `hosts.yml` and `migrate.yml` for the lab at lab_dir (default dest: lab_dir/inventory)."""
    dest = dest or lab_dir / "inventory"
    dest.mkdir(parents=True, exist_ok=True)
    defaults, wanted = asdict(LabPorts()), asdict(ports)
    by_default = {str(port): str(wanted[key]) for key, port in defaults.items()}
    # One pass over whole numbers: replacing port by port could rewrite a port that an earlier
    # replacement produced (12201 -> 12202, then 12202 -> ...), or a default port that is part
    # of a longer number.
    pattern = re.compile(r"(?<!\d)(" + "|".join(map(re.escape, by_default)) + r")(?!\d)")
    for name in ("hosts.yml", "migrate.yml"):
        text = (ROOT / "inventories" / "lab" / name).read_text()
        text = text.replace("{{ inventory_dir }}/../../.lab/", f"{lab_dir}/").replace("../../.lab/", f"{lab_dir}/")
        text = pattern.sub(lambda match: by_default[match.group(1)], text)
        (dest / name).write_text(text)
    return dest
