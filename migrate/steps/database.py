"""Databases through the bucket: the staging area, the schema, the target, the data.

Four kinds of step, so that each undo is exactly right both for a rollback and for the
executor's resume rule (an interrupted step is undone, then run again):

- `staging:<bucket>` opens the run's prefix (a lifecycle rule expires it); its undo deletes
  everything under the prefix and aborts incomplete multipart uploads. It completes at once,
  so a resume never undoes it; a rollback does, last.
- `<system>/stage-db:<name>` stages the object definitions (pg_dump --schema-only).
- `<system>/create-db:<name>` creates the target roles the spec's role map needs and that the
  target lacks (NOLOGIN, no password; its undo drops exactly the roles this step created, which
  carry a comment naming the run and step), then the target database with the pre-data objects
  and the load ledger; its undo drops the database.
- `<system>/restore-db:<name>` streams the data through the bucket into the target (see
  `migrate.transfer.dbcopy`), then post-data, then owners and grants mapped to the target's
  roles. Its undo only aborts incomplete uploads: after a kill, the staged chunks and the
  committed loads stay, and the rerun does only what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate import config
from migrate.adapters import cloud, db
from migrate.engine.journal import Journal
from migrate.engine.ops import Context, op
from migrate.errors import ConfigError, StepFailed
from migrate.model.plan import Action, StepPlan
from migrate.transfer import chunks as chunking
from migrate.transfer import dbcopy
from migrate.transfer import roles as pgroles
from migrate.transfer.chunks import Chunk
from migrate.transfer.log import TransferLog
from migrate.transfer.roles import RoleMap


def run_prefix(ctx: Context) -> str:
    return f"{ctx.inv.spec.storage.prefix}/{ctx.wave}/{ctx.run_id}"


def db_prefix(ctx: Context, name: str) -> str:
    return f"{run_prefix(ctx)}/db/{name}"


def expiry_rule_id(run_id: str) -> str:
    return f"migrate-staging-{run_id}"[:255]


def role_map(ctx: Context, system: str, name: str) -> RoleMap | None:
    """The spec's role map of one database; None when owners and grants are not copied."""
    d = ctx.inv.spec.systems[system].databases[name]
    return None if d.roles is None else RoleMap(dict(d.roles), d.unmapped_roles)


def transfer_log(ctx: Context, step: str) -> TransferLog:
    """The wave's journal, opened by the operation itself for chunk-level records."""
    return TransferLog(Journal(ctx.inv.state_dir / "journal.sqlite"), ctx.run_id, ctx.wave, step)


# --- operations -----------------------------------------------------------------------------

@op("s3.open_staging")
def open_staging(ctx: Context, *, prefix: str, days: int) -> dict:
    state = cloud.set_expiry(ctx.s3, ctx.inv.spec.storage.bucket, prefix + "/", rule_id=expiry_rule_id(ctx.run_id),
                             days=days)
    return {"expiry_days": days, "lifecycle": state}


@op("s3.close_staging")
def close_staging(ctx: Context, *, prefix: str, rule_id: str) -> dict:
    bucket = ctx.inv.spec.storage.bucket
    deleted = cloud.delete_prefix(ctx.s3, bucket, prefix + "/")
    return {"deleted": deleted, "lifecycle": cloud.remove_expiry(ctx.s3, bucket, rule_id=rule_id)}


@op("s3.delete_prefix")
def delete_prefix(ctx: Context, *, prefix: str) -> dict:
    return {"deleted": cloud.delete_prefix(ctx.s3, ctx.inv.spec.storage.bucket, prefix)}


@op("s3.abort_uploads")
def abort_uploads(ctx: Context, *, prefix: str) -> dict:
    return {"aborted": cloud.abort_uploads(ctx.s3, ctx.inv.spec.storage.bucket, prefix)}


@op("db.stage_schema")
def stage_schema(ctx: Context, *, server: str, dbname: str, prefix: str) -> dict:
    stored = dbcopy.stage_schema(ctx.inv, ctx.s3, dbcopy.Side(server, dbname), prefix)
    return {"key": stored.key, "bytes": stored.size, "sha256": stored.sha256}


@op("db.create_target")
def create_target(ctx: Context, *, server: str, dbname: str, prefix: str, roles: dict | None = None) -> dict:
    return dbcopy.create_target(ctx.inv, ctx.s3, dbcopy.Side(server, dbname), prefix, rolemap=RoleMap.from_json(roles))


@op("db.create_roles")
def create_roles(ctx: Context, *, server: str, roles: list[str], marker: str) -> dict:
    with db.connect(ctx.inv, server, "postgres", autocommit=True) as conn:
        created = [r for r in roles if pgroles.create(conn, r, marker)]
    return {"created": created, "present_already": len(roles) - len(created)}


@op("db.drop_roles")
def drop_roles(ctx: Context, *, server: str, roles: list[str], marker: str) -> dict:
    with db.connect(ctx.inv, server, "postgres", autocommit=True) as conn:
        dropped = [r for r in reversed(roles) if pgroles.drop(conn, r, marker, server)]
    return {"dropped": dropped}


@op("db.drop_database")
def drop_database(ctx: Context, *, server: str, dbname: str) -> dict:
    return {"dropped": db.drop_database(ctx.inv, server, dbname)}


@op("db.copy_through_bucket")
def copy_through_bucket(ctx: Context, *, name: str, step: str, source: dict, target: dict, prefix: str,
                        chunks: list[dict], roles: dict | None = None) -> dict:
    settings = dbcopy.Settings.from_spec(ctx.inv.spec.transfer)
    log = transfer_log(ctx, step)
    try:
        job = dbcopy.Job(inv=ctx.inv, s3=cloud.client(ctx.inv, pool=4 * settings.workers + 4), log=log, scope=name,
                         source=dbcopy.Side(**source), target=dbcopy.Side(**target), prefix=prefix,
                         chunks=[Chunk.from_json(c) for c in chunks], settings=settings,
                         progress=_progress(ctx, name, len(chunks)), roles=RoleMap.from_json(roles))
        return dbcopy.copy_data(job)
    finally:
        log.journal.close()


def _progress(ctx: Context, database: str, total: int):
    """Chunk progress as events on the run's bus (a console bar, JSON lines): counts only."""
    done = {"chunk_staged": 0, "chunk_loaded": 0}

    def report(kind: str, result: dict) -> None:
        done[kind] = done.get(kind, 0) + 1
        ctx.bus.emit("chunk", database=database, what=kind, table=result.get("table"), rows=result.get("rows", 0),
                     bytes=result.get("bytes", 0), done=done[kind], total=total)
    return report


# --- steps ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenStaging:
    """The run's prefix in the bucket, with its expiry; its undo removes the staged copies."""

    bucket: str

    @property
    def id(self) -> str:
        return f"staging:{self.bucket}"

    def plan(self, ctx: Context) -> StepPlan:
        prefix, days = run_prefix(ctx), ctx.inv.spec.transfer.staging_expiry_days
        rule = expiry_rule_id(ctx.run_id)
        undo = Action("s3.close_staging", {"prefix": prefix, "rule_id": rule},
                      f"delete s3://{self.bucket}/{prefix}/ (every version, incomplete uploads aborted)"
                      " and its expiry rule")
        action = Action("s3.open_staging", {"prefix": prefix, "days": days},
                        f"open s3://{self.bucket}/{prefix}/ for staging, expiring after {days} days", undo=undo)
        return StepPlan(self.id, "staging", "open the run's staging prefix", (action,))


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
        prefix = db_prefix(ctx, self.name)
        size = db.database_size(ctx.inv, self.server, self.dbname)
        key = dbcopy.schema_key(prefix)
        bucket = ctx.inv.spec.storage.bucket
        undo = Action("s3.delete_prefix", {"prefix": key}, f"delete s3://{bucket}/{key}*")
        action = Action("db.stage_schema", {"server": self.server, "dbname": self.dbname, "prefix": prefix},
                        f"pg_dump --schema-only {self.server}/{self.dbname} -> s3://{bucket}/{key}", undo=undo)
        return StepPlan(self.id, self.system, f"stage the schema of database {self.name} in the bucket", (action,),
                        volume={"database_bytes": size})


@dataclass(frozen=True)
class CreateDatabase:
    system: str
    name: str
    server: str
    dbname: str

    @property
    def id(self) -> str:
        return f"{self.system}/create-db:{self.name}"

    def plan(self, ctx: Context) -> StepPlan:
        if db.database_exists(ctx.inv, self.server, self.dbname):
            raise StepFailed(f"target database {self.server}/{self.dbname} already exists; this wave"
                             " will not overwrite a database it did not create")
        prefix = db_prefix(ctx, self.name)
        rolemap = role_map(ctx, self.system, self.name)
        undo = Action("db.drop_database", {"server": self.server, "dbname": self.dbname},
                      f"drop database {self.server}/{self.dbname}")
        args = {"server": self.server, "dbname": self.dbname, "prefix": prefix}
        action = Action("db.create_target", {**args, "roles": rolemap.to_json()} if rolemap else args,
                        f"create {self.server}/{self.dbname} with the staged pre-data schema", undo=undo)
        create_roles = self._roles_action(ctx, rolemap) if rolemap else None
        return StepPlan(self.id, self.system, f"create database {self.name} on the target",
                        (create_roles, action) if create_roles else (action,))

    def _roles_action(self, ctx: Context, rolemap: RoleMap) -> Action | None:
        """The target roles the source's owners and grants map to that the target lacks."""
        d = ctx.inv.spec.systems[self.system].databases[self.name]
        with db.connect(ctx.inv, d.source.server, d.source.dbname) as conn:
            named = pgroles.referenced(conn)
        unmapped = sorted(r for r in named if rolemap.target(r) is None)
        if unmapped:
            raise ConfigError(f"{ctx.inv.path / config.SPEC_FILE}: systems.{self.system}.databases.{self.name}.roles:"
                              f" source role(s) {', '.join(unmapped)} own or are granted objects of"
                              f" {d.source.server}/{d.source.dbname} but are not mapped; map them, or set"
                              " unmapped_roles: create")
        wanted = {rolemap.target(r) for r in named if not pgroles.is_builtin(r)}
        with db.connect(ctx.inv, self.server, "postgres") as conn:
            missing = sorted(wanted - pgroles.existing(conn))
        if not missing:
            return None
        args = {"server": self.server, "roles": missing, "marker": pgroles.marker(ctx.run_id, self.id)}
        names = ", ".join(missing)
        undo = Action("db.drop_roles", args, f"drop the roles this step created on {self.server}: {names}")
        return Action("db.create_roles", args, f"create roles {names} on {self.server} (NOLOGIN, no password),"
                      f" for the owners and grants of {self.name}", undo=undo)


@dataclass(frozen=True)
class RestoreDatabase:
    system: str
    name: str
    source_server: str
    source_dbname: str
    server: str
    dbname: str

    @property
    def id(self) -> str:
        return f"{self.system}/restore-db:{self.name}"

    def plan(self, ctx: Context) -> StepPlan:
        transfer = ctx.inv.spec.transfer
        with db.connect(ctx.inv, self.source_server, self.source_dbname) as conn:
            tables = chunking.read_tables(conn, transfer.chunk_mb * dbcopy.MIB)
        chunks = chunking.plan_chunks(tables, transfer.chunk_mb * dbcopy.MIB)
        prefix = db_prefix(ctx, self.name)
        bucket = ctx.inv.spec.storage.bucket
        undo = Action("s3.abort_uploads", {"prefix": f"{prefix}/data/"},
                      f"abort incomplete uploads under s3://{bucket}/{prefix}/data/ (staged chunks are deleted"
                      " with the staging prefix; the rows with the database)")
        args = {"name": self.name, "step": self.id, "prefix": prefix,
                "source": {"server": self.source_server, "dbname": self.source_dbname},
                "target": {"server": self.server, "dbname": self.dbname},
                "chunks": [c.to_json() for c in chunks]}
        rolemap = role_map(ctx, self.system, self.name)
        if rolemap:
            args["roles"] = rolemap.to_json()
        grants = ", owners and grants mapped to the target's roles" if rolemap else ""
        action = Action("db.copy_through_bucket", args,
                        f"copy {len(tables)} tables in {len(chunks)} chunks {self.source_server}/{self.source_dbname}"
                        f" -> s3://{bucket}/{prefix}/data/ -> {self.server}/{self.dbname}, then indexes,"
                        f" constraints, triggers and sequences{grants}", undo=undo)
        return StepPlan(self.id, self.system, f"restore database {self.name} on the target", (action,),
                        volume={"tables": len(tables), "chunks": len(chunks),
                                "table_bytes": sum(t.bytes for t in tables)})
