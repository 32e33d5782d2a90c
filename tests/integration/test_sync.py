"""The warm path on the lab: `migrate sync` while the source takes writes, the cutover in a short
freeze, a no-go after a write on the target, kills, DDL during the sync, a leftover slot."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg

from migrate.lab.load import Load
from tests.integration import lab_support as lab

APPROVE = ("--approve", "tester")
PUNCH = ("INSERT INTO punch (employee_id, punched_at, direction, origin, recorded_at)"
         " SELECT employee_id, now(), 'IN', 'TERM', now() FROM staff WHERE active ORDER BY random() LIMIT 1"
         " RETURNING punch_id")


class Writer:
    """Punches straight into the source database, as fast as it takes them, from before the
    slot exists until told to stop: every committed punch_id is kept."""

    def __init__(self, side: str = "source"):
        self.side, self.ids, self.refused = side, [], 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)

    def _write(self):
        while not self.stopping.is_set():
            try:
                with psycopg.connect(lab.dsn(self.side, "presenze"), autocommit=True) as conn:
                    while not self.stopping.is_set():
                        self.ids.append(conn.execute(PUNCH).fetchone()[0])
                        time.sleep(0.005)
            except psycopg.Error:
                self.refused += 1  # fenced or terminated: the cutover's doing
                time.sleep(0.05)


def punch_ids(side: str) -> list[int]:
    with psycopg.connect(lab.dsn(side, "presenze")) as conn:
        return [r[0] for r in conn.execute("SELECT punch_id FROM punch")]


def replication_leftovers() -> dict:
    """Every slot, publication and subscription, and any read-only default, on both clusters."""
    found = {}
    for side in ("source", "target"):
        for db in lab.databases(side) | {"postgres"}:
            with psycopg.connect(lab.dsn(side, db)) as conn:
                rows = [f"slot {r[0]}" for r in conn.execute("SELECT slot_name FROM pg_replication_slots")]
                rows += [f"publication {r[0]}" for r in conn.execute("SELECT pubname FROM pg_publication")]
                rows += [f"subscription {r[0]}" for r in conn.execute("SELECT subname FROM pg_subscription")]
                rows += [f"setting {r[0]}" for r in conn.execute(
                    "SELECT unnest(setconfig) FROM pg_db_role_setting WHERE setdatabase ="
                    " (SELECT oid FROM pg_database WHERE datname = current_database())")
                    if "read_only" in r[0]]
                rows += [f"replica identity full {r[0]}" for r in conn.execute(
                    "SELECT relname FROM pg_class WHERE relreplident = 'f'")]
            if rows:
                found[f"{side}/{db}"] = sorted(set(rows))
    return found


SOURCE_DOCS = lab.host_root("src-app") / "srv/personale/documents"
TARGET_DOCS = lab.host_root("tgt-app") / "srv/personale/documents"


def docs(root) -> dict[str, str]:
    """The archive's files (the old versions a delta set aside, under its hidden trash, left out:
    the rollback puts them back)."""
    return {k: v for k, v in lab.tree(root).items() if not k.startswith(".migrate-trash-")}


def change_documents() -> None:
    """A new document, a changed one, a deleted one on the live source."""
    first, second = sorted(p for p in SOURCE_DOCS.rglob("*.pdf"))[:2]
    (first.parent / "nuovo certificato d'idoneità.pdf").write_bytes(b"%PDF-1.4 new during the sync")
    first.write_bytes(first.read_bytes() + b"% appended during the sync")
    second.unlink()


def wave_status() -> dict:
    done = lab.migrate("--json", "status", "wave-1")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["waves"]["wave-1"]


def wait_for(condition, seconds: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_sync_under_writes_then_cutover_loses_nothing_and_rollback_leaves_nothing(clean_lab):
    lab.drain_spool()
    before = replication_leftovers()
    docs_before = docs(TARGET_DOCS)
    load = Load(lab.LAB_DIR, fresh=True)
    load.start(20)
    with Writer() as writer:
        synced = lab.migrate("sync", "wave-1", "--yes")
        assert synced.returncode == 0, synced.stderr
        assert "in sync" in synced.stdout
        status = wave_status()
        assert status["status"] == "synced" and status["warm"] and status["freeze"] is None
        assert set(status["sync"]) == {"personale", "presenze"}
        time.sleep(1.0)  # the slot streams what the writer commits after the snapshot
        wait_for(lambda: wave_status()["sync"]["presenze"]["state"] in ("streaming", "caught up"), what="streaming")
        presenze = wave_status()["sync"]["presenze"]
        assert presenze["slot"] == "migrate_sync_presenze" and presenze["slot_age_seconds"] > 0
        assert presenze["subscription"]["enabled"] and presenze["slot_state"]["retained_wal_bytes"] >= 0
        written = len(writer.ids)
        assert written > 50, "the writer wrote during the copy"
        assert docs(TARGET_DOCS) == docs(SOURCE_DOCS), "the documents moved before the freeze"
        change_documents()  # the source stays live: its documents change before the freeze too
        again = lab.migrate("sync", "wave-1", "--yes")  # repeatable: checks, stays synced
        assert again.returncode == 0, again.stderr
        assert "bytes behind" in again.stdout and wave_status()["status"] == "synced"
        cut = lab.migrate("--json", "run", "wave-1", "--yes", *APPROVE, timeout=600)
    load.stop()
    assert cut.returncode == 0, cut.stderr
    assert writer.refused >= 1, "the fence ended the writer's session"
    # Every punch the source committed is on the target exactly once (the verification inside the
    # freeze compared every row at the fenced position; this checks it independently).
    on_target = punch_ids("target")
    assert len(on_target) == len(set(on_target))
    assert set(writer.ids) <= set(on_target)
    assert load.acked > 20 and load.check("live").ok, load.check("live").problem()
    # The way back brings the target's writes after the switch to the source.
    wait_for(lambda: lab.table_digests("source", "presenze") == lab.table_digests("target", "presenze"),
             what="the way back to catch up")
    assert load.check("source").ok
    frozen = wave_status()["freeze"]
    assert frozen["seconds"] > 0 and [p["step"] for p in frozen["phases"]][:2] == [
        "freeze:src-app", "personnel/fence-db:personale"]
    assert frozen["phases"][-1]["step"] == "switch-entry"
    assert "verify" in [p["step"] for p in frozen["phases"]]
    printed = lab.migrate("report", "wave-1")
    assert printed.returncode == 0 and f"freeze: {frozen['seconds']:.1f}s" in printed.stdout
    assert "sync-db" not in json.dumps(frozen), "the copy is outside the freeze"
    steps_frozen = [p["step"] for p in frozen["phases"]]
    assert "personnel/archive-delta" in steps_frozen and "personnel/stage-archive" not in steps_frozen
    assert docs(TARGET_DOCS) == docs(SOURCE_DOCS), "the delta brought the changes, deletions too"

    back = lab.migrate("rollback", "wave-1", "--yes", timeout=600)
    assert back.returncode == 0, back.stderr
    assert replication_leftovers() == before
    assert docs(TARGET_DOCS) == docs_before, "the target's documents as before the wave"
    assert load.check("source").ok, "every acknowledged write survives the rollback, on the source"


def test_no_go_after_a_write_on_the_target_leaves_the_source_as_fenced(clean_lab):
    lab.drain_spool()
    before = lab.snapshot()
    dry = lab.migrate("sync", "wave-1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would" in dry.stdout and "sync-db:presenze" in dry.stdout and "fence-db:presenze" in dry.stdout
    assert lab.snapshot() == before and wave_status()["status"] == "not started"
    assert lab.migrate("sync", "wave-1", "--yes").returncode == 0
    stopped = lab.migrate("run", "wave-1", "--yes", timeout=600)
    assert stopped.returncode == 4, stopped.stderr  # at the go/no-go gate
    fenced = lab.table_digests("source", "presenze")
    with Writer(side="target") as smoke:  # a smoke test on the target at the gate
        wait_for(lambda: len(smoke.ids) >= 5, what="writes on the target")
    time.sleep(2.0)
    assert lab.table_digests("source", "presenze") == fenced, "a write on the target reached the source before the switch"
    with psycopg.connect(lab.dsn("source", "presenze")) as conn:
        (read_only,) = conn.execute("SHOW default_transaction_read_only").fetchone()
    assert read_only == "on", "the source is fenced at the gate"
    back = lab.migrate("rollback", "wave-1", "--yes", timeout=600)
    assert back.returncode == 0, back.stderr
    assert lab.snapshot() == before
    assert replication_leftovers() == {}


def sync_and_kill_at(database: str, *, last: bool = False) -> None:
    """`migrate sync`, SIGKILLed when a chunk of `database` is staged (the first, or the last)."""
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "-i", str(lab.INVENTORY), "--json", "sync",
                             "wave-1", "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "chunk" and event.get("database") == database and event["what"] == "chunk_staged" \
                and (not last or event["done"] == event["total"]):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the sync ended before the copy of " + database


def test_kill_during_the_copy_and_during_streaming_then_sync_again_no_gap_no_duplicate(clean_lab):
    lab.drain_spool()
    with Writer() as writer:
        sync_and_kill_at("presenze")
        assert wave_status()["status"] == "interrupted"
        again = lab.migrate("sync", "wave-1", "--yes")
        assert again.returncode == 0, again.stderr
        # Streaming: the walsender dies under the writer; PostgreSQL resumes from the confirmed position.
        with psycopg.connect(lab.dsn("source", "postgres"), autocommit=True) as conn:
            killed = conn.execute("SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots"
                                  " WHERE slot_name LIKE 'migrate_sync_%' AND active_pid IS NOT NULL").fetchone()[0]
        assert killed >= 1
        time.sleep(1.0)
    done = lab.migrate("run", "wave-1", "--yes", *APPROVE, timeout=600)
    assert done.returncode == 0, done.stderr  # its verification found no differing row
    on_target = punch_ids("target")
    assert len(on_target) == len(set(on_target)) and set(writer.ids) <= set(on_target)
    # The killed attempt's slot was replaced: one slot per database, none left after the cutover.
    assert not any(k.startswith("source/") and any(r.startswith("slot") for r in v)
                   for k, v in replication_leftovers().items())
    assert lab.migrate("rollback", "wave-1", "--yes", timeout=600).returncode == 0
    assert replication_leftovers() == {}


def test_ddl_on_the_source_during_sync_blocks_the_cutover_before_the_freeze(clean_lab):
    assert lab.migrate("sync", "wave-1", "--yes").returncode == 0
    with psycopg.connect(lab.dsn("source", "presenze"), autocommit=True) as conn:
        conn.execute("ALTER TABLE punch ADD COLUMN device_note text")
    checked = lab.migrate("sync", "wave-1", "--yes")
    assert checked.returncode == 1 and "table public.punch" in checked.stderr
    refused = lab.migrate("run", "wave-1", "--yes", *APPROVE, timeout=600)
    assert refused.returncode == 1
    assert "table public.punch" in refused.stderr and "DDL" in refused.stderr
    assert wave_status()["steps"][[s["id"] for s in wave_status()["steps"]].index("cutover-check")]["state"] == "failed"
    maintenance = lab.host_root("src-app") / "var/lib/hr/presenze.maintenance"
    assert not maintenance.exists(), "refused before the freeze: the source applications still serve"
    assert lab.migrate("rollback", "wave-1", "--yes", timeout=600).returncode == 0
    assert replication_leftovers() == {}


def test_a_leftover_slot_of_ours_is_named_by_preflight(clean_lab):
    with psycopg.connect(lab.dsn("source", "presenze"), autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('migrate_sync_forgotten', 'pgoutput')")
    try:
        found = lab.migrate("preflight", "wave-1")
        assert found.returncode != 0
        assert "migrate_sync_forgotten" in found.stderr + found.stdout
        assert "belongs to no live wave" in found.stderr + found.stdout
        stray = json.loads(lab.migrate("--json", "status").stdout)["stray_slots"]
        assert [(s["server"], s["slot"], s["database"]) for s in stray] == [
            ("onprem-pg", "migrate_sync_forgotten", "presenze")]
        assert "migrate_sync_forgotten" in lab.migrate("status").stdout
    finally:
        with psycopg.connect(lab.dsn("source", "presenze"), autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot('migrate_sync_forgotten')")


def run_and_kill_in(step: str, after: float) -> None:
    """`migrate run wave-1`, SIGKILLed `after` seconds into `step`'s first action."""
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "-i", str(lab.INVENTORY), "--json", "run",
                             "wave-1", "--yes", *APPROVE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "action" and event.get("step") == step:
            time.sleep(after)
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before {step}"


def test_a_cutover_killed_inside_the_fence_resumes_and_loses_nothing(clean_lab):
    lab.drain_spool()
    with Writer() as writer:
        assert lab.migrate("sync", "wave-1", "--yes").returncode == 0
        time.sleep(0.5)
        run_and_kill_in("attendance/fence-db:presenze", 0.05)
    assert wave_status()["status"] == "interrupted"
    with psycopg.connect(lab.dsn("source", "presenze")) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on", "still fenced"
    resumed = lab.migrate("run", "wave-1", "--yes", *APPROVE, timeout=600)
    assert resumed.returncode == 0, resumed.stderr  # its verification compared every row
    on_target = punch_ids("target")
    assert len(on_target) == len(set(on_target)) and set(writer.ids) <= set(on_target)
    assert lab.migrate("rollback", "wave-1", "--yes", timeout=600).returncode == 0
    assert replication_leftovers() == {}


def test_differences_before_and_during_the_freeze_are_found_and_refuse_the_cutover(clean_lab):
    lab.drain_spool()
    before = lab.snapshot()
    assert lab.migrate("sync", "wave-1", "--yes").returncode == 0
    with psycopg.connect(lab.dsn("target", "presenze"), autocommit=True) as conn:
        low, high = conn.execute("SELECT min(punch_id), max(punch_id) FROM punch").fetchone()
        # Before the freeze, in a range nobody else touches: on the target only.
        conn.execute("UPDATE punch SET direction = CASE direction WHEN 'IN' THEN 'OUT' ELSE 'IN' END"
                     " WHERE punch_id = %s", (low,))
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "-i", str(lab.INVENTORY), "--json", "run",
                             "wave-1", "--yes", *APPROVE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1].get("event") == "action" and events[-1].get("step") == "attendance/fence-db:presenze":
            with psycopg.connect(lab.dsn("target", "presenze"), autocommit=True) as conn:  # during the freeze
                conn.execute("UPDATE punch SET correction_note = 'changed in the freeze' WHERE punch_id = %s",
                             (high - 1,))
    proc.wait(timeout=600)
    error = proc.stderr.read()
    assert proc.returncode == 1, error
    assert "difference(s) between source and target" in error
    status = wave_status()
    assert [s["state"] for s in status["steps"] if s["id"] == "verify"] == ["failed"]
    assert "start:tgt-app" not in [s["id"] for s in status["steps"] if s["state"] == "done"]
    report = json.loads(lab.migrate("--json", "report", "wave-1").stdout)
    punches = sorted((d["key"]["punch_id"], tuple(d["columns"])) for d in report["differences"]
                     if d["object"] == "public.punch" and d["area"] == "rows")
    assert punches == sorted([(str(low), ("direction",)), (str(high - 1), ("correction_note",))])
    # The target's own audit trigger logged both writes: found as rows the source does not have.
    assert {d["problem"] for d in report["differences"] if d["object"] == "public.audit_log"} == {"extra_on_target"}
    modes = {t["table"]: t.get("mode") for t in report["tables"] if t["database"] == "attendance/presenze"}
    assert modes["public.punch"] == "incremental"
    assert lab.migrate("rollback", "wave-1", "--yes", timeout=600).returncode == 0
    assert lab.snapshot() == before


def attempts(database: str) -> int:
    from migrate.engine.journal import Journal
    j = Journal(lab.INVENTORY / ".state" / "journal.sqlite")
    try:
        return sum(1 for r in j.records() if r.kind == "sync_attempt" and r.data["database"] == database)
    finally:
        j.close()


def test_a_sync_killed_once_every_chunk_is_staged_keeps_its_slot_and_loads_the_rest(clean_lab):
    lab.drain_spool()
    with Writer() as writer:
        sync_and_kill_at("presenze", last=True)
        assert attempts("presenze") == 1
        again = lab.migrate("sync", "wave-1", "--yes")
        assert again.returncode == 0, again.stderr
        assert attempts("presenze") == 1, "the staged snapshot was used, not a new one"
        time.sleep(0.5)
    done = lab.migrate("run", "wave-1", "--yes", *APPROVE, timeout=600)
    assert done.returncode == 0, done.stderr  # every row verified at the fence
    on_target = punch_ids("target")
    assert len(on_target) == len(set(on_target)) and set(writer.ids) <= set(on_target)
    assert lab.migrate("rollback", "wave-1", "--yes", timeout=600).returncode == 0
    assert replication_leftovers() == {}
