"""Verification on the real lab: one wave per module, then per case inject a difference into
the target, verify, expect exactly that difference named, and undo the injection."""

import json
import os
import re
from contextlib import contextmanager

import psycopg
import pytest

from migrate import commands, config
from migrate.engine.events import Bus
from migrate.model import layout
from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration

PRESENZE, PERSONALE = "attendance/presenze", "personnel/personale"


@pytest.fixture(scope="module")
def waved(test_lab):
    test_lab.reset()
    # Up to the go/no-go gate: copied, verified, the way back set up, nothing switched.
    done = lab.migrate("run", "wave-1", "--yes")
    assert done.returncode == 4, done.stdout + done.stderr
    # The way back would carry each injected difference to the source and hide it: pause it.
    for db in lab.DATABASES:
        with psycopg.connect(lab.dsn("source", db), autocommit=True) as conn:
            for (name,) in conn.execute(
                    "SELECT subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid"
                    " WHERE d.datname = current_database()").fetchall():
                conn.execute(f'ALTER SUBSCRIPTION "{name}" DISABLE')
    yield test_lab
    test_lab.reset()


@contextmanager
def target(dbname):
    """A superuser session on the target that skips triggers: an injection must be exactly one change."""
    with psycopg.connect(lab.dsn("target", dbname), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def one(dbname, query, params=None):
    with target(dbname) as conn:
        return conn.execute(query, params).fetchone()


def verify(depth="full") -> dict:
    return commands.verify(config.load(lab.INVENTORY), "wave-1", bus=Bus(), depth=depth)


def found(data: dict) -> set:
    return {(d["area"], d["database"], d["object"], d["problem"], tuple(sorted(d["key"].items())), tuple(d["columns"]))
            for d in data["differences"]}


def test_wave_verifies_itself_and_identical_data_exits_0(waved):
    status = json.loads(lab.migrate("--json", "status", "wave-1").stdout)["waves"]["wave-1"]
    steps = {s["id"]: s["state"] for s in status["steps"]}
    assert status["status"] == "awaiting_approval" and steps[layout.VERIFY_ID] == "done" and steps[layout.GATE_ID] == "waiting"
    assert [s["id"] for s in status["steps"]][1] == layout.evidence_id("attendance", "presenze")
    records = commands.journal(config.load(lab.INVENTORY)).records(wave="wave-1")
    digests = [r.data["result"]["digests"] for r in records
               if r.kind == "effect_done" and r.step == layout.evidence_id("attendance", "presenze")]
    assert set(digests[0]) == {"public.punch", "public.monthly_timesheet"}
    checked = [r.data for r in records if r.kind == "verification"]
    assert checked[-1]["status"] == "passed" and checked[-1]["evidence"]

    proc = lab.migrate("--json", "verify", "wave-1")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["status"] == "passed" and data["differences"] == []
    assert {t["table"] for t in data["tables"]} >= {"public.punch", "public.employee", "public.headcount_snapshot"}
    evidence = [s for s in data["sections"] if s["area"] == "evidence"]
    assert [s["facts"]["source_taken"] for s in evidence] == ["before the copy"] * 2
    assert {s["name"] for s in data["sections"] if s["area"] == "business"} >= {"punches_per_month"}
    docs = [s for s in data["sections"] if s["area"] == "documents"]
    assert docs[0]["status"] == "ok" and docs[0]["facts"]["files"] > 0 and docs[0]["facts"]["hashed"]
    assert docs[1]["name"] == "restored archive" and docs[1]["status"] == "ok"
    assert docs[1]["facts"]["files"] == docs[0]["facts"]["files"] and docs[1]["facts"]["hashed"]
    shown = lab.migrate("report", "wave-1")
    assert shown.returncode == 0 and "PASSED" in shown.stdout


def test_changed_value_in_evidence_table(waved):
    pid, = one("presenze", "UPDATE punch SET direction = CASE direction WHEN 'IN' THEN 'OUT' ELSE 'IN' END"
               " WHERE punch_id = (SELECT min(punch_id) + 7 FROM punch) RETURNING punch_id")
    try:
        proc = lab.migrate("--json", "verify", "wave-1")
        assert proc.returncode == 1 and "difference" in proc.stderr
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        one("presenze", "UPDATE punch SET direction = CASE direction WHEN 'IN' THEN 'OUT' ELSE 'IN' END"
            " WHERE punch_id = %s RETURNING 1", (pid,))
    assert found(data) == {
        ("rows", PRESENZE, "public.punch", "changed", (("punch_id", str(pid)),), ("direction",)),
        ("evidence", PRESENZE, "public.punch", "digest_differs", (), ())}
    remedy = [d["remedy"] for d in data["differences"] if d["area"] == "rows"][0]
    assert "re-copy public.punch rows with punch_id in [" in remedy


def test_deleted_and_inserted_rows(waved):
    with target("presenze") as conn:
        row = conn.execute("SELECT * FROM justification ORDER BY justification_id LIMIT 1 OFFSET 3").fetchone()
        conn.execute("DELETE FROM justification WHERE justification_id = %s", (row[0],))
        new_id, = conn.execute("INSERT INTO overtime (overtime_id, employee_id, work_date, minutes, rate, hourly_rate,"
                               " amount) SELECT max(overtime_id) + 1000, min(employee_id), '2025-01-02', 30, 1.15, 20,"
                               " 11.5 FROM overtime RETURNING overtime_id").fetchone()
    try:
        data = verify()
    finally:
        with target("presenze") as conn:
            conn.execute("DELETE FROM overtime WHERE overtime_id = %s", (new_id,))
            conn.execute(f"INSERT INTO justification VALUES ({', '.join(['%s'] * len(row))})", row)
    assert found(data) == {
        ("rows", PRESENZE, "public.justification", "missing_on_target", (("justification_id", str(row[0])),), ()),
        ("rows", PRESENZE, "public.overtime", "extra_on_target", (("overtime_id", str(new_id)),), ())}


def test_counts_depth_sees_a_row_count_difference(waved):
    row = one("presenze", "DELETE FROM overtime WHERE overtime_id = (SELECT max(overtime_id) FROM overtime) RETURNING *")
    try:
        data = verify(depth="counts")
    finally:
        with target("presenze") as conn:
            conn.execute(f"INSERT INTO overtime VALUES ({', '.join(['%s'] * len(row))})", row)
    assert found(data) == {("rows", PRESENZE, "public.overtime", "row_count_differs", (), ())}


@pytest.mark.parametrize("name, inject, undo, table, key, column", [
    ("null to empty string",
     "UPDATE justification SET document_ref = '' WHERE justification_id = (SELECT min(justification_id)"
     " FROM justification WHERE document_ref IS NULL) RETURNING justification_id",
     "UPDATE justification SET document_ref = NULL WHERE justification_id = %s RETURNING 1",
     "public.justification", ("justification_id",), "document_ref"),
    ("trailing space",
     "UPDATE reason_code SET description = description || ' ' WHERE code = (SELECT min(code) FROM reason_code)"
     " RETURNING code",
     "UPDATE reason_code SET description = left(description, -1) WHERE code = %s RETURNING 1",
     "public.reason_code", ("code",), "description"),
    ("one microsecond",
     "UPDATE daily_balance SET computed_at = computed_at + interval '1 microsecond' WHERE (employee_id, work_date)"
     " = (SELECT employee_id, work_date FROM daily_balance ORDER BY 1, 2 LIMIT 1 OFFSET 5) RETURNING employee_id,"
     " work_date::text",
     "UPDATE daily_balance SET computed_at = computed_at - interval '1 microsecond' WHERE employee_id = %s"
     " AND work_date = %s RETURNING 1",
     "public.daily_balance", ("employee_id", "work_date"), "computed_at"),
])
def test_subtle_value_changes_are_named_by_key_and_column(waved, name, inject, undo, table, key, column):
    injected = one("presenze", inject)
    try:
        data = verify()
    finally:
        assert one("presenze", undo, injected)
    assert found(data) == {("rows", PRESENZE, table, "changed", tuple(sorted(zip(key, map(str, injected)))),
                            (column,))}, name


def test_numeric_scale_is_a_difference(waved):
    with target("presenze") as conn:
        conn.execute("ALTER TABLE overtime ALTER COLUMN amount TYPE numeric")  # the typmod no longer pins the scale
        oid, = conn.execute("UPDATE overtime SET amount = amount::numeric(12, 3) WHERE overtime_id ="
                            " (SELECT min(overtime_id) FROM overtime) RETURNING overtime_id").fetchone()
    try:
        data = verify()
    finally:
        with target("presenze") as conn:
            conn.execute("ALTER TABLE overtime ALTER COLUMN amount TYPE numeric(10, 2)")
    assert found(data) == {
        ("rows", PRESENZE, "public.overtime", "changed", (("overtime_id", str(oid)),), ("amount",)),
        ("schema", PRESENZE, "public.overtime.amount", "definition_differs", (), ())}


def test_target_session_defaults_do_not_make_false_differences(waved):
    with target("postgres") as conn:
        for db in lab.DATABASES:
            conn.execute(f"ALTER DATABASE {db} SET timezone = 'America/New_York'")
            conn.execute(f"ALTER DATABASE {db} SET datestyle = 'SQL, DMY'")
            conn.execute(f"ALTER DATABASE {db} SET extra_float_digits = 0")
            conn.execute(f"ALTER DATABASE {db} SET intervalstyle = 'sql_standard'")
        conn.execute("ALTER SYSTEM SET timezone = 'Asia/Tokyo'")
        conn.execute("ALTER SYSTEM SET bytea_output = 'escape'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        assert one("presenze", "SELECT current_setting('datestyle')")[0] == "SQL, DMY"
        data = verify()
    finally:
        with target("postgres") as conn:
            for db in lab.DATABASES:
                conn.execute(f"ALTER DATABASE {db} RESET ALL")
            conn.execute("ALTER SYSTEM RESET timezone")
            conn.execute("ALTER SYSTEM RESET bytea_output")
            conn.execute("SELECT pg_reload_conf()")
    assert data["differences"] == [] and data["status"] == "passed"


def test_duplicate_row_in_a_table_without_primary_key(waved):
    ctid, = one("personale", "INSERT INTO headcount_snapshot SELECT * FROM headcount_snapshot"
                " ORDER BY snapshot_month, org_unit_code LIMIT 1 RETURNING ctid")
    try:
        data = verify()
    finally:
        one("personale", "DELETE FROM headcount_snapshot WHERE ctid = %s RETURNING 1", (ctid,))
    (diff,) = data["differences"]
    assert (diff["object"], diff["problem"], diff["detail"]) == (
        "public.headcount_snapshot", "duplicated_on_target", "1 on source, 2 on target")
    assert re.fullmatch(r"[0-9a-f]{16}", diff["key"]["row_md5"])


def test_sequence_set_back_index_and_trigger_dropped(waved):
    with target("presenze") as conn:
        value, called = conn.execute("SELECT last_value, is_called FROM overtime_overtime_id_seq").fetchone()
        conn.execute("SELECT setval('overtime_overtime_id_seq', 1)")
        index, = conn.execute("SELECT pg_get_indexdef('overtime_employee_idx'::regclass)").fetchone()
        conn.execute("DROP INDEX overtime_employee_idx")
        trigger, = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'leave_request_touch'"
                                ).fetchone()
        conn.execute("DROP TRIGGER leave_request_touch ON leave_request")
    try:
        data = verify()
    finally:
        with target("presenze") as conn:
            conn.execute("SELECT setval('overtime_overtime_id_seq', %s, %s)", (value, called))
            conn.execute(index)
            conn.execute(trigger)
    assert found(data) == {
        ("sequence", PRESENZE, "public.overtime_overtime_id_seq", "behind_source", (), ()),
        ("schema", PRESENZE, "public.overtime_employee_idx", "missing_on_target", (), ()),
        ("schema", PRESENZE, "public.leave_request.leave_request_touch", "missing_on_target", (), ())}
    assert verify()["status"] == "passed"


def manifest():
    s3 = lab.s3_client()
    key = next(k for k, _ in lab.bucket_versions() if k.endswith("docs/personnel/manifest.json"))
    return s3, json.loads(s3.get_object(Bucket=lab.BUCKET, Key=key)["Body"].read())


def test_a_pack_altered_in_the_bucket_then_missing(waved):
    s3, staged = manifest()
    pack = staged["packs"][0]
    original = s3.get_object(Bucket=lab.BUCKET, Key=pack["key"])["Body"].read()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01  # same size: only our SHA-256 of the pack can see it
    s3.put_object(Bucket=lab.BUCKET, Key=pack["key"], Body=bytes(flipped))
    try:
        data = verify()
        sizes_only = verify(depth="checksums")
        s3.delete_object(Bucket=lab.BUCKET, Key=pack["key"])
        gone = verify(depth="checksums")
    finally:
        s3.put_object(Bucket=lab.BUCKET, Key=pack["key"], Body=original)
    assert found(data) == {("documents", "personnel", pack["key"], "altered_in_bucket", (), ())}
    assert [d for d in sizes_only["differences"] if d["area"] == "documents"] == []
    assert found(gone) == {("documents", "personnel", pack["key"], "missing_in_bucket", (), ())}


@contextmanager
def damaged_documents(altered: dict, missing: dict):
    """On the target host: one restored document with a byte flipped (same size), one removed."""
    top = lab.host_root("tgt-app") / "srv" / "personale" / "documents"
    paths = {f["path"]: top / f["path"] for f in (altered, missing)}
    original = {p: (path.read_bytes(), path.stat()) for p, path in paths.items()}
    flipped = bytearray(original[altered["path"]][0])
    flipped[len(flipped) // 2] ^= 0x01  # same size: only the SHA-256 on the host can see it
    paths[altered["path"]].write_bytes(bytes(flipped))
    paths[missing["path"]].unlink()
    try:
        yield
    finally:
        for p, (body, st) in original.items():
            paths[p].write_bytes(body)
            os.chmod(paths[p], st.st_mode & 0o7777)
            os.utime(paths[p], ns=(st.st_atime_ns, st.st_mtime_ns))


def named(index: int, f: dict) -> tuple:
    return ("document", index), ("sha256", f["sha256"][:16])


def test_restored_document_altered_and_one_missing_on_the_target_host(waved):
    files = manifest()[1]["files"]
    altered, missing = files[2], files[3]
    with damaged_documents(altered, missing):
        data = verify()
        sizes_only = verify(depth="checksums")
    assert found(data) == {("documents", "personnel", "manifest", "altered_on_target_host", named(2, altered), ()),
                           ("documents", "personnel", "manifest", "missing_on_target_host", named(3, missing), ())}
    assert found(sizes_only) == found(data), "the host hashes at checksums depth too (nothing crosses)"
    assert verify()["status"] == "passed"


def test_document_paths_reach_no_file_and_are_shown_only_when_asked(waved):
    """A path names the employee (their folder) and the kind of document: journal, state dir
    and report name the document by manifest index and hash; --show-paths prints the path."""
    files = manifest()[1]["files"]
    altered, missing = files[2], files[3]
    with damaged_documents(altered, missing):
        plain = lab.migrate("verify", "wave-1")
        asked = lab.migrate("verify", "wave-1", "--show-paths")
        reported = lab.migrate("report", "wave-1", "--show-paths")
        as_json = lab.migrate("--json", "report", "wave-1", "--show-paths")
    assert (plain.returncode, asked.returncode, reported.returncode) == (1, 1, 1), asked.stdout + asked.stderr
    parts = {part for f in (altered, missing) for part in f["path"].split("/")[1:]}  # employee folder, file name
    assert any(part.startswith("E0") for part in parts)
    state = lab.INVENTORY / ".state"
    written = [p for p in state.rglob("*") if p.is_file()]
    assert layout.journal_path(state) in written and any(p.suffix == ".json" for p in (state / "reports").iterdir())
    hits = [(str(p), part) for p in written for part in parts if part.encode() in p.read_bytes()]
    hits += [("stdout/stderr", part) for part in parts if part in plain.stdout + plain.stderr + asked.stderr]
    assert hits == []
    for out in (asked.stdout, reported.stdout):
        assert f"manifest document=3 sha256={missing['sha256'][:16]}: missing_on_target_host: {missing['path']}" in out
        assert f"altered_on_target_host: {altered['path']}" in out
    shown = json.loads(as_json.stdout.splitlines()[-1])["paths"]
    assert {(p["problem"], p["path"]) for p in shown} == {("missing_on_target_host", missing["path"]),
                                                          ("altered_on_target_host", altered["path"])}
    assert verify()["status"] == "passed"


def test_report_never_contains_a_personal_value(waved):
    with psycopg.connect(lab.dsn("source", "personale")) as conn:
        people = conn.execute("SELECT surname, given_name, tax_code, coalesce(iban, '') FROM employee").fetchall()
    emp, = one("personale", "UPDATE employee SET surname = 'Zzyzxcontrolvalue', notes = NULL"
               " WHERE employee_id = (SELECT min(employee_id) FROM employee) RETURNING employee_id")
    try:
        data = verify()
        shown = lab.migrate("report", "wave-1").stdout + lab.migrate("--json", "report", "wave-1").stdout
    finally:
        with psycopg.connect(lab.dsn("source", "personale")) as src:
            surname, notes = src.execute("SELECT surname, notes FROM employee WHERE employee_id = %s", (emp,)).fetchone()
        one("personale", "UPDATE employee SET surname = %s, notes = %s WHERE employee_id = %s RETURNING 1",
            (surname, notes, emp))
    diffs = [d for d in data["differences"] if d["area"] == "rows"]
    assert [(d["key"], d["columns"]) for d in diffs] == [({"employee_id": str(emp)}, ["surname"] + (["notes"] if notes else []))]
    written = shown + "".join(p.read_text() for p in (lab.INVENTORY / ".state" / "reports").iterdir())
    written += "".join(json.dumps(r.data) for r in commands.journal(config.load(lab.INVENTORY)).records())
    assert "Zzyzxcontrolvalue" not in written
    values = {v for person in people for v in person if len(v) >= 6} | {f"{s} {g}" for s, g, _, _ in people}
    leaked = sorted(v for v in values if v in written)
    assert not leaked, f"{len(leaked)} personal value(s) reached a report or the journal"
    assert any(len(t) == 16 for _, _, t, _ in people)
