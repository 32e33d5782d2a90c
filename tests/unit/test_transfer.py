"""The transfer engine's planning and bookkeeping, on canned input: no lab needed."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from migrate.adapters import cloud
from migrate.config import Transfer
from migrate.engine.journal import Journal
from migrate.errors import StepFailed
from migrate.model import layout
from migrate.transfer import archive_restore, catalog, chunks, pool, postdata
from migrate.transfer.catalog import Table
from migrate.transfer.chunks import Chunk
from migrate.transfer.dbcopy import MIB, Settings
from migrate.transfer.log import STAGED, TransferLog


def table(size_mb: float, *, key=None, lo=None, hi=None, blocks=None, name="t") -> Table:
    size = int(size_mb * MIB)
    return Table("s", name, 0, ("id", "a", "b"), ("bigint", "text", "text"), (key,) if key else (), bytes=size,
                 blocks=blocks if blocks is not None else size // 8192, key_min=lo, key_max=hi)


@pytest.mark.parametrize("t, expected", [
    # small table: one chunk, no WHERE
    (table(0.5, key="id", lo=1, hi=100), [("all", None, None)]),
    # integer key: ranges, first and last open
    (table(3.5, key="id", lo=1, hi=400), [("key", None, 101), ("key", 101, 201), ("key", 201, 301), ("key", 301, None)]),
    # fewer keys than parts: never an empty range
    (table(10, key="id", lo=5, hi=6), [("key", None, 6), ("key", 6, None)]),
    # no usable key: block ranges
    (table(2.5, blocks=300), [("ctid", None, 100), ("ctid", 100, 200), ("ctid", 200, None)]),
    # a big empty keyed table (min/max NULL): one chunk
    (table(5, key="id"), [("all", None, None)]),
])
def test_split_covers_every_row_once(t, expected):
    got = chunks.split(t, 7, chunk_bytes=MIB)
    assert [(c.by, c.lo, c.hi) for c in got] == expected
    assert [c.id for c in got] == [f"0007.{i:04d}" for i in range(len(expected))]
    for before, after in zip(got, got[1:]):
        assert before.hi == after.lo, "ranges must touch: no gap, no overlap"


def test_plan_puts_the_largest_tables_first_and_keeps_ids_stable():
    tables = [table(0.1, name="small"), table(3, key="id", lo=1, hi=999, name="big"), table(1.5, name="mid", blocks=200)]
    planned = chunks.plan_chunks(tables, MIB)
    assert [c.table for c in planned] == ["big"] * 3 + ["mid"] * 2 + ["small"]
    assert planned[0].id == "0001.0000" and planned[-1].id == "0000.0000"


def test_chunk_sql_quotes_identifiers_and_skips_other_tables_rows():
    c = Chunk("0001.0002", 'HR "Data"', "Employees", ("id", "Full Name"), by="key", column="id", lo=10, hi=20)
    out = c.copy_out_sql().as_string(None)
    assert out == ('COPY (SELECT "id", "Full Name" FROM ONLY "HR ""Data"""."Employees"'
                   ' WHERE "id" >= 10 AND "id" < 20) TO STDOUT')
    assert c.copy_in_sql().as_string(None) == 'COPY "HR ""Data"""."Employees" ("id", "Full Name") FROM STDIN'
    blocks = Chunk("0", "s", "t", ("a",), by="ctid", lo=None, hi=128)
    assert "WHERE ctid < '(128,0)'::tid" in blocks.copy_out_sql().as_string(None)
    assert Chunk.from_json(c.to_json()) == c
    assert c.range_text() == "10 <= id < 20"


def test_settings_bound_memory_by_the_buffer():
    s = Settings.from_spec(Transfer(workers=4, buffer_mb=256, chunk_mb=32))
    assert s.part_bytes == 16 * MIB and s.spool_bytes == 16 * MIB
    assert 4 * (s.part_bytes + s.spool_bytes) <= 256 * MIB
    tiny = Settings.from_spec(Transfer(workers=8, buffer_mb=16))
    assert tiny.part_bytes == cloud.MIN_PART  # S3's floor wins over the buffer


POST_DATA = """--
-- PostgreSQL database dump
--

\\restrict abc

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

SET default_tablespace = '';

--
-- Name: t t_pkey; Type: CONSTRAINT; Schema: s; Owner: -
--

ALTER TABLE ONLY s.t
    ADD CONSTRAINT t_pkey PRIMARY KEY (id);


--
-- Name: t_x; Type: INDEX; Schema: s; Owner: -
--

CREATE INDEX t_x ON s.t USING btree (x);


--
-- Name: INDEX t_x; Type: COMMENT; Schema: s; Owner: -
--

COMMENT ON INDEX s.t_x IS 'lookup';


--
-- Name: t_x_attach; Type: INDEX ATTACH; Schema: s; Owner: -
--

ALTER INDEX s.p_x ATTACH PARTITION s.t_x;


--
-- Name: u u_t_fkey; Type: FK CONSTRAINT; Schema: s; Owner: -
--

ALTER TABLE ONLY s.u
    ADD CONSTRAINT u_t_fkey FOREIGN KEY (t_id) REFERENCES s.t(id);


--
-- PostgreSQL database dump complete
--

\\unrestrict abc
"""


def test_post_data_script_splits_into_items_run_in_dependency_waves():
    settings, items = postdata.split_script(POST_DATA)
    assert settings == ["SET statement_timeout = 0;", "SELECT pg_catalog.set_config('search_path', '', false);",
                        "SET default_tablespace = '';"]
    assert [(i.type, i.name) for i in items] == [("CONSTRAINT", "t t_pkey"), ("INDEX", "t_x"), ("COMMENT", "INDEX t_x"),
                                                 ("INDEX ATTACH", "t_x_attach"), ("FK CONSTRAINT", "u u_t_fkey")]
    assert items[0].sql == "ALTER TABLE ONLY s.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);"
    assert items[-1].sql.endswith("REFERENCES s.t(id);") and "\\unrestrict" not in items[-1].sql
    order = [(parallel, [i.type for i in group]) for parallel, group in postdata.waves(items)]
    assert order == [(True, ["CONSTRAINT", "INDEX"]), (False, ["INDEX ATTACH"]), (True, ["FK CONSTRAINT"]),
                     (False, ["COMMENT"])]


def test_database_properties_are_aimed_at_the_target_name():
    items = [postdata.Item(0, "DATABASE PROPERTIES", "-", "src", 'ALTER DATABASE "src db" SET "TimeZone" TO \'Europe/Rome\';'),
             postdata.Item(1, "COMMENT", "-", "DATABASE src", "COMMENT ON DATABASE src IS 'x';"),
             postdata.Item(2, "COMMENT", "s", "TABLE t", "COMMENT ON TABLE s.t IS 'y';")]
    assert postdata.database_properties(items, '"tgt"') == [
        'ALTER DATABASE "tgt" SET "TimeZone" TO \'Europe/Rome\';', "COMMENT ON DATABASE \"tgt\" IS 'x';"]


def test_transfer_log_reads_back_only_this_run_and_scope(tmp_path):
    journal = Journal(layout.journal_path(tmp_path))
    log = TransferLog(journal, "run-1", "w", layout.restore_db_id("sys", "a"))
    log.append(STAGED, "a", {"chunk": "0000.0000", "sha256": "x"})
    log.append(STAGED, "b", {"chunk": "0000.0000", "sha256": "y"})
    TransferLog(journal, "run-2", "w").append(STAGED, "a", {"chunk": "0001.0000", "sha256": "z"})
    assert log.staged("a") == {"0000.0000": {"scope": "a", "chunk": "0000.0000", "sha256": "x"}}
    assert journal.verify_chain() is None


class FailingS3:
    """Takes the first part, fails the second: the upload must be aborted, not left behind."""

    def __init__(self):
        self.calls = []

    def create_multipart_upload(self, **kw):
        self.calls.append("create")
        return {"UploadId": "u1"}

    def upload_part(self, **kw):
        self.calls.append(f"part{kw['PartNumber']}")
        if kw["PartNumber"] == 2:
            from botocore.exceptions import EndpointConnectionError
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return {"ETag": "e"}

    def abort_multipart_upload(self, **kw):
        self.calls.append(f"abort {kw['UploadId']}")


class Inv:
    class spec:
        class storage:
            bucket, encryption, kms_key_id = "b", "AES256", None


def test_a_failed_multipart_upload_is_aborted():
    s3 = FailingS3()
    with pytest.raises(StepFailed, match="upload of k failed"):
        with cloud.StreamUpload(Inv, s3, "k", part_size=cloud.MIN_PART) as up:
            up.write(b"x" * (cloud.MIN_PART * 2 + 1))
    assert s3.calls == ["create", "part1", "part2", "abort u1"]


def test_stream_upload_hashes_what_it_sends():
    class S3:
        def put_object(self, **kw):
            self.body = kw["Body"]
            return {"VersionId": "v1"}
    s3 = S3()
    with cloud.StreamUpload(Inv, s3, "k", part_size=cloud.MIN_PART) as up:
        up.write(b"abc")
        up.write(b"def")
        stored = up.close()
    assert stored == cloud.Stored("k", 6, hashlib.sha256(b"abcdef").hexdigest(), "v1") and s3.body == b"abcdef"


@pytest.mark.parametrize("sql, expected", [
    ('ALTER TABLE ONLY "HR Data"."Employees"\n    ADD CONSTRAINT "Employees_pkey" PRIMARY KEY (id);', ("HR Data", "Employees")),
    ('CREATE INDEX punch_emp ON public.punch USING btree (employee_id);', ("public", "punch")),
    ('CREATE UNIQUE INDEX x ON "a""b".t USING btree (k);', ('a"b', "t")),
    ('CREATE INDEX p_emp ON ONLY public.p USING btree (e);', None),  # a partitioned parent: at the end
])
def test_an_index_or_key_constraint_names_the_table_it_waits_for(sql, expected):
    kind = "CONSTRAINT" if sql.startswith("ALTER") else "INDEX"
    assert postdata.table_of(postdata.Item(0, kind, "s", "n", sql)) == expected
    assert postdata.table_of(postdata.Item(0, "FK CONSTRAINT", "s", "n", sql)) is None


def test_restore_temporary_names_are_hidden_fixed_length_and_this_steps_own():
    tag_for = archive_restore.tag_for
    tag = tag_for("run-1", "personnel/restore-archive")
    assert tag == tag_for("run-1", "personnel/restore-archive") != tag_for("run-2", "personnel/restore-archive")
    job = archive_restore.RestoreJob(inv=None, s3=None, log=None, scope="personnel", host="tgt-app", path="/docs",
                                     top="/srv/docs", prefix="p", progress_prefix="q", tag=tag, workers=1)
    long_name = "2023/" + "n" * 250 + ".pdf"
    temp = job.temporary(long_name)
    assert temp.startswith("/srv/docs/2023/" + archive_restore.temp_prefix(tag)) and len(temp.rsplit("/", 1)[1]) < 40
    assert job.temporary("2023/a.pdf") != temp and job.final(long_name) == "/srv/docs/" + long_name


@pytest.mark.parametrize("target_path, ok", [("/srv/docs", True), ("srv/docs", False), (None, True)])
def test_archive_target_path_must_be_absolute(target_path, ok):
    from pydantic import ValidationError

    from migrate.config import Archive

    if ok:
        assert Archive(host="h", path="/a", target_path=target_path).target_path == target_path
    else:
        with pytest.raises(ValidationError):
            Archive(host="h", path="/a", target_path=target_path)


# --- the catalog, as the copy reads it --------------------------------------------------------

CATALOG_ROWS = [
    # schema, name, estimated rows, columns, types, key, generated, bytes, blocks, extension
    ("public", "punch", 10, ["punch_id", "employee_id", "minutes", "hours"], ["bigint", "integer", "integer", "numeric"],
     ["punch_id"], ["hours"], 3 * MIB, 384, False),
    ("public", "balance", 10, ["employee_id", "day"], ["integer", "date"], ["employee_id", "day"], [], 3 * MIB, 384,
     False),
    ("public", "code", 10, ["code"], ["text"], ["code"], [], 3 * MIB, 384, False),
    ("ext", "spatial_ref_sys", 10, ["srid"], ["integer"], ["srid"], [], 3 * MIB, 384, True),
]


@pytest.mark.parametrize("name, range_key, columns", [
    ("public.punch", "punch_id", ("punch_id", "employee_id", "minutes")),  # generated columns are not copied
    ("public.balance", None, ("employee_id", "day")),                      # a composite key: cut by blocks
    ("public.code", None, ("code",)),                                      # not an integer: cut by blocks
])
def test_catalog_rows_say_how_a_table_is_cut_and_which_columns_are_copied(name, range_key, columns):
    table = {t.qualified: t for t in catalog.tables(CATALOG_ROWS)}[name]
    assert chunks.range_key(table) == range_key and chunks.copy_columns(table) == columns
    planned = chunks.split(table, 0, MIB)
    assert {c.by for c in planned} == ({"all"} if range_key else {"ctid"})  # key range not read: one chunk
    assert all(c.columns == columns for c in planned)


def test_catalog_marks_extension_tables_and_keeps_every_column_for_verification():
    tables = catalog.tables(CATALOG_ROWS)
    assert [t.qualified for t in tables if t.extension] == ["ext.spatial_ref_sys"]
    assert tables[0].columns == ("punch_id", "employee_id", "minutes", "hours") and tables[0].key == ("punch_id",)


# --- the worker pool ------------------------------------------------------------------------------

class Resource:
    made: list = []

    def __init__(self):
        self.thread, self.closed = threading.get_ident(), False
        Resource.made.append(self)

    def close(self):
        self.closed = True


def test_pool_gives_each_thread_one_resource_and_closes_them_all():
    Resource.made = []
    with pool.Pool(3, Resource) as workers:
        found = workers.map(lambda r, n: (r.thread == threading.get_ident(), n * n), range(50))
    assert sorted(n for _, n in found) == [n * n for n in range(50)] and all(same for same, _ in found)
    assert 1 <= len(Resource.made) <= 3 and len({r.thread for r in Resource.made}) == len(Resource.made)
    assert all(r.closed for r in Resource.made)


def test_pool_stops_at_the_first_failure_and_raises_it():
    started = []

    def task(_, n):
        started.append(n)
        if n == 3:
            raise ValueError("three")
        time.sleep(0.01)
        return n

    with pool.Pool(2) as workers:
        with pytest.raises(ValueError, match="three"):
            workers.map(task, range(1000))
    assert 3 in started and len(started) < 20, "the rest never started"


def test_pool_queue_is_bounded():
    gate = threading.Event()
    with pool.Pool(2) as workers:
        for _ in range(4):  # two running, two queued
            workers.submit(lambda _: gate.wait())
        time.sleep(0.05)
        assert workers.full()
        gate.set()


def test_worker_count_is_the_spec_or_one_per_core():
    assert pool.worker_count(3) == 3 and pool.worker_count(None) >= 1
