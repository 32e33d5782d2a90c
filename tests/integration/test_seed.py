"""migrate.lab.data.seed against a throwaway PostgreSQL 15 cluster.

The cluster lives in a temporary directory, listens on 127.0.0.1 only, trusts local
connections (it holds nothing but synthetic data and is deleted at the end) and runs with
fsync off. As root, initdb and pg_ctl run as the postgres OS user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from migrate.lab import data

PG_BIN = Path("/usr/lib/postgresql/15/bin")
EMPLOYEES, YEARS, SEED, OTHER_SEED = 20, 2, 7, 8
SPECIAL_CODES = {"MAL", "VISMED", "L104", "PSIND"}

pytestmark = pytest.mark.skipif(not (PG_BIN / "initdb").exists(),
                                reason="PostgreSQL 15 server binaries not installed")

EXPECTED_TABLES = {
    "personale": ["org_unit", "job_category", "administrative_act", "employee", "family_member",
                  "employment_contract", "classification", "unit_assignment", "career_event",
                  "appointment", "union_delegation", "disciplinary_record",
                  "personnel_document", "headcount_snapshot"],
    "presenze": ["terminal", "work_profile", "staff", "employment_period", "badge", "holiday",
                 "shift", "shift_assignment", "reason_code", "punch", "terminal_import_raw",
                 "daily_balance", "justification", "leave_request", "overtime",
                 "monthly_timesheet", "audit_log"],
}
PUBLIC_TABLES = ("SELECT relname FROM pg_class WHERE relkind = 'r' "
                 "AND relnamespace = 'public'::regnamespace ORDER BY 1")


# --- the throwaway cluster ------------------------------------------------------------------


def _free_port(first: int = 55499) -> int:
    for port in range(first, first + 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def _as_postgres(args: list[str]) -> None:
    # initdb refuses to run as root.
    command = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cluster(request) -> str:
    base = Path(tempfile.mkdtemp(prefix="seed-test-"))
    base.chmod(0o755)                       # the postgres user must traverse it
    data_dir, socket_dir, logfile = base / "data", base / "run", base / "server.log"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        for path in (base, socket_dir):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
    port = _free_port()
    _as_postgres([str(PG_BIN / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"])
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -k {socket_dir} "
               "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
    _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(logfile), "-w",
                  "-o", options, "start"])

    def stop() -> None:
        try:
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w",
                          "stop"])
        finally:
            shutil.rmtree(base, ignore_errors=True)

    request.addfinalizer(stop)
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres"


# --- helpers ------------------------------------------------------------------------------


def _dsn(admin_dsn: str, db: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_dsn, dbname=db)


def _rows(admin_dsn: str, db: str, query, params=None) -> list[tuple]:
    with psycopg.connect(_dsn(admin_dsn, db)) as conn:
        return conn.execute(query, params).fetchall()


def _one(admin_dsn: str, db: str, query, params=None):
    return _rows(admin_dsn, db, query, params)[0][0]


def _count(admin_dsn: str, db: str, table: str, where: str = "true") -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(sql.Identifier(table))
    return _one(admin_dsn, db, query)


def _table_digests(admin_dsn: str) -> dict[str, str]:
    """md5 of every table's rows in a canonical order (text form, sorted)."""
    digests = {}
    for db in data.DATABASES:
        with psycopg.connect(_dsn(admin_dsn, db)) as conn:
            for (table,) in conn.execute(PUBLIC_TABLES).fetchall():
                query = sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' "
                                "ORDER BY t::text), '')) FROM {} t").format(sql.Identifier(table))
                digests[f"{db}.{table}"] = conn.execute(query).fetchone()[0]
    return digests


def _archive_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def seeded(cluster, tmp_path_factory) -> dict:
    archive = tmp_path_factory.mktemp("archive")
    (archive / "stale.txt").write_text("left over from an earlier run")
    result = data.seed(admin_dsn=cluster, archive_dir=archive, employees=EMPLOYEES,
                       years=YEARS, seed=SEED)
    return {"dsn": cluster, "archive": archive, "result": result,
            "digests": _table_digests(cluster), "files": _archive_digests(archive)}


# --- structure ------------------------------------------------------------------------------


def test_every_expected_table_exists_with_rows(seeded):
    dsn, result = seeded["dsn"], seeded["result"]
    for db, tables in EXPECTED_TABLES.items():
        present = {t for (t,) in _rows(dsn, db, PUBLIC_TABLES)}
        assert set(tables) <= present, f"{db} misses {set(tables) - present}"
        for table in tables:
            assert result[f"{db}.{table}"] > 0, f"{db}.{table} is empty"
            assert _count(dsn, db, table) == result[f"{db}.{table}"]
    # Punches dominate: two or more per person and working day.
    assert result["presenze.punch"] > 1.6 * result["presenze.daily_balance"]


def test_databases_and_objects_belong_to_the_owner(seeded):
    dsn = seeded["dsn"]
    owners = dict(_rows(dsn, "postgres", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
                                         "WHERE datname IN ('personale', 'presenze')"))
    assert owners == {"personale": "hr_owner", "presenze": "hr_owner"}
    login = _one(dsn, "postgres", "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'hr_owner'")
    assert login is False
    for db in data.DATABASES:
        assert _one(dsn, db, "SELECT count(*) FROM pg_class "
                             "WHERE relnamespace = 'public'::regnamespace "
                             "AND pg_get_userbyid(relowner) <> 'hr_owner'") == 0


FOREIGN_KEYS = """
    SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, c.convalidated,
           array_agg(a.attname ORDER BY k.ord), array_agg(f.attname ORDER BY k.ord)
    FROM pg_constraint c
    CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k (col, fcol, ord)
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col
    JOIN pg_attribute f ON f.attrelid = c.confrelid AND f.attnum = k.fcol
    WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
    GROUP BY c.oid, c.conrelid, c.confrelid, c.convalidated"""


def test_foreign_keys_are_declared_and_hold(seeded):
    total = 0
    for db in data.DATABASES:
        fks = _rows(seeded["dsn"], db, FOREIGN_KEYS)
        assert len(fks) >= 10, db
        for child, parent, validated, columns, parent_columns in fks:
            assert validated, (child, columns)
            matches = sql.SQL(" AND ").join(
                sql.SQL("p.{} = c.{}").format(sql.Identifier(pc), sql.Identifier(cc))
                for cc, pc in zip(columns, parent_columns))
            not_null = sql.SQL(" AND ").join(
                sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(cc)) for cc in columns)
            orphans = sql.SQL("SELECT count(*) FROM {} c WHERE {} "
                              "AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
                sql.SQL(child), not_null, sql.SQL(parent), matches)
            assert _one(seeded["dsn"], db, orphans) == 0, (db, child, columns)
        total += len(fks)
    assert total >= 30


KEYLESS_TABLES = """
    SELECT count(*) FROM pg_class t
    WHERE t.relkind = 'r' AND t.relnamespace = 'public'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = t.oid AND c.contype = 'p')"""


def test_views_triggers_identities_and_a_keyless_table_in_each_database(seeded):
    dsn = seeded["dsn"]
    for db in data.DATABASES:
        assert _one(dsn, db, "SELECT count(*) FROM pg_views WHERE schemaname = 'public'") >= 1
        assert _one(dsn, db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") >= 1
        assert _one(dsn, db, "SELECT count(*) FROM information_schema.columns "
                             "WHERE table_schema = 'public' AND is_identity = 'YES'") >= 5
        assert _one(dsn, db, KEYLESS_TABLES) >= 1, db
    # Sequences were moved past the loaded ids: a plain insert does not collide.
    with psycopg.connect(_dsn(dsn, "presenze")) as conn:
        conn.execute("INSERT INTO terminal (code, location, model, installed_on) "
                     "VALUES ('TX', 'test', 'test', DATE '2025-01-01')")
        conn.rollback()


def test_audit_trigger_records_a_punch_correction(seeded):
    with psycopg.connect(_dsn(seeded["dsn"], "presenze")) as conn:
        punch_id, direction = conn.execute(
            "SELECT punch_id, direction FROM punch WHERE origin = 'TERM' "
            "ORDER BY punch_id LIMIT 1").fetchone()
        before = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        conn.execute("SET presenze.actor = 'test.operator'")
        conn.execute("UPDATE punch SET corrected_by = 'test.operator', "
                     "direction = CASE direction WHEN 'IN' THEN 'OUT' ELSE 'IN' END "
                     "WHERE punch_id = %s", (punch_id,))
        actor, key, action, old_row, new_row = conn.execute(
            "SELECT actor, row_key, action, old_row, new_row FROM audit_log "
            "ORDER BY audit_id DESC LIMIT 1").fetchone()
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == before + 1
        assert (actor, key, action) == ("test.operator", str(punch_id), "UPDATE")
        assert old_row["direction"] == direction and new_row["direction"] != direction
        assert set(new_row) == {"direction", "corrected_by"}      # only what changed
        conn.rollback()


# --- documents ------------------------------------------------------------------------------


def test_archive_files_match_their_index(seeded):
    archive = seeded["archive"]
    rows = _rows(seeded["dsn"], "personale", "SELECT rel_path, size_bytes, sha256, storage_uri, "
                                             "mime_type FROM personnel_document")
    on_disk = {str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file()}
    assert on_disk == {r[0] for r in rows}                 # the stale file is gone
    total = 0
    for rel_path, size, digest, uri, mime in rows:
        assert re.fullmatch(r"\d{4}/E\d{5}/[a-z0-9-]+-\d+\.pdf", rel_path), rel_path
        blob = (archive / rel_path).read_bytes()
        assert len(blob) == size and hashlib.sha256(blob).hexdigest() == digest
        assert blob.startswith(b"%PDF-") and blob.rstrip().endswith(b"%%EOF")
        assert uri.endswith("/" + rel_path) and mime == "application/pdf"
        total += size
    assert seeded["result"]["archive"] == {"files": len(rows), "bytes": total}
    sizes = [r[1] for r in rows]
    assert min(sizes) >= 300 and max(sizes) <= 16000 and len(set(sizes)) > len(sizes) // 4


def test_monthly_timesheets_carry_a_pdf_once_closed(seeded):
    rows = _rows(seeded["dsn"], "presenze", "SELECT state, pdf, pdf_sha256 FROM monthly_timesheet")
    assert {"OPEN", "CLOSED", "SENT"} <= {r[0] for r in rows}
    for state, pdf, digest in rows:
        if state == "OPEN":
            assert pdf is None
        else:
            assert pdf.startswith(b"%PDF-") and hashlib.sha256(pdf).hexdigest() == digest


# --- content --------------------------------------------------------------------------------


def test_special_category_codes_are_flagged_and_used(seeded):
    dsn = seeded["dsn"]
    special = {c for (c,) in _rows(dsn, "presenze",
                                   "SELECT code FROM reason_code WHERE special_category")}
    used = {c for (c,) in _rows(dsn, "presenze", "SELECT DISTINCT reason_code FROM justification")}
    assert SPECIAL_CODES <= special and SPECIAL_CODES <= used
    assert _count(dsn, "presenze", "punch", "reason_code = 'VISMED'") > 0
    assert _count(dsn, "presenze", "staff", "law104_entitled") > 0
    assert _count(dsn, "personale", "family_member", "disability") > 0


def _check_char(first15: str) -> str:
    """Codice fiscale check character, from the revenue agency's tables (independent of the
    implementation under test)."""
    odd = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22,
           25, 24, 23]
    total = 0
    for i, ch in enumerate(first15):
        value = int(ch) if ch.isdigit() else ord(ch) - 65
        total += odd[value] if i % 2 == 0 else value
    return chr(65 + total % 26)


TAX_CODE = re.compile(r"[A-Z]{6}[0-9L-V]{2}[A-EHLMPRST][0-9L-V]{2}[A-Z][0-9L-V]{3}[A-Z]")
TEXT_COLUMNS = """
    SELECT c.table_name, c.column_name FROM information_schema.columns c
    JOIN pg_tables t ON t.schemaname = c.table_schema AND t.tablename = c.table_name
    WHERE c.table_schema = 'public' AND c.data_type IN ('text', 'character varying')"""


def test_names_are_messy_and_tax_codes_valid(seeded):
    dsn = seeded["dsn"]
    people = _rows(dsn, "personale",
                   "SELECT surname, given_name, tax_code, birth_date FROM employee")
    assert any("'" in surname for surname, *_ in people)
    assert any(re.search(r"[àèéìòùíñü]", surname + given) for surname, given, *_ in people)
    members = _rows(dsn, "personale",
                    "SELECT tax_code FROM family_member WHERE tax_code IS NOT NULL")
    codes = [r[2] for r in people] + [code for (code,) in members]
    assert len(codes) == len(set(codes))
    for _, _, code, birth in people:
        assert TAX_CODE.fullmatch(code), code
        assert code[-1] == _check_char(code[:15])
        assert code[8] == "ABCDEHLMPRST"[birth.month - 1]
    # No text value anywhere ends with whitespace.
    for db in data.DATABASES:
        for table, column in _rows(dsn, db, TEXT_COLUMNS):
            where = sql.SQL("{} ~ '\\s$'").format(sql.Identifier(column)).as_string(None)
            assert _count(dsn, db, table, where) == 0, (db, table, column)


def test_hr_history_is_realistic(seeded):
    dsn = seeded["dsn"]
    systems = {s for (s,) in _rows(dsn, "personale", "SELECT DISTINCT k.system FROM classification "
                                                     "JOIN job_category k USING (category_id)")}
    assert systems == {"CCNL_1999", "CCNL_2019_21"}
    assert _count(dsn, "personale", "career_event", "event_type = 'RIORDINO_AREE'") > 0
    assert _one(dsn, "personale", """
        SELECT count(*) FROM employment_contract a JOIN employment_contract b
          ON a.employee_id = b.employee_id AND b.start_date > a.end_date""") >= 1   # re-hired
    signatures, blanks, pec_null, total = _rows(dsn, "personale", """
        SELECT count(signature_image), count(*) - count(signature_image),
               count(*) - count(pec), count(*) FROM employee""")[0]
    assert signatures > 0 and blanks > 0 and pec_null > total // 2
    png = _one(dsn, "personale", "SELECT signature_image FROM employee "
                                 "WHERE signature_image IS NOT NULL LIMIT 1")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    for table in ("union_delegation", "disciplinary_record", "appointment", "headcount_snapshot"):
        assert _count(dsn, "personale", table) > 0


def test_attendance_refers_to_hr_by_id_and_code(seeded):
    dsn = seeded["dsn"]
    identity = "SELECT employee_id, employee_code, tax_code FROM {}"
    people = set(_rows(dsn, "personale", identity.format("employee")))
    staff = set(_rows(dsn, "presenze", identity.format("staff")))
    assert staff and staff <= people
    contracts = {c for (c,) in _rows(dsn, "personale",
                                     "SELECT contract_id FROM employment_contract")}
    refs = {c for (c,) in _rows(dsn, "presenze", "SELECT contract_ref FROM employment_period")}
    assert refs and refs <= contracts


def test_attendance_is_messy_like_the_real_thing(seeded):
    dsn = seeded["dsn"]
    origins = dict(_rows(dsn, "presenze", "SELECT origin, count(*) FROM punch GROUP BY 1"))
    assert set(origins) == {"TERM", "MAN", "WEB"}
    assert _count(dsn, "presenze", "punch",
                  "origin = 'TERM' AND recorded_at > punched_at + interval '1 hour'") > 0
    assert _count(dsn, "presenze", "punch", "origin = 'MAN' AND corrected_by IS NOT NULL "
                                            "AND correction_note IS NOT NULL") == origins["MAN"]
    assert _count(dsn, "presenze", "punch", "origin = 'TERM' AND corrected_by IS NOT NULL") > 0
    assert _one(dsn, "presenze", """
        SELECT count(*) FROM (SELECT punched_at < lag(punched_at) OVER (ORDER BY punch_id) AS back
                              FROM punch) x WHERE back""") > 0                  # out of order
    assert _one(dsn, "presenze", """
        SELECT count(*) FROM punch a JOIN punch b
          ON b.employee_id = a.employee_id AND b.direction = a.direction
         AND b.punched_at > a.punched_at
         AND b.punched_at <= a.punched_at + interval '10 seconds'""") > 0      # swiped twice
    assert _one(dsn, "presenze", """
        SELECT count(*) FROM (SELECT 1 FROM terminal_import_raw r GROUP BY r.*
                              HAVING count(*) > 1) d""") > 0                     # identical rows
    start, end = data.window(YEARS)
    months = _rows(dsn, "presenze", "SELECT min(month), max(month) FROM v_punches_per_month")[0]
    assert months == (start.replace(day=1), end.replace(day=1))
    assert _count(dsn, "presenze", "daily_balance", "NOT closed") > 0           # open month


# --- determinism and arguments ------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_differs(seeded, tmp_path):
    dsn, archive = seeded["dsn"], seeded["archive"]
    kwargs = {"admin_dsn": dsn, "employees": EMPLOYEES, "years": YEARS}
    assert data.seed(archive_dir=archive, seed=SEED, **kwargs) == seeded["result"]
    assert _table_digests(dsn) == seeded["digests"]
    assert _archive_digests(archive) == seeded["files"]

    other = data.seed(archive_dir=tmp_path / "other", seed=OTHER_SEED, **kwargs)
    digests = _table_digests(dsn)
    for table in ("personale.employee", "personale.personnel_document", "presenze.punch",
                  "presenze.daily_balance", "presenze.monthly_timesheet"):
        assert digests[table] != seeded["digests"][table], table
    assert _archive_digests(tmp_path / "other") != seeded["files"]
    assert other["presenze.punch"] > 0

    # Leave the module's cluster as the other tests expect it.
    data.seed(archive_dir=archive, seed=SEED, **kwargs)
    assert _table_digests(dsn) == seeded["digests"]


def test_bad_arguments_are_refused(tmp_path):
    for bad in ({"employees": 0}, {"years": 0}, {"seed": -1}, {"owner": ""}):
        arguments = {"admin_dsn": "host=127.0.0.1 port=1", "archive_dir": tmp_path,
                     "employees": 5, "years": 1, "seed": 1, **bad}
        with pytest.raises(ValueError):
            data.seed(**arguments)


def test_tax_code_of_a_known_person():
    # Mario Rossi, born in Rome on 1 January 1980: the textbook example.
    assert data.tax_code("Rossi", "Mario", "M", date(1980, 1, 1), "H501") == "RSSMRA80A01H501U"
