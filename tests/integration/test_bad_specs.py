"""Bad input never reaches a host (#13 point 4): every database server, SSH host, S3 and DNS
endpoint and web address of a lab inventory is pointed at one listener on loopback that counts
the connections it is offered. The unchanged inventory reaches it (the listener sees the tool);
each broken spec, host file or command line exits 2 with one line naming the file and the field,
leaves no state behind, and the listener sees no connection at all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from migrate.lab.inventory import write_lab_inventory
from migrate.lab.layout import LabPorts

pytestmark = pytest.mark.integration

SECRETS = ("secrets/pgpass", "pg/replication.pgpass", "pg/sync.pgpass", "secrets/s3.ini",
           "secrets/evidence-signing.pem", "ssh/id_ed25519", "ssh/known_hosts")


class Listener:
    """Accepts and closes every connection on 127.0.0.1, counting them."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port, self.count = self.server.getsockname()[1], 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.count += 1
            conn.close()


@pytest.fixture(scope="module")
def listener():
    found = Listener()
    yield found
    found.server.close()


def inventory(tmp_path: Path, port: int) -> Path:
    lab = tmp_path / "lab"
    for name in SECRETS:
        (lab / name).parent.mkdir(parents=True, exist_ok=True)
        (lab / name).write_text("127.0.0.1:*:*:migrate:not-a-real-password\n" if "pgpass" in name else "x\n")
        (lab / name).chmod(0o600)
    return write_lab_inventory(lab, LabPorts(**{k: port for k in LabPorts.__dataclass_fields__}), tmp_path / "inv")


def migrate(inv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=120)


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def slot(d):
    return d["waves"]["wave-1"]["window"]["slots"][0]


def src_app(d):
    return next(g for g in d["all"]["children"].values() if "src-app" in (g.get("hosts") or {}))["hosts"]["src-app"]


# (file, how it is broken, the field the one line must name)
BROKEN = {
    "duplicate key": ("migrate.yml", lambda p: p.write_text(p.read_text().replace(
        "storage:\n", "storage:\n  bucket: another-bucket\n", 1)), "key 'bucket' given twice"),
    "window ends before it starts": ("migrate.yml", lambda p: edit_yaml(p, lambda d: slot(d).update(
        start="22:00", end="06:00")), "waves.wave-1.window.slots.0: end 06:00 is not after start 22:00"),
    "unknown time zone": ("migrate.yml", lambda p: edit_yaml(p, lambda d: d["waves"]["wave-1"]["window"].update(
        timezone="Mars/Olympus")), "waves.wave-1.window.timezone"),
    "not a network": ("migrate.yml", lambda p: edit_yaml(p, lambda d: d.update(allowed_networks=["not-a-network"])),
                      "allowed_networks: 'not-a-network' is not a network"),
    "not UTF-8": ("migrate.yml", lambda p: p.write_bytes(p.read_bytes() + b"# caf\xe9\n"), "not UTF-8 text"),
    "too large": ("migrate.yml", lambda p: p.write_text(p.read_text() + "# " + "x" * (1024 * 1024) + "\n"),
                  "more than the 1048576 a spec may have"),
    "missing passfile": ("migrate.yml", lambda p: edit_yaml(p, lambda d: d["db_servers"]["cloud-pg"].update(
        passfile=str(p.parent / "no-such-pgpass"))), "db_servers.cloud-pg.passfile"),
    "passfile is a directory": ("migrate.yml", lambda p: edit_yaml(p, lambda d: d["db_servers"]["cloud-pg"].update(
        passfile=str(p.parent))), "db_servers.cloud-pg.passfile"),
    # Weakened host-key checks as hostile input: each must be refused at load, never used.
    "host key check off": ("hosts.yml", lambda p: edit_yaml(p, lambda d: src_app(d).update(
        ansible_host_key_checking=False)), "hosts.src-app.ansible_host_key_checking"),
    "host key check off in ssh args": ("hosts.yml", lambda p: edit_yaml(p, lambda d: src_app(d).update(
        ansible_ssh_common_args="-o StrictHostKeyChecking=no")), "hosts.src-app.ansible_ssh_common_args"),
    "address outside the allowed networks": ("migrate.yml", lambda p: edit_yaml(
        p, lambda d: d["db_servers"]["cloud-pg"].update(host="10.0.0.5")), "db_servers.cloud-pg.host"),
}


def test_the_unbroken_inventory_does_reach_the_listener(tmp_path, listener):
    before = listener.count
    checked = migrate(inventory(tmp_path, listener.port), "preflight", "wave-1")
    assert checked.returncode == 1, checked.stderr
    assert listener.count > before, "the control: the tool does connect where the inventory says"


# Every case with `run`; with rollback and plan too in the full fault matrix (they share the loading).
VERBS = [("run", "wave-1", "--yes")] + ([("rollback", "wave-1", "--yes"), ("plan", "wave-1")]
                                        if os.environ.get("MIGRATE_TEST_FAULTS") == "full" else [])
CASES = [(case, verb) for verb in VERBS for case in sorted(BROKEN)] + [
    (case, verb) for case in ("missing passfile", "not UTF-8") for verb in (("rollback", "wave-1", "--yes"),)
    if ("rollback", "wave-1", "--yes") not in VERBS]


@pytest.mark.parametrize("case, verb", CASES)
def test_a_broken_inventory_reaches_no_host(tmp_path, listener, case, verb):
    inv = inventory(tmp_path, listener.port)
    name, breaks, field = BROKEN[case]
    breaks(inv / name)
    before = listener.count
    refused = migrate(inv, *verb)
    assert refused.returncode == 2, (refused.returncode, refused.stderr)
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and str(inv / name) in lines[0] and field in lines[0], lines
    assert "Traceback" not in refused.stderr
    assert listener.count == before, f"{case}: the tool connected somewhere"
    assert not (inv / ".state").exists(), "a refused command leaves no state"


def test_a_limit_whose_dependency_is_not_migrated_is_bad_usage(tmp_path, listener):
    before = listener.count
    refused = migrate(inventory(tmp_path, listener.port), "run", "wave-1", "--yes", "--limit", "attendance")
    assert refused.returncode == 2 and "depends on personnel" in refused.stderr
    assert listener.count == before
