"""`migrate lab up` after the lab's S3 endpoint died or hangs (#13 item 7): it restarts it."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration


def s3_pid() -> int:
    return json.loads((lab.LAB_DIR / "lab.json").read_text())["pids"]["s3"]


def lab_up() -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrate.cli", "lab", "up", "--lab-dir", str(lab.LAB_DIR)],
                          capture_output=True, text=True, timeout=180, cwd=lab.ROOT)


@pytest.mark.parametrize("how", [signal.SIGSTOP, signal.SIGTERM])
def test_lab_up_restarts_an_s3_endpoint_that_does_not_answer(test_lab, how):
    """SIGSTOP: a hung endpoint; SIGTERM, `up` at once: one still shutting down."""
    old = s3_pid()
    os.kill(old, how)
    try:
        proc = lab_up()
    finally:
        if how == signal.SIGSTOP:
            try:
                os.kill(old, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert s3_pid() != old
    buckets = [b["Name"] for b in lab.s3_client().list_buckets()["Buckets"]]
    assert buckets == [lab.BUCKET]
    assert lab.dns_records(), "the zone is made again"
