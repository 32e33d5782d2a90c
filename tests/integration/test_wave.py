"""A whole wave on the real lab: run, compare, resume after SIGKILL, dry run, lock, rollback."""

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from migrate import commands, config
from migrate.engine import lock
from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration


def assert_target_equals_source():
    assert lab.databases("target") == set(lab.DATABASES)
    for db in lab.DATABASES:
        source, target = lab.table_digests("source", db), lab.table_digests("target", db)
        assert len(source) >= 10 and sum(n for n, _ in source.values()) > 100
        assert target == source, f"{db}: tables differ: {[t for t in source if source[t] != target.get(t)]}"
        assert lab.object_digests("target", db) == lab.object_digests("source", db)


def assert_documents_staged():
    s3 = lab.s3_client()
    keys = [k for k, _ in lab.bucket_versions() if k.endswith("docs/personnel/manifest.json")]
    assert len(keys) == 1
    manifest = json.loads(s3.get_object(Bucket=lab.BUCKET, Key=keys[0])["Body"].read())
    archive = lab.host_root("src-app") / "srv" / "personale" / "documents"
    on_host = lab.tree(archive)
    assert len(manifest["files"]) == len(on_host) > 0
    packs = {p["key"]: s3.get_object(Bucket=lab.BUCKET, Key=p["key"])["Body"].read() for p in manifest["packs"]}
    for f in manifest["files"]:  # each document read back out of its pack, at its offset
        body = packs[f["pack"]][f["offset"]:f["offset"] + f["size"]]
        assert lab.hashlib.sha256(body).hexdigest() == f["sha256"] == on_host[f["path"]].split()[0]


def secrets() -> list[str]:
    found = [line.rsplit(":", 1)[1] for line in (lab.LAB_DIR / "secrets" / "pgpass").read_text().splitlines() if line]
    ini = (lab.LAB_DIR / "secrets" / "s3.ini").read_text()
    found += [line.split("=", 1)[1].strip() for line in ini.splitlines() if line.startswith("aws_secret_access_key")]
    assert found and all(len(s) >= 12 for s in found)
    return found


# An operator's shell often holds cloud keys: ansible-runner records its whole environment in
# its artifacts, so the orchestrator must not hand it on.
CANARY = {"AWS_SECRET_ACCESS_KEY": "canary-aws-secret-0123456789", "PGPASSWORD": "canary-pg-password-0123456789"}


def assert_no_secret_left_behind():
    state = lab.INVENTORY / ".state"
    blobs = [p.read_bytes() for p in state.rglob("*") if p.is_file()]
    assert any(b"effect" in b for b in blobs), "the journal is there"
    assert list(state.glob("ansible/*/artifacts/*/job_events/*.json")), "the Ansible artifacts are there"
    for secret in secrets() + list(CANARY.values()):
        assert not any(secret.encode() in b for b in blobs), "a secret reached the journal or Ansible artifacts"


APPROVE = ("--approve", "tester")


def test_wave_copies_everything_and_rollback_restores_the_initial_state(clean_lab):
    lab.drain_spool()
    before = lab.snapshot()
    done = lab.migrate("run", "wave-1", "--yes", *APPROVE, extra_env=CANARY)
    assert done.returncode == 0, done.stderr
    assert_target_equals_source()
    assert_documents_staged()
    conf = lab.host_root("tgt-app") / "etc" / "hr" / "personale.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert f"port={lab.PORTS['pg_target']} dbname=personale" in conf.read_text()
    assert (lab.host_root("src-app") / "var" / "lib" / "hr" / "presenze.maintenance").exists()
    assert_no_secret_left_behind()
    status = json.loads(lab.migrate("--json", "status", "wave-1").stdout)
    assert status["chain"] == "intact" and status["waves"]["wave-1"]["status"] == "completed"
    assert all(s["state"] == "done" for s in status["waves"]["wave-1"]["steps"])

    again = lab.migrate("run", "wave-1", "--yes", *APPROVE)
    assert again.returncode == 0 and "already completed" in again.stdout
    journal = commands.journal(config.load(lab.INVENTORY))
    records = len(journal.records())
    planned = lab.migrate("--json", "plan", "wave-1")
    assert planned.returncode == 0, planned.stderr
    result = json.loads(planned.stdout.strip().splitlines()[-1])
    assert result["result"] == "unchanged" and "a new run would change nothing" in result["message"]
    assert set(result["succeeded"]) == {"personnel", "attendance"} and result["failed"] == []
    assert len(journal.records()) == records, "a dry run journals nothing"

    back = lab.migrate("rollback", "wave-1", "--yes")
    assert back.returncode == 0, back.stderr
    after = lab.snapshot()
    assert after == before, "rollback must return source, target, bucket and hosts to the initial state"
    status = json.loads(lab.migrate("--json", "status", "wave-1").stdout)
    assert status["waves"]["wave-1"]["status"] == "rolled_back" and status["chain"] == "intact"


def test_dry_run_and_plan_change_nothing(clean_lab):
    before = lab.snapshot()
    dry = lab.migrate("run", "wave-1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would pg_dump" in dry.stdout and "would " in dry.stdout
    planned = lab.migrate("--json", "plan", "wave-1")
    assert planned.returncode == 0, planned.stderr
    result = json.loads(planned.stdout.strip().splitlines()[-1])
    steps = [s["id"] for s in result["plan"]["steps"]]
    assert steps[0] == "freeze:src-app" and steps.index("verify") < steps.index("attendance/way-back:presenze")
    assert steps[-7:] == ["configure:tgt-app", "target-health", "go-no-go", "personnel/way-back:personale",
                          "attendance/way-back:presenze", "switch-entry", "post-cutover"]
    assert lab.snapshot() == before
    status = json.loads(lab.migrate("--json", "status", "wave-1").stdout)
    assert status["waves"]["wave-1"]["status"] == "not started"


def run_and_kill_at(event: str, step: str) -> list[dict]:
    """`migrate --json run wave-1`, SIGKILLed at the first `event` of `step`: the events it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "-i", str(lab.INVENTORY), "--json",
                             "run", "wave-1", "--yes", *APPROVE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1].get("event") == event and events[-1].get("step") == step:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before {event} of {step}"
    return events


def test_sigkill_mid_wave_then_run_again_completes_without_repeating(clean_lab):
    lab.drain_spool()
    before = lab.snapshot()
    events = run_and_kill_at("action", "attendance/restore-db:presenze")
    # Progress reached the JSON event stream: every chunk of personale, as counts only.
    loaded = [e for e in events if e["event"] == "chunk" and e["what"] == "chunk_loaded"]
    assert loaded and loaded[-1]["database"] == "personale" and loaded[-1]["done"] == loaded[-1]["total"]
    assert set(loaded[-1]) == {"event", "at", "database", "what", "table", "rows", "bytes", "done", "total"}
    status = json.loads(lab.migrate("--json", "status", "wave-1").stdout)["waves"]["wave-1"]
    assert status["status"] == "interrupted" and status["lock"] is None

    # The resume killed too (the verification under way): it is resumed again, not replaced.
    run_and_kill_at("action", "verify")
    again = json.loads(lab.migrate("--json", "status", "wave-1").stdout)["waves"]["wave-1"]
    assert again["status"] == "interrupted" and again["run_id"] == status["run_id"]
    resumed = lab.migrate("run", "wave-1", "--yes", *APPROVE)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed and completed (run {status['run_id']})" in resumed.stdout
    assert_target_equals_source()
    # Completed side effects were not repeated: one upload of each staged object, one version each.
    versions = lab.bucket_versions()
    keys = [k for k, _ in versions]
    assert len(keys) == len(set(keys)), "a staged object was uploaded twice"
    schemas = sorted(k.split("/db/")[1] for k in keys if k.endswith("/schema.dump"))
    assert schemas == ["personale/schema.dump", "presenze/schema.dump"]
    assert all(any(f"/db/{db}/data/" in k for k in keys) for db in lab.DATABASES)
    assert lab.s3_client().list_multipart_uploads(Bucket=lab.BUCKET).get("Uploads", []) == []
    records = lab.migrate("--json", "status", "wave-1")
    assert json.loads(records.stdout)["chain"] == "intact"
    assert lab.migrate("rollback", "wave-1", "--yes").returncode == 0
    assert lab.snapshot() == before


def test_concurrent_run_is_refused_with_exit_3(clean_lab):
    inv = config.load(lab.INVENTORY)
    with lock.wave_lock(inv.state_dir, "wave-1", "run"):
        busy = lab.migrate("run", "wave-1", "--yes")
        rollback = lab.migrate("rollback", "wave-1", "--yes")
    assert busy.returncode == 3 and rollback.returncode == 3
    assert f"wave wave-1 is locked by pid {os.getpid()}" in busy.stderr
    assert lab.databases("target") == set()


def test_address_outside_allowed_networks_fails_closed(clean_lab, tmp_path):
    import shutil
    inv = tmp_path / "inv"
    shutil.copytree(lab.INVENTORY, inv, ignore=shutil.ignore_patterns(".state"))
    spec = (inv / "migrate.yml").read_text().replace("allowed_networks: [127.0.0.0/8]", "allowed_networks: [127.0.0.2/32]")
    (inv / "migrate.yml").write_text(spec)
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), "plan", "wave-1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "outside the allowed networks 127.0.0.2/32" in proc.stderr


def require_rehearsal(inventory: str) -> None:
    spec = lab.INVENTORY / "migrate.yml"
    text = spec.read_text().replace("      blackout: []\n", "      blackout: []\n"
                                    f"    require_rehearsal: {{inventory: {inventory}, max_age_days: 1}}\n", 1)
    spec.write_text(text)


def test_rehearsal_runs_rolls_back_and_records_both_timings(clean_lab):
    lab.drain_spool()
    original = (lab.INVENTORY / "migrate.yml").read_text()
    require_rehearsal(".")
    try:
        refused = lab.migrate("preflight", "wave-1")
    finally:
        (lab.INVENTORY / "migrate.yml").write_text(original)
    assert refused.returncode == 1 and "no rehearsal of wave-1" in refused.stderr
    before = lab.snapshot()
    proc = lab.migrate("run", "wave-1", "--rehearse", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "rehearsed" in proc.stdout
    assert lab.snapshot() == before, "a rehearsal leaves the lab as it found it"
    wave = json.loads(lab.migrate("--json", "status", "wave-1").stdout)["waves"]["wave-1"]
    assert wave["status"] == "rolled_back"
    assert wave["rehearsal"]["run_seconds"] > 0 and wave["rehearsal"]["rollback_seconds"] > 0
    require_rehearsal(".")
    try:
        allowed = lab.migrate("preflight", "wave-1")
    finally:
        (lab.INVENTORY / "migrate.yml").write_text(original)
    assert allowed.returncode == 0 and "rehearsed 0.0 days ago" in allowed.stdout, allowed.stdout + allowed.stderr
