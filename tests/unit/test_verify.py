"""Verification without a lab: query shapes, difference naming, schema/sequence/document/
business comparisons and the report text, table-driven on canned facts."""

import json

import pytest
from psycopg import sql

from migrate.model import document_names as names
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
    assert [(d.object, d.problem, d.key) for d in found] == [
        (names.MANIFEST, "missing_in_bucket", {"document": 1, "sha256": "h2"}),
        (names.MANIFEST, "altered_in_bucket", {"document": 2, "sha256": "h3"}),
        (names.BUCKET, "extra_in_bucket", {"file": 2, "of": 4, "size": 1}),   # 3rd key of the bucket's listing
        (names.SOURCE, "not_staged", {"file": 3, "of": 4, "size": 1})]        # 4th file of the source's
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


def test_packed_documents_against_the_source_name_each_document_and_problem():

    on_source = {"a.pdf": _doc("a.pdf"), "b.pdf": _doc("b.pdf", mtime=2), "new.pdf": _doc("new.pdf")}
    section, diffs = documents.compare_packed("personnel", PACKED, {"p1": 5120}, {"p1": "P"}, on_source)
    assert section.status == "differs"
    assert [(d.object, d.problem, d.key) for d in diffs] == [
        (names.SOURCE, "not_staged", {"file": 2, "of": 3, "size": 10, "sha256": "a"}),
        (names.MANIFEST, "changed_on_source_since_staging", {"document": 1, "sha256": "a"}),
        (names.MANIFEST, "gone_from_source_since_staging", {"document": 2, "sha256": "a"})]
    _, diffs = documents.compare_packed("personnel", PACKED, {}, None, None)
    assert [(d.object, d.problem, d.detail) for d in diffs] == [("p1", "missing_in_bucket", "pack of 3 document(s)")]


def test_packed_documents_on_the_target_host_name_missing_extra_altered_and_metadata():

    on_host = {"a.pdf": _doc("a.pdf", sha="x"), "b.pdf": _doc("b.pdf", mode=0o644), "z.pdf": _doc("z.pdf")}
    _, diffs = documents.compare_restored_packed("personnel", PACKED, on_host, "tgt-app:/docs", True)
    assert [(d.object, d.problem, d.key) for d in diffs] == [
        (names.MANIFEST, "altered_on_target_host", {"document": 0, "sha256": "a"}),
        (names.MANIFEST, "metadata_differs_on_target_host", {"document": 1, "sha256": "a"}),
        (names.MANIFEST, "missing_on_target_host", {"document": 2, "sha256": "a"}),
        (names.TARGET, "extra_on_target_host", {"file": 2, "of": 3, "size": 10, "sha256": "a"})]


# --- documents are named by manifest index and hash, never by path ---------------------------

EMPLOYEE = "E004217"  # a folder per employee: the path names a person and the kind of document
SENSITIVE = [f"{EMPLOYEE}/idoneita-medica-2023.pdf", f"{EMPLOYEE}/legge-104-domanda.pdf", f"{EMPLOYEE}/contratto.pdf"]


def _sensitive_report() -> tuple[Report, dict, dict]:
    manifest = {"layout": "packed", "packs": [{"key": "run/docs/personnel/packs/base-001-00001.tar", "size": 5120,
                                               "sha256": "P"}],
                "files": [_doc(p, sha=f"{i}" * 64) for i, p in enumerate(sorted(SENSITIVE))]}
    on_source = {p: _doc(p, sha=f"{i}" * 64) for i, p in enumerate(sorted(SENSITIVE))}
    on_source[f"{EMPLOYEE}/disciplinare-2024.pdf"] = _doc(f"{EMPLOYEE}/disciplinare-2024.pdf", sha="9" * 64)
    on_host = {p: dict(e) for p, e in on_source.items()}
    _, medical, law_104 = sorted(SENSITIVE)
    del on_host[medical]                                     # missing
    on_host[law_104]["sha256"] = "f" * 64                    # altered
    r = Report("wave-1", "run-1", "full", "2025-01-01T00:00:00Z")
    for section, diffs in (documents.compare_packed("personnel", manifest, {manifest["packs"][0]["key"]: 5120},
                                                    {manifest["packs"][0]["key"]: "P"}, on_source),
                           documents.compare_restored_packed("personnel", manifest, on_host, "tgt-app:/docs", True)):
        section.facts.update({"manifest": "run/docs/personnel/manifest.json", "manifest_sha256": "m" * 64})
        r.sections.append(section)
        r.add(diffs)
    return r, manifest, on_host


def test_a_packed_archive_with_missing_altered_and_extra_documents_names_no_path():
    r, _, _ = _sensitive_report()
    assert sorted(d.problem for d in r.differences) == ["altered_on_target_host", "extra_on_target_host",
                                                        "missing_on_target_host", "not_staged"]
    data = json.loads(json.dumps(r.to_json()))
    for written in (json.dumps(data), report.text(data)):
        assert EMPLOYEE not in written and "idoneita" not in written and "disciplinare" not in written
    missing = next(d for d in data["differences"] if d["problem"] == "missing_on_target_host")
    assert (missing["object"], missing["key"]) == (names.MANIFEST, {"document": 1, "sha256": "1" * 16})
    assert "personnel manifest document=1 sha256=1111111111111111: missing_on_target_host" in report.text(data)


def test_show_paths_resolves_documents_from_the_manifest_and_files_from_the_listing_again():
    from migrate.verify import paths

    r, manifest, on_host = _sensitive_report()
    listings = {names.SOURCE: {p: 10 for p in [*SENSITIVE, f"{EMPLOYEE}/disciplinare-2024.pdf"]},
                names.TARGET: {p: e["size"] for p, e in on_host.items()}}

    class Canned(paths.Lookup):
        def __init__(self, data, listing):
            super().__init__(None, data)
            self.manifest = lambda system: manifest["files"]
            self.listing = lambda system, where: listing[where]

    data = json.loads(json.dumps(r.to_json()))
    lookup = Canned(data, listings)
    shown = {d["problem"]: lookup.path(d) for d in data["differences"]}
    assert shown == {"missing_on_target_host": sorted(SENSITIVE)[1], "altered_on_target_host": sorted(SENSITIVE)[2],
                     "extra_on_target_host": f"{EMPLOYEE}/disciplinare-2024.pdf",
                     "not_staged": f"{EMPLOYEE}/disciplinare-2024.pdf"}
    listings[names.TARGET][f"{EMPLOYEE}/aaa-new.pdf"] = 1  # the listing moved on: no guessing
    assert Canned(data, listings).path(next(d for d in data["differences"] if d["problem"] == "extra_on_target_host")
                                       ) == paths.MOVED
    other = dict(manifest, files=[dict(f, sha256="e" * 64) for f in manifest["files"]])
    lookup.manifest = lambda system: other["files"]  # a manifest that is not the one verified
    assert lookup.path(next(d for d in data["differences"] if d["problem"] == "missing_on_target_host")) == paths.CHANGED


def test_messages_name_a_document_by_index_and_hash_and_a_new_file_by_its_place():
    files = [{"path": p, "sha256": f"{i}" * 64} for i, p in enumerate(SENSITIVE)]
    assert names.in_manifest(files, SENSITIVE[1]) == "document #1 (sha256 1111111111111111…)"
    listing = names.Listing(names.SOURCE, {p: 2345 for p in SENSITIVE})
    assert listing.name(SENSITIVE[0]) == "file #1 of the source listing (2,345 bytes)"
    assert names.without(f"upload of pre/files/{SENSITIVE[0]} failed (SlowDown)", f"pre/files/{SENSITIVE[0]}",
                         "its object") == "upload of its object failed (SlowDown)"


def test_a_file_changed_while_staged_is_named_by_its_place_in_the_listing():
    from types import SimpleNamespace

    from migrate.errors import StepFailed
    from migrate.transfer import packed

    listing = [_doc(p, mtime=2) for p in SENSITIVE]
    known = {p: _doc(p) for p in SENSITIVE}
    with pytest.raises(StepFailed) as caught:
        packed._entries(SimpleNamespace(live=False), listing, known)
    assert str(caught.value).startswith("file #0 of the source listing (10 bytes): changed while the archive was staged")
    assert EMPLOYEE not in str(caught.value)
