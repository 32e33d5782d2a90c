"""Databases: dump the source into the bucket, restore the target from the bucket.

The skeleton path (pg_dump custom format, streamed; pg_restore in one transaction). The staged
object's SHA-256 is checked before a byte of it reaches the target.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import cloud, db
from migrate.engine.ops import Context, op
from migrate.errors import StepFailed
from migrate.model.plan import Action, StepPlan


def dump_key(ctx: Context, dbname: str) -> str:
    return f"{run_prefix(ctx)}/db/{dbname}.dump"


def run_prefix(ctx: Context) -> str:
    return f"{ctx.inv.spec.storage.prefix}/{ctx.wave}/{ctx.run_id}"


@op("db.dump_to_bucket")
def dump_to_bucket(ctx: Context, *, server: str, dbname: str, key: str) -> dict:
    proc = db.dump_process(ctx.inv, server, dbname)
    try:
        stored = cloud.put_stream(ctx.inv, ctx.s3, proc.stdout, key, metadata={"source-db": dbname})
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.wait()
    if proc.returncode != 0:
        cloud.delete_prefix(ctx.s3, ctx.inv.spec.storage.bucket, key)
        raise StepFailed(f"pg_dump of {dbname} failed: {err.splitlines()[-1] if err else proc.returncode}")
    sha_key = key + ".sha256"
    ctx.s3.put_object(Bucket=ctx.inv.spec.storage.bucket, Key=sha_key, Body=stored.sha256.encode(),
                      **cloud.encryption_args(ctx.inv))
    return {"key": key, "bytes": stored.size, "sha256": stored.sha256}


@op("s3.delete_prefix")
def delete_prefix(ctx: Context, *, prefix: str) -> dict:
    return {"deleted": cloud.delete_prefix(ctx.s3, ctx.inv.spec.storage.bucket, prefix)}


@op("db.restore_from_bucket")
def restore_from_bucket(ctx: Context, *, server: str, dbname: str, key: str) -> dict:
    bucket = ctx.inv.spec.storage.bucket
    expected = b"".join(cloud.iter_object(ctx.s3, bucket, key + ".sha256")).decode().strip()
    actual = cloud.object_sha256(ctx.s3, bucket, key)
    if actual != expected:
        raise StepFailed(f"staged object {key}: SHA-256 {actual[:12]}... differs from the recorded"
                         f" {expected[:12]}...; refusing to load it")
    db.create_database(ctx.inv, server, dbname)
    proc = db.restore_process(ctx.inv, server, dbname)
    try:
        for chunk in cloud.iter_object(ctx.s3, bucket, key):
            proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise StepFailed(f"pg_restore into {server}/{dbname} failed: {err.splitlines()[-1] if err else '?'}")
    return {"sha256": actual}


@op("db.drop_database")
def drop_database(ctx: Context, *, server: str, dbname: str) -> dict:
    return {"dropped": db.drop_database(ctx.inv, server, dbname)}


@dataclass(frozen=True)
class StageDatabase:
    system: str
    name: str
    server: str
    dbname: str

    @property
    def id(self) -> str:
        return f"{self.system}/stage-db:{self.name}"

    def plan(self, ctx: Context) -> StepPlan:
        key = dump_key(ctx, self.name)
        size = db.database_size(ctx.inv, self.server, self.dbname)
        undo = Action("s3.delete_prefix", {"prefix": key}, f"delete s3://{ctx.inv.spec.storage.bucket}/{key}*")
        action = Action("db.dump_to_bucket", {"server": self.server, "dbname": self.dbname, "key": key},
                        f"pg_dump {self.server}/{self.dbname} -> s3://{ctx.inv.spec.storage.bucket}/{key}",
                        undo=undo)
        return StepPlan(self.id, self.system, f"stage database {self.name} in the bucket", (action,),
                        volume={"database_bytes": size})


@dataclass(frozen=True)
class RestoreDatabase:
    system: str
    name: str
    server: str
    dbname: str

    @property
    def id(self) -> str:
        return f"{self.system}/restore-db:{self.name}"

    def plan(self, ctx: Context) -> StepPlan:
        if db.database_exists(ctx.inv, self.server, self.dbname):
            raise StepFailed(f"target database {self.server}/{self.dbname} already exists; this wave"
                             " will not overwrite a database it did not create")
        key = dump_key(ctx, self.name)
        undo = Action("db.drop_database", {"server": self.server, "dbname": self.dbname},
                      f"drop database {self.server}/{self.dbname}")
        action = Action("db.restore_from_bucket", {"server": self.server, "dbname": self.dbname, "key": key},
                        f"create {self.server}/{self.dbname} and restore it from s3://.../{key}", undo=undo)
        return StepPlan(self.id, self.system, f"restore database {self.name} on the target", (action,))
