"""Verification without a lab: query shapes, difference naming, schema/sequence/document/
business comparisons and the report text, table-driven on canned facts."""

import json

import pytest
from psycopg import sql

from migrate.transfer.catalog import Table
from migrate.verify import business, documents, evidence, report, rows, schema
from migrate.verify.model import Difference, Report, Section, TableResult

PUNCH = Table("public", "punch", 5_000_000, ("punch_id", "employee_id", "reason_code"),
              ("bigint", "integer", "text"), ("punch_id",))
REASON = Table("public", "reason_code", 20, ("code", "description"), ("text", "text"), ("code",))
NO_KEY = Table("public", "terminal_import_raw", 100, ("terminal_code", "raw_line"), ("text", "text"), ())
BALANCE = Table("public", "daily_balance", 2_000_000, ("employee_id", "work_date", "worked_minutes"),
                ("integer", "date", "integer"), ("employee_id", "work_date"))


def text(query: sql.Composable) -> str:
    return query.as_string(None)


@pytest.mark.parametrize("facts, key_sql", [
    (PUNCH, '"punch_id"'),
    (BALANCE, '"employee_id"'),
    (REASON, 'hashtextextended(ROW("code")::text, 0) & 1048575'),
    (NO_KEY, 'hashtextextended(ROW("terminal_code", "raw_line")::text, 0) & 1048575'),
])
def test_key_expression_is_the_integer_key_or_a_hash_bucket(facts, key_sql):
    assert key_sql in text(rows.shape(facts, facts).key_expression())


def test_segment_query_hashes_the_whole_row_text_and_ranges_on_the_key():
    q = text(rows.segments_query(rows.shape(PUNCH, PUNCH)))
    assert 'hashtextextended(ROW("punch_id", "employee_id", "reason_code")::text, 0)' in q
    assert '"punch_id" >= %s::bigint AND "punch_id" <= %s::bigint GROUP BY 1' in q


def test_only_columns_both_sides_have_are_compared():
    target = Table("public", "punch", 0, ("punch_id", "employee_id"), ("bigint", "integer"), ("punch_id",))
    assert rows.shape(PUNCH, target).columns == ("punch_id", "employee_id")


def test_leaf_query_returns_key_text_and_one_md5_per_column_never_values():
    q = text(rows.leaf_query(rows.shape(PUNCH, PUNCH)))
    assert q.startswith('SELECT ARRAY["punch_id"::text], ARRAY[md5("punch_id"::text), md5("employee_id"::text),'
                        ' md5("reason_code"::text)]')


@pytest.mark.parametrize("rows_, parts, width", [(5_000_000, 1024, 4883), (10, 1024, 1)])
def test_split_widths(rows_, parts, width):
    assert rows.split(1, rows_, parts) == width


def test_top_segments_aim_at_leaf_size_with_a_cap():
    assert rows.top_segments(0) == 1
    assert rows.top_segments(rows.LEAF_ROWS * 10) == 10
    assert rows.top_segments(10**9) == rows.TOP_SEGMENTS_MAX


def test_row_differences_name_key_and_columns():
    s = rows.shape(PUNCH, PUNCH)
    src = {("1",): ["a", "b", "c"], ("2",): ["a", "b", "c"], ("3",): ["a", "b", None]}
    tgt = {("1",): ["a", "b", "c"], ("3",): ["a", "b", "d41d8cd98f00b204e9800998ecf8427e"], ("4",): ["x", "y", "z"]}
    found = rows.row_differences("attendance/presenze", s, src, tgt, (1, 10))
    assert [(d.key, d.problem, d.columns) for d in found] == [
        ({"punch_id": "2"}, "missing_on_target", ()),
        ({"punch_id": "3"}, "changed", ("reason_code",)),  # NULL -> '' is a change
        ({"punch_id": "4"}, "extra_on_target", ()),
    ]
    assert "punch_id in [1, 10]" in found[0].remedy


def test_multiset_differences_count_duplicates():
    found = rows.multiset_differences("db", "public.t", {"aa" * 16: 1, "bb" * 16: 1}, {"aa" * 16: 2})
    assert [(d.problem, d.key, d.detail) for d in found] == [
        ("duplicated_on_target", {"row_md5": "a" * 16}, "1 on source, 2 on target"),
        ("missing_on_target", {"row_md5": "b" * 16}, "1 on source, 0 on target"),
    ]


def test_schema_compare_names_missing_extra_and_changed_objects():
    src = {"index public.punch_employee_time_idx": "CREATE INDEX ...", "trigger public.punch.t": "CREATE TRIGGER ... O",
           "column public.punch.reason_code": "type text | default 'X'::text"}
    tgt = {"trigger public.punch.t": "CREATE TRIGGER ... D", "column public.punch.reason_code": "type text",
           "view public.v": "..."}
    found = {(d.object, d.problem, d.detail) for d in schema.compare("db", src, tgt)}
    assert found == {("public.punch_employee_time_idx", "missing_on_target", "index"),
                     ("public.punch.t", "definition_differs", "trigger"),
                     ("public.punch.reason_code", "definition_differs", "column: default differs"),
                     ("public.v", "extra_on_target", "view")}


@pytest.mark.parametrize("source, target, behind", [(40, 40, False), (40, 41, False), (40, 12, True)])
def test_sequences_must_be_at_or_beyond_the_source(source, target, behind):
    found = schema.compare_sequences("db", {"public.s": source}, {"public.s": target})
    assert bool(found) == behind
    if behind:
        assert found[0].problem == "behind_source" and "setval('public.s', 40, false)" in found[0].remedy


def test_next_value_reads_is_called_not_pg_sequences():
    q = text(schema.next_values_query([("public", "s", 1)]))
    assert q == ("SELECT 'public.s', CASE WHEN is_called THEN last_value + 1 ELSE last_value END"
                 ' FROM "public"."s"')
    assert schema.next_values_query([]) is None


def manifest(*files):
    return {"files": [{"path": p, "size": n, "sha256": h, "key": f"pre/files/{p}"} for p, n, h in files]}


def test_documents_missing_altered_extra_and_unstaged():
    m = manifest(("a.pdf", 3, "h1"), ("b.pdf", 4, "h2"), ("c.pdf", 5, "h3"))
    objects = {"pre/files/a.pdf": 3, "pre/files/c.pdf": 5, "pre/files/x.pdf": 1, "pre/manifest.json": 9}
    hashes = {"pre/files/a.pdf": "h1", "pre/files/c.pdf": "other"}
    section, found = documents.compare("personnel", m, objects, hashes, {"a.pdf": 3, "b.pdf": 4, "c.pdf": 5, "d.pdf": 1})
    assert [(d.object, d.problem) for d in found] == [
        ("b.pdf", "missing_in_bucket"), ("c.pdf", "altered_in_bucket"), ("pre/files/x.pdf", "extra_in_bucket"),
        ("d.pdf", "not_staged")]
    assert section.status == "differs" and section.facts["files"] == 3


def test_documents_at_counts_depth_check_sizes_only():
    m = manifest(("a.pdf", 3, "h1"))
    _, found = documents.compare("p", m, {"pre/files/a.pdf": 4}, None, None)
    assert [d.problem for d in found] == ["size_differs"]
    _, found = documents.compare("p", m, {"pre/files/a.pdf": 3}, None, None)
    assert found == []


def test_business_totals_compare_as_multisets_and_name_the_group():
    src = [("2024-01", "TERM", 100), ("2024-02", "TERM", 90)]
    assert business.compare("db", "punches", src, list(reversed(src))) == []
    found = business.compare("db", "punches", src, [("2024-01", "TERM", 100), ("2024-02", "TERM", 89)])
    assert [(d.key, d.detail) for d in found] == [
        ({"group": "2024-02"}, "1 result row(s) only on source, 1 only on target")]


def test_evidence_block_query_orders_bytewise_and_ranges_on_the_key():
    q = text(evidence.block_query(PUNCH, PUNCH.columns, True))
    assert "ORDER BY \"punch_id\")" in q
    assert "ORDER BY x COLLATE \"C\")" in text(evidence.block_query(NO_KEY, NO_KEY.columns, False))
    assert 'WHERE "punch_id" >= %s AND "punch_id" < %s' in q
    assert "WHERE" not in text(evidence.block_query(NO_KEY, NO_KEY.columns, False))


def test_evidence_compare():
    d = {"rows": 3, "sha256": "a" * 64, "columns": []}
    assert evidence.compare("db", "public.punch", d, dict(d), "before the copy") == []
    assert evidence.compare("db", "public.punch", d, {**d, "sha256": "b" * 64}, "x")[0].problem == "digest_differs"
    assert evidence.qualified("punch") == "public.punch" and evidence.qualified("hr.punch") == "hr.punch"


def test_report_text_names_keys_columns_and_remedies():
    r = Report("wave-1", "run-1", "full", "2025-01-01T00:00:00Z", 1.5)
    diff = Difference("rows", "attendance/presenze", "public.punch", "changed", "re-copy it", {"punch_id": "7"},
                      ("reason_code",))
    r.tables.append(TableResult("attendance/presenze", "public.punch", "checksums", 10, 10, 0.2, (diff,), 3))
    r.sections.append(Section("evidence", "attendance/presenze", "public.punch", "ok", {"source_sha256": "f" * 64}))
    r.add([diff])
    data = json.loads(json.dumps(r.to_json()))
    assert data["status"] == "failed" and data["summary"] == {"tables": 1, "differences": 1, "by_area": {"rows": 1}}
    out = report.text(data)
    assert "FAILED, 1 difference(s) (1 rows)" in out
    assert "public.punch punch_id=7: changed columns reason_code" in out and "remedy: re-copy it" in out
    assert "ffffffffffffffff..." in out and "f" * 64 not in out


def test_source_digests_are_the_evidence_operations_results(tmp_path):
    from migrate.engine.journal import Journal
    from migrate.model import layout
    from migrate.verify import runner

    journal = Journal(layout.journal_path(tmp_path))

    def effect(step: str, op: str, args: dict, result: dict | None) -> None:
        record = journal.append("run-1", "wave-1", "effect", {"action": {"op": op, "args": args}}, step=step)
        if result is not None:
            journal.append("run-1", "wave-1", "effect_done", {"effect": record.seq, "result": result}, step=step)

    digest = {"rows": 3, "sha256": "a" * 64}
    effect(layout.evidence_id("attendance", "presenze"), layout.EVIDENCE_OP,
           {"system": "attendance", "database": "presenze"}, {"digests": {"public.punch": digest}})
    effect(layout.evidence_id("personnel", "personale"), layout.EVIDENCE_OP,
           {"system": "personnel", "database": "personale"}, None)  # killed before it finished
    effect(layout.stage_db_id("attendance", "presenze"), "db.stage_schema", {}, {"digests": {"public.x": digest}})
    journal.append("run-2", "wave-1", "effect", {"action": {"op": layout.EVIDENCE_OP, "args": {}}})
    assert runner.source_digests(journal, "run-1") == {"attendance/presenze public.punch": digest}
    assert runner.source_digests(journal, None) == {} and runner.source_digests(None, "run-1") == {}


# --- documents in the packed layout: by the manifest ------------------------------------------

def _doc(path, size=10, mtime=1, sha="a", mode=0o640):
    return {"path": path, "size": size, "mtime_ns": mtime, "sha256": sha, "mode": mode, "pack": "p1"}


PACKED = {"layout": "packed", "packs": [{"key": "p1", "size": 5120, "sha256": "P"}],
          "files": [_doc("a.pdf"), _doc("b.pdf"), _doc("c.pdf")]}


def test_packed_documents_against_the_source_name_each_path_and_problem():

    on_source = {"a.pdf": _doc("a.pdf"), "b.pdf": _doc("b.pdf", mtime=2), "new.pdf": _doc("new.pdf")}
    section, diffs = documents.compare_packed("personnel", PACKED, {"p1": 5120}, {"p1": "P"}, on_source)
    assert section.status == "differs"
    assert {(d.object, d.problem) for d in diffs} == {("new.pdf", "not_staged"),
                                                      ("c.pdf", "gone_from_source_since_staging"),
                                                      ("b.pdf", "changed_on_source_since_staging")}
    _, diffs = documents.compare_packed("personnel", PACKED, {}, None, None)
    assert [(d.object, d.problem, d.detail) for d in diffs] == [("p1", "missing_in_bucket", "pack of 3 document(s)")]


def test_packed_documents_on_the_target_host_name_missing_extra_altered_and_metadata():

    on_host = {"a.pdf": _doc("a.pdf", sha="x"), "b.pdf": _doc("b.pdf", mode=0o644), "z.pdf": _doc("z.pdf")}
    _, diffs = documents.compare_restored_packed("personnel", PACKED, on_host, "tgt-app:/docs", True)
    assert {(d.object, d.problem) for d in diffs} == {("a.pdf", "altered_on_target_host"),
                                                      ("b.pdf", "metadata_differs_on_target_host"),
                                                      ("c.pdf", "missing_on_target_host"),
                                                      ("z.pdf", "extra_on_target_host")}
