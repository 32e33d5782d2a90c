"""Copy one PostgreSQL database through S3: a pipeline, not phases in sequence.

    source --COPY TO--> zstd --> SHA-256 --> S3 (multipart, SSE)      [stage workers]
                                              |  chunk_staged (journal)
    target <--COPY FROM-- zstd <-- SHA-256 check <-- S3              [load workers]
                   one transaction per chunk, with its ledger row

Stage workers share one exported snapshot of the source, so all chunks are one consistent
picture. A chunk is handed to a load worker the moment its upload is recorded, so loading
overlaps staging. After the data: post-data items in parallel waves, materialized views
refreshed, sequences set to the source's values, then (with a role map) owners and grants.
(Planner statistics are left to autovacuum, as pg_restore and pgcopydb leave them; the
verification step reads with exact counts.)

Memory is bounded by `Settings`: a stage worker holds at most one part and one COPY block; a
load worker at most `spool_bytes` of a downloaded chunk in memory (the rest spools to a private
temporary file, because the SHA-256 must be checked before the first byte reaches the target).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg
import zstandard
from psycopg import sql

from migrate.adapters import cloud, db
from migrate.config import Inventory, Transfer
from migrate.errors import StepFailed
from migrate.model import layout
from migrate.transfer import catalog, ledger, postdata, roles
from migrate.transfer import chunks as chunking
from migrate.transfer.chunks import Chunk
from migrate.transfer.log import COMPLETE, LOADED, STAGED, TransferLog
from migrate.transfer.pool import Pool, worker_count
from migrate.transfer.roles import RoleMap

MIB = 1024 * 1024
DEADLOCK_RETRIES = 3
Progress = Callable[[str, dict], None]


@dataclass(frozen=True)
class Settings:
    workers: int
    chunk_bytes: int
    part_bytes: int
    spool_bytes: int
    level: int

    @classmethod
    def from_spec(cls, transfer: Transfer) -> Settings:
        workers = worker_count(transfer.workers)
        # Half the buffer for upload parts, half for download spools, one of each per worker.
        share = transfer.buffer_mb * MIB // (4 * workers)
        return cls(workers=workers, chunk_bytes=transfer.chunk_mb * MIB,
                   part_bytes=min(max(share, cloud.MIN_PART), 64 * MIB),
                   spool_bytes=max(share, MIB), level=transfer.compression_level)


@dataclass(frozen=True)
class Side:
    server: str
    dbname: str


@dataclass
class Job:
    """One database's copy: where from, where to, which chunks, where they are staged."""

    inv: Inventory
    s3: object
    log: TransferLog
    scope: str                 # the database's name in the spec: the records' scope
    source: Side
    target: Side
    prefix: str                # s3 prefix of this database's staged objects
    chunks: list[Chunk]
    settings: Settings
    progress: Progress = field(default=lambda kind, data: None)
    roles: RoleMap | None = None   # None: owners and grants are not copied (the connecting role owns all)
    data_dir: str = "data"         # under `prefix`: a warm sync gives each attempt (each snapshot) its own


    @property
    def bucket(self) -> str:
        return self.inv.spec.storage.bucket

    def data_key(self, chunk: Chunk) -> str:
        return f"{self.prefix}/{self.data_dir}/{chunk.id}.copy.zst"


# --- schema: pre-data before, post-data after -----------------------------------------------

def stage_schema(inv: Inventory, s3, source: Side, prefix: str) -> cloud.Stored:
    """The object definitions (pg_dump --schema-only), streamed to the bucket, with their
    SHA-256 beside them."""
    key = layout.schema_key(prefix)
    with db.schema_dump(inv, source.server, source.dbname) as dump:
        stored = cloud.put_stream(inv, s3, dump.stream, key, metadata={"source-db": source.dbname})
    if dump.error is not None:
        cloud.delete_prefix(s3, inv.spec.storage.bucket, key)
        raise StepFailed(f"pg_dump --schema-only of {source.dbname} failed: {dump.error}")
    cloud.put_bytes(inv, s3, key + ".sha256", stored.sha256.encode())
    return stored


def fetch_schema(inv: Inventory, s3, prefix: str, into: Path) -> Path:
    """The staged schema archive, checked against its recorded SHA-256, as a local file."""
    bucket, key = inv.spec.storage.bucket, layout.schema_key(prefix)
    expected = b"".join(cloud.iter_object(s3, bucket, key + ".sha256")).decode().strip()
    size = cloud.object_size(s3, bucket, key)
    with cloud.fetch_verified(s3, bucket, key, sha256=expected, size=size, spool_bytes=MIB) as f:
        path = into / "schema.dump"
        path.write_bytes(f.read())
    return path


@dataclass(frozen=True)
class Schema:
    """What the staged schema archive says about the time after the data."""

    settings: list[str]             # session settings for post-data items
    post_data: list[postdata.Item]
    matviews: list[tuple[str, str]]  # in dependency order
    privileges: roles.Privileges | None = None  # owners and grants for the target's roles


def load_schema(inv: Inventory, s3, prefix: str, *, rolemap: RoleMap | None = None,
                target_db: str | None = None) -> Schema:
    with tempfile.TemporaryDirectory(prefix="migrate-schema-") as tmp:
        archive = fetch_schema(inv, s3, prefix, Path(tmp))
        settings, items = postdata.split_script(db.section_script(archive, "post-data"))
        _, pre = postdata.split_script(db.section_script(archive, "pre-data"))
        if rolemap is None:
            return Schema(settings, items, postdata.matviews_in_order(pre))
        items, used, unmapped = roles.map_policies(items, rolemap)
        privileges = roles.privileges(postdata.split_script(db.section_script(archive, "pre-data", create=True,
                                                                              owners=True))[1],
                                      postdata.split_script(db.section_script(archive, "post-data", owners=True))[1],
                                      rolemap,
                                      sql.Identifier(target_db).as_string(None))
    unmapped |= privileges.unmapped
    if unmapped:  # before any row moves: the plan checked the catalog, the archive has the last word
        raise StepFailed(f"{target_db}: the source's owners and grants name roles the spec does not map"
                         f" ({', '.join(sorted(unmapped)[:5])}); roll back and plan the wave again")
    return Schema(settings, items, postdata.matviews_in_order(pre),
                  roles.Privileges(privileges.statements, privileges.roles | used, set()))


def create_target(inv: Inventory, s3, target: Side, prefix: str, *, rolemap: RoleMap | None = None) -> dict:
    """Create the target database with the pre-data objects and an empty ledger."""
    db.create_database(inv, target.server, target.dbname)
    with tempfile.TemporaryDirectory(prefix="migrate-schema-") as tmp:
        archive = fetch_schema(inv, s3, prefix, Path(tmp))
        db.restore_section(inv, target.server, target.dbname, archive, "pre-data")
        _, items = postdata.split_script(db.section_script(archive, "pre-data", create=True))
    with db.connect(inv, target.server, target.dbname, autocommit=True) as conn:
        properties = postdata.database_properties(items, sql.Identifier(target.dbname).as_string(conn))
        if rolemap is not None:
            # Per-role settings (ALTER ROLE r IN DATABASE ...) name roles too.
            properties, _, unmapped = roles.map_role_settings(properties, rolemap)
            if unmapped:
                raise StepFailed(f"{target.dbname}: per-role settings name roles the spec does not map"
                                 f" ({', '.join(sorted(unmapped))}); plan the wave again")
        for statement in properties:
            conn.execute(statement)
        ledger.create(conn)
    return {"created": target.dbname, "database_properties": len(properties)}


# --- the data pipeline ----------------------------------------------------------------------

class TargetSessions:
    """A load worker's sessions on the target, each opened on first use: one for COPY, one with
    the schema archive's settings for the indexes built as soon as their table is loaded."""

    def __init__(self, job: Job, settings: list[str]):
        self.job, self.settings = job, settings
        self._copy: psycopg.Connection | None = None
        self._post: psycopg.Connection | None = None

    def copy(self) -> psycopg.Connection:
        if self._copy is None:
            # Asynchronous commit is safe here: a crash loses whole transactions, each with its
            # ledger row; the final post-data commits are synchronous and flush all before them.
            self._copy = db.copy_session(self.job.inv, self.job.target.server, self.job.target.dbname,
                                         settings="-c synchronous_commit=off", autocommit=True)
        return self._copy

    def post(self) -> psycopg.Connection:
        if self._post is None:
            self._post = _post_session(self.job, self.settings)
        return self._post

    def close(self) -> None:
        for conn in (self._copy, self._post):
            if conn is not None:
                conn.close()


def stage_chunk(job: Job, chunk: Chunk, snapshot: str | None) -> dict:
    key = job.data_key(chunk)
    compressor = zstandard.ZstdCompressor(level=job.settings.level).compressobj()
    raw = 0
    with cloud.StreamUpload(job.inv, job.s3, key, part_size=job.settings.part_bytes,
                            metadata={"chunk": chunk.id}) as upload:
        def sink(block: bytes) -> None:
            nonlocal raw
            raw += len(block)
            upload.write(compressor.compress(block))
        rows = db.copy_out(job.inv, job.source.server, job.source.dbname, chunk.copy_out_sql().as_string(None),
                           snapshot=snapshot, sink=sink)
        upload.write(compressor.flush())
        stored = upload.close()
    return {"chunk": chunk.id, "key": key, "table": chunk.qualified, "range": chunk.range_text(), "rows": rows,
            "bytes": raw, "stored": stored.size, "sha256": stored.sha256, "version": stored.version}


def _decompressed(spool) -> object:
    reader = zstandard.ZstdDecompressor().stream_reader(spool)
    while block := reader.read(db.COPY_BLOCK):
        yield block


def load_chunk(job: Job, chunk: Chunk, staged: dict, conn: psycopg.Connection) -> dict:
    """Download, verify, then COPY in one transaction with the chunk's ledger row."""
    with cloud.fetch_verified(job.s3, job.bucket, staged["key"], sha256=staged["sha256"], size=staged["stored"],
                              spool_bytes=job.settings.spool_bytes) as spool:
        with conn.transaction():
            rows = db.copy_in(conn, chunk.copy_in_sql(), _decompressed(spool))
            if rows != staged["rows"]:
                raise StepFailed(f"chunk {chunk.id} of {chunk.qualified}: loaded {rows} rows, staged {staged['rows']}")
            ledger.mark(conn, chunk.id, rows=rows, sha256=staged["sha256"])
    return {"chunk": chunk.id, "table": chunk.qualified, "rows": rows, "sha256": staged["sha256"]}


def _check_tables(job: Job, conn: psycopg.Connection) -> None:
    """The plan's tables must be the snapshot's: a table added after planning would be missed."""
    now = {t.qualified: chunking.copy_columns(t) for t in catalog.read_tables(conn) if not t.extension}
    planned = {c.qualified: c.columns for c in job.chunks}
    if now != planned:
        changed = sorted(set(now) ^ set(planned) | {t for t in now if t in planned and now[t] != planned[t]})
        raise StepFailed(f"{job.scope}: the source's tables changed since the plan ({', '.join(changed[:5])});"
                         " roll back and plan the wave again")


def _remove_leftovers(job: Job, staged: dict[str, dict]) -> int:
    """Objects at chunk keys that the journal does not record come from a killed attempt (upload
    completed, record not written): delete them, so each staged object has one version. A
    killed attempt's multipart uploads are aborted too (the step's undo does the same)."""
    data = f"{job.prefix}/{job.data_dir}/"
    cloud.abort_uploads(job.s3, job.bucket, data)
    # A recorded key is never touched: if its object was replaced since, the SHA-256 check
    # refuses it at load time instead of this quietly repairing it.
    return cloud.delete_unrecorded(job.s3, job.bucket, data, {d["key"] for d in staged.values()})


class Pipeline:
    """Stage and load workers with the coordinator (the calling thread) between them: it
    records each staged chunk before handing it to a loader, and stops at the first failure.
    Work waits in the coordinator's own queues until a pool has room: the coordinator never
    blocks on a full pool, so it keeps recording what finishes."""

    def __init__(self, job: Job, snapshot: str | None, staged: dict[str, dict], loaded: set[str], load: bool,
                 schema: Schema | None = None, done: set[str] = frozenset()):
        self.job, self.snapshot, self.staged, self.loaded, self.load = job, snapshot, staged, loaded, load
        self.settings = schema.settings if schema else []
        self.running: dict[Future, tuple[str, object]] = {}
        self.errors: list[str] = []
        self.to_stage = deque(c for c in job.chunks if c.id not in staged)
        # Loads and index builds, in the order they became ready: ("load", chunk) or ("index", item).
        self.to_load = deque(("load", c) for c in job.chunks if load and c.id in staged and c.id not in loaded)
        # A table's indexes and key constraints are built as soon as its last chunk is loaded,
        # overlapping the other tables' loads (as pgcopydb does), instead of all at the end.
        self.left = Counter((c.schema, c.table) for c in job.chunks if c.id not in loaded)
        self.early: dict[tuple[str, str], list[postdata.Item]] = {}
        for item in (schema.post_data if schema and load else []):
            table = postdata.table_of(item)
            if table is not None and item.id not in done:
                self.early.setdefault(table, []).append(item)

    def run(self) -> dict:
        workers = self.job.settings.workers
        with Pool(workers, name="stage") as stagers, \
                Pool(workers, lambda: TargetSessions(self.job, self.settings), name="load") as loaders:
            self.stagers, self.loaders = stagers, loaders
            tables = {(c.schema, c.table) for c in self.job.chunks}
            for table in [t for t in self.early if t in tables and self.left[t] == 0]:
                self._build(table)  # loaded by an earlier attempt
            self._feed()
            while self.running:
                finished, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                for future in finished:
                    what, task = self.running.pop(future)
                    self._settle(what, task, future)
                self._feed()
        if self.errors:
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            raise StepFailed(f"{self.errors[0]}{more}; {len(self.staged)} of {len(self.job.chunks)} chunks staged,"
                             f" {len(self.loaded)} loaded: a rerun continues from there")
        return {"chunks": len(self.job.chunks), "staged": len(self.staged), "loaded": len(self.loaded)}

    def _build(self, table: tuple[str, str]) -> None:
        self.to_load.extend(("index", item) for item in self.early.pop(table, []))

    def _feed(self) -> None:
        while self.to_stage and not self.errors and not self.stagers.full():
            chunk = self.to_stage.popleft()
            future = self.stagers.submit(lambda _, c: stage_chunk(self.job, c, self.snapshot), chunk)
            self.running[future] = ("stage", chunk)
        while self.to_load and not self.errors and not self.loaders.full():
            what, task = self.to_load.popleft()
            if what == "load":
                future = self.loaders.submit(self._load, task, self.staged[task.id])
            else:
                future = self.loaders.submit(lambda sessions, item: _apply_or_fail(sessions.post(), item), task)
            self.running[future] = (what, task)

    def _load(self, sessions: TargetSessions, chunk: Chunk, staged: dict) -> dict:
        return load_chunk(self.job, chunk, staged, sessions.copy())

    def _settle(self, what: str, chunk, future: Future) -> None:
        """Record what a worker finished and queue what follows; `chunk` is a post-data item
        for what == "index" (whose failures are StepFailed, naming the item)."""
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.errors.append(str(error) if isinstance(error, StepFailed)
                               else f"chunk {chunk.id} of {chunk.qualified}: {what} failed ({_describe(error)})")
            for other in self.running:
                other.cancel()
            return
        result = future.result()
        if what == "stage":
            self.job.log.append(STAGED, self.job.scope, result)
            self.staged[chunk.id] = result
            self.job.progress(STAGED, result)
            if self.load and not self.errors:
                self.to_load.append(("load", chunk))
        elif what == "load":
            self.job.log.append(LOADED, self.job.scope, result)
            self.loaded.add(chunk.id)
            self.job.progress(LOADED, result)
            table = (chunk.schema, chunk.table)
            self.left[table] -= 1
            if self.left[table] == 0 and not self.errors:
                self._build(table)


def _describe(error: BaseException) -> str:
    """An error without its message: a COPY error's message can quote the row it choked on."""
    sqlstate = getattr(error, "sqlstate", None)
    return f"{type(error).__name__}, SQLSTATE {sqlstate}" if sqlstate else type(error).__name__


def copy_data(job: Job, *, load: bool = True, snapshot: str | None = None) -> dict:
    """Stage what is not staged and load what is not loaded; safe to call again after any kill.
    `snapshot`: an exported snapshot to read (a replication slot's); else one is exported here."""
    if load and job.log.complete(job.scope):
        with db.connect(job.inv, job.target.server, job.target.dbname, autocommit=True) as conn:
            ledger.drop(conn)
        return {"chunks": len(job.chunks), "resumed": "already complete"}
    staged = job.log.staged(job.scope)
    done = _ledger(job) if load else {}
    loaded = {k for k in done if not k.startswith(("post:", "refresh:", GRANTS))}
    schema = load_schema(job.inv, job.s3, job.prefix, rolemap=job.roles, target_db=job.target.dbname) if load else None
    removed = _remove_leftovers(job, staged)
    with ExitStack() as stack:
        if any(c.id not in staged for c in job.chunks):
            if snapshot is None:
                exporter = stack.enter_context(db.copy_session(job.inv, job.source.server, job.source.dbname))
                snapshot = db.export_snapshot(exporter)
            with db.copy_session(job.inv, job.source.server, job.source.dbname) as reader:
                db.import_snapshot(reader, snapshot)
                _check_tables(job, reader)
        result = Pipeline(job, snapshot, staged, loaded, load, schema, set(done)).run()
    _write_manifest(job, staged)
    if not load:
        return {**result, "leftovers_removed": removed}
    return {**result, **finish(job, schema), "leftovers_removed": removed,
            "rows": sum(d["rows"] for d in staged.values()), "bytes": sum(d["bytes"] for d in staged.values()),
            "stored_bytes": sum(d["stored"] for d in staged.values())}


def _ledger(job: Job) -> dict:
    with db.connect(job.inv, job.target.server, job.target.dbname) as conn:
        if not ledger.exists(conn):
            raise StepFailed(f"target {job.target.server}/{job.target.dbname} has no load ledger: it was not"
                             " created by this run's create step; roll back and run again")
        return ledger.done(conn)


def _write_manifest(job: Job, staged: dict[str, dict]) -> None:
    """The staged objects of this database: object, table, range, rows, bytes, SHA-256.
    Written once (a rerun finds it and leaves it: one version per staged object)."""
    key = layout.manifest_key(job.prefix)
    entries = [{k: staged[c.id][k] for k in ("chunk", "key", "table", "range", "rows", "bytes", "stored", "sha256")}
               for c in job.chunks if c.id in staged]
    if len(entries) < len(job.chunks) or cloud.head_metadata(job.s3, job.bucket, key) is not None:
        return
    body = json.dumps({"database": job.source.dbname, "chunks": entries}, indent=1, sort_keys=True).encode()
    cloud.put_bytes(job.inv, job.s3, key, body)


# --- after the data: post-data, materialized views, sequences, statistics -------------------

def finish(job: Job, schema: Schema) -> dict:
    done = set(_ledger(job))
    early = sum(1 for it in schema.post_data if it.id in done)
    applied = apply_post_data(job, schema.settings, schema.post_data, done)
    with db.connect(job.inv, job.source.server, job.source.dbname) as conn:
        populated = catalog.populated_matviews(conn)
        sequences = catalog.read_sequences(conn)
    refreshed = refresh_matviews(job, [m for m in schema.matviews if m in populated], done)
    set_sequences(job, sequences)
    granted = apply_privileges(job, schema.privileges, done)
    # The completion record comes before dropping the ledger: a kill in between leaves a
    # record that says "complete", and the rerun only drops the ledger.
    job.log.append(COMPLETE, job.scope, {"post_data_items": len(schema.post_data), "sequences": len(sequences)})
    with db.connect(job.inv, job.target.server, job.target.dbname, autocommit=True) as conn:
        ledger.drop(conn)
    return {"post_data_items": applied + early, "post_data_early": early, "matviews_refreshed": refreshed,
            "sequences": len(sequences), "privilege_statements": granted}


def _post_session(job: Job, settings: list[str]) -> psycopg.Connection:
    conn = db.connect(job.inv, job.target.server, job.target.dbname, autocommit=True)
    for statement in settings:
        conn.execute(statement)
    return conn


def _apply_item(conn: psycopg.Connection, item_id: str, statement: str) -> None:
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            with conn.transaction():
                conn.execute(statement)
                ledger.mark(conn, item_id)
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == DEADLOCK_RETRIES:
                raise


def apply_post_data(job: Job, settings: list[str], items: list[postdata.Item], done: set[str]) -> int:
    applied = 0
    for parallel, group in postdata.waves(items):
        todo = [it for it in group if it.id not in done]
        with Pool(job.settings.workers if parallel else 1, lambda: _post_session(job, settings), name="post") as pool:
            pool.map(_apply_or_fail, todo)
        applied += len(todo)
    return applied


def _apply_or_fail(conn: psycopg.Connection, item: postdata.Item) -> None:
    try:
        _apply_item(conn, item.id, item.sql)
    except psycopg.Error as exc:
        raise StepFailed(f"post-data {item.type} {item.schema}.{item.name}: {str(exc).strip().splitlines()[0]}") from None


def refresh_matviews(job: Job, matviews: list[tuple[str, str]], done: set[str]) -> int:
    count = 0
    with db.connect(job.inv, job.target.server, job.target.dbname, autocommit=True) as conn:
        for schema, name in matviews:
            item = f"refresh:{schema}.{name}"
            if item in done:
                continue
            with conn.transaction():
                conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
                ledger.mark(conn, item)
            count += 1
    return count


GRANTS = "grants:"


def apply_privileges(job: Job, privileges: roles.Privileges | None, done: set[str]) -> int:
    """Owners, grants and default privileges for the target's roles, last (objects were created
    and loaded by the connecting role, which needs no grant for that), in one transaction with
    its ledger row."""
    item = f"{GRANTS}all"
    if privileges is None or item in done:
        return 0
    with db.connect(job.inv, job.target.server, job.target.dbname, autocommit=True) as conn:
        missing = sorted(privileges.roles - roles.existing(conn))
        if missing:
            raise StepFailed(f"{job.scope}: roles {', '.join(missing[:5])} are missing on {job.target.server}; they"
                             " were not in the plan (did the source change?): roll back and plan the wave again")
        with conn.transaction():
            for statement in privileges.statements:
                conn.execute(statement)
            ledger.mark(conn, item)
    return len(privileges.statements)


def set_sequences(job: Job, sequences: list[tuple[str, str, int, bool]]) -> None:
    with db.connect(job.inv, job.target.server, job.target.dbname, autocommit=True) as conn:
        for schema, name, last, called in sequences:
            qualified = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name)).as_string(conn)
            conn.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)", (qualified, last, called))
