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


def test_a_resume_after_the_endpoint_lost_the_staged_objects_says_so_in_one_line(clean_lab):
    """The lab's moto keeps objects in memory: restarted, it has an empty bucket. The resume
    names the missing staged key and says what to do, in one line."""
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "-i", str(lab.INVENTORY), "--json", "run",
                             "wave-1", "--yes", "--approve", "tester"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "action" and event.get("step") == "personnel/restore-db:personale":
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before restoring personale"
    os.kill(s3_pid(), signal.SIGKILL)
    restarted = lab_up()
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert lab.bucket_versions() == [], "the restarted endpoint has lost the staged objects"
    resumed = lab.migrate("run", "wave-1", "--yes", "--approve", "tester")
    assert resumed.returncode == 1
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in resumed.stderr, resumed.stderr
    assert lines[0].startswith("error: step personnel/restore-db:personale failed: staged object"
                               f" s3://{lab.BUCKET}/waves/wave-1/")
    assert "/db/personale/schema.dump" in lines[0] and "is missing (NoSuchKey)" in lines[0]
    assert "roll back the wave and run it again" in lines[0]
