"""`migrate lab load` on the real lab: punches and HR edits through the front door, every
acknowledged write found exactly once in the live database, and the check noticing a lost or a
duplicated one."""

import json
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from migrate.lab.api import Load, check_load
from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration

ACKED = lab.LAB_DIR / "load" / "acked.jsonl"


def acked_punch_ids() -> list[int]:
    return [json.loads(line)["key"]["punch_id"] for line in ACKED.read_text().splitlines()
            if json.loads(line)["kind"] == "punch"]


def check_cli(*args: str):
    return lab.migrate("lab", "load", "--check", "--lab-dir", str(lab.LAB_DIR), *args)


def test_acked_writes_are_found_once_and_a_lost_or_doubled_one_is_reported(clean_lab):
    load = Load(lab.LAB_DIR, fresh=True)
    load.start(20, 3)
    load.wait()
    assert load.failures == {} and load.skipped == 0
    assert load.counts["punch"] >= 40 and load.counts["edit"] >= 10
    result = load.check()
    assert result.ok, result.problem()
    assert result.sides == {"personale": "source", "presenze": "source"}
    assert result.acked == {"punch": load.counts["punch"], "edit": load.counts["edit"]}
    assert result.found == {"punch": load.counts["punch"], "edit": result.edited} and result.edited > 1
    done = check_cli()
    assert done.returncode == 0, done.stderr
    assert "missing 0, duplicated 0" in done.stdout

    lost, doubled = acked_punch_ids()[:2]
    with psycopg.connect(lab.dsn("source", "presenze")) as conn:
        conn.execute("DELETE FROM punch WHERE punch_id = %s", (lost,))
        conn.execute("INSERT INTO punch (employee_id, punched_at, direction, origin, recorded_at)"
                     " SELECT employee_id, punched_at, direction, origin, recorded_at FROM punch"
                     " WHERE punch_id = %s", (doubled,))
    result = check_load(lab.LAB_DIR)
    assert (result.missing, result.duplicated) == ([f"punch_id={lost}"], [f"punch_id={doubled}"])
    done = check_cli("--side", "source")
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "1 acknowledged writes missing and 1 duplicated" in errors[0]
    assert f"punch_id={lost}" in errors[0] and f"punch_id={doubled}" in errors[0]
    # Nothing was migrated: the target has no such database, and says so in one line.
    done = check_cli("--side", "target")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "target cluster" in done.stderr


def test_cli_runs_until_sigterm_and_counts_what_maintenance_refused(clean_lab):
    (lab.host_root("src-app") / "var/lib/hr/presenze.maintenance").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATE_")}
    child = subprocess.Popen([sys.executable, "-m", "migrate.cli", "-i", str(lab.INVENTORY), "lab", "load",
                              "--rate", "20", "--fresh", "--lab-dir", str(lab.LAB_DIR)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(2.5)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    # Punches met the maintenance page (503, not recorded); the HR edits still went through.
    assert out.startswith("load: acked ") and "(edit " in out and "503: " in out, out
    kinds = {json.loads(line)["kind"] for line in ACKED.read_text().splitlines()}
    assert kinds == {"edit"}
    done = check_cli()
    assert done.returncode == 0, done.stderr
