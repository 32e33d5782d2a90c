"""Preflight on the real lab: each injected fault fails with exit 1 and one clear line."""

import json
import shutil
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import paramiko
import pytest

from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration


def copy_inventory(tmp_path):
    inv = tmp_path / "inv"
    shutil.copytree(lab.INVENTORY, inv, ignore=shutil.ignore_patterns(".state"))
    return inv


def preflight(inv, *args):
    return subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), "preflight", "wave-1", *args],
                          capture_output=True, text=True, timeout=120)


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_healthy_lab_passes_and_is_journalled(test_lab, tmp_path):
    inv = copy_inventory(tmp_path)
    proc = preflight(inv, "--json")
    assert proc.returncode == 0, proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    assert {f["check"] for f in findings} >= {"ssh host key", "free disk", "postgres version", "extensions",
                                            "bucket encryption", "bucket region", "service level",
                                            "clock skew", "maintenance window", "estimated duration"}
    assert all(f["status"] == "pass" for f in findings), [f for f in findings if f["status"] != "pass"]
    status = json.loads(subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), "--json", "status"],
                                       capture_output=True, text=True).stdout)
    assert status["chain"] == "intact"
    from migrate.engine.journal import Journal
    records = Journal(inv / ".state" / "journal.sqlite").records(wave="wave-1")
    assert [r.kind for r in records] == ["preflight"] and len(records[0].data["findings"]) == len(findings)


def known_hosts_copy(inv, tmp_path, mutate):
    hosts = paramiko.HostKeys(str(lab.LAB_DIR / "ssh" / "known_hosts"))
    mutate(hosts)
    path = tmp_path / "known_hosts"
    hosts.save(str(path))
    edit(inv / "hosts.yml", f"{lab.LAB_DIR}/ssh/known_hosts", str(path))


def test_unknown_host_key(test_lab, tmp_path):
    inv = copy_inventory(tmp_path)
    entry = f"[127.0.0.1]:{lab.PORTS['ssh_tgt_app']}"
    known_hosts_copy(inv, tmp_path, lambda h: h.pop(entry))
    proc = preflight(inv)
    assert proc.returncode == 1
    assert "ssh host key tgt-app: unknown host: its ssh-ed25519 key SHA256:" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_changed_host_key(test_lab, tmp_path):
    inv = copy_inventory(tmp_path)
    entry = f"[127.0.0.1]:{lab.PORTS['ssh_src_app']}"
    other = paramiko.Ed25519Key.from_private_key_file(str(lab.LAB_DIR / "ssh" / "id_ed25519"))
    known_hosts_copy(inv, tmp_path, lambda h: h.add(entry, "ssh-ed25519", other))
    proc = preflight(inv)
    assert proc.returncode == 1 and "ssh host key src-app: host key changed" in proc.stderr


def test_not_enough_disk(test_lab, tmp_path):
    inv = copy_inventory(tmp_path)
    edit(inv / "hosts.yml", "          ansible_port: " + str(lab.PORTS["ssh_tgt_app"]),
         "          ansible_port: " + str(lab.PORTS["ssh_tgt_app"]) + "\n          min_free_mb: 900000000")
    proc = preflight(inv)
    assert proc.returncode == 1 and "free disk tgt-app:" in proc.stderr and "858.3 TiB needed" in proc.stderr


def test_wrong_region(test_lab, tmp_path):
    inv = copy_inventory(tmp_path)
    edit(inv / "migrate.yml", "  region: eu-south-1\n  bucket:", "  region: eu-west-1\n  bucket:")
    proc = preflight(inv)
    assert proc.returncode == 1 and "bucket is in eu-south-1, the spec declares eu-west-1" in proc.stderr


def test_bucket_without_encryption(test_lab, tmp_path):
    s3 = lab.s3_client()
    s3.delete_bucket_encryption(Bucket=lab.BUCKET)
    try:
        proc = preflight(copy_inventory(tmp_path))
    finally:
        s3.put_bucket_encryption(Bucket=lab.BUCKET, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    assert proc.returncode == 1 and "bucket encryption comune-migration-staging: no default encryption" in proc.stderr


def test_blackout_date_blocks_the_run_and_changes_nothing(clean_lab, tmp_path):
    inv = copy_inventory(tmp_path)
    today = datetime.now(ZoneInfo("Europe/Rome")).date().isoformat()
    edit(inv / "migrate.yml", "      blackout: []", f"      blackout: [{today}]")
    before = lab.snapshot()
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), "run", "wave-1", "--yes"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"maintenance window wave-1: {today} is a blackout date" in proc.stderr
    assert lab.snapshot() == before


@pytest.mark.parametrize("answer", ["nothing", "close"])
def test_a_source_host_that_is_down_is_a_failed_check_not_an_internal_error(test_lab, tmp_path, answer):
    """Something on the host's port that says nothing (a hung sshd) or hangs up at once (#13 item 7)."""
    import socket
    import threading
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            if answer == "close":
                conn.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        inv = copy_inventory(tmp_path)
        edit(inv / "hosts.yml", f"ansible_port: {lab.PORTS['ssh_src_app']}", f"ansible_port: {listener.getsockname()[1]}")
        proc = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), "--json", "preflight", "wave-1"],
                              capture_output=True, text=True, timeout=120)
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    found = json.loads(proc.stdout)
    failed = {(f["check"], f["subject"]): f["reason"] for f in found["findings"] if f["status"] == "fail"}
    assert set(failed) == {("ssh host key", "src-app"), ("archive owners", "personnel")}, failed
    assert "SSHException" in failed[("ssh host key", "src-app")], failed
    assert found["exit"] == 1 and "src-app" in found["error"]
