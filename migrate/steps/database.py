"""Databases through the bucket: the staging area, the schema, the target, the data.

Four kinds of step, so that each undo is exactly right both for a rollback and for a resume:

- `staging:<bucket>` opens the run's prefix with an expiry rule (a real side effect: the rule);
  its undo, for rollback only, deletes everything under the prefix and aborts incomplete
  multipart uploads, so a resume never throws away what was staged.
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

from migrate.config import SPEC_FILE
from migrate.errors import ConfigError, StepFailed
from migrate.facts.database import DatabaseExists, DatabaseSize, RolesPresent, RolesReferenced, TablesToCopy
from migrate.model import layout
from migrate.model.plan import Action, StepPlan
from migrate.steps.base import Run, Step
from migrate.transfer import chunks as chunking
from migrate.transfer import roles as pgroles
from migrate.transfer.dbcopy import MIB
from migrate.transfer.roles import RoleMap


def role_map(run: Run, system: str, name: str) -> RoleMap | None:
    """The spec's role map of one database; None when owners and grants are not copied."""
    d = run.spec.systems[system].databases[name]
    return None if d.roles is None else RoleMap(dict(d.roles), d.unmapped_roles)


@dataclass(frozen=True)
class OpenStaging(Step):
    """The run's prefix in the bucket, with its expiry; its undo removes the staged copies."""

    bucket: str

    @property
    def id(self) -> str:
        return layout.staging_id(self.bucket)

    def plan(self, run: Run, facts) -> StepPlan:
        prefix, days, rule = run.layout.run, run.spec.transfer.staging_expiry_days, run.layout.expiry_rule_id
        undo = Action("s3.close_staging", {"prefix": prefix, "rule_id": rule},
                      f"delete s3://{self.bucket}/{prefix}/ (every version, incomplete uploads aborted)"
                      " and its expiry rule")
        action = Action("s3.open_staging", {"prefix": prefix, "days": days, "rule_id": rule},
                        f"open s3://{self.bucket}/{prefix}/ for staging, expiring after {days} days", undo=undo,
                        undo_on="rollback")
        return StepPlan(self.id, "staging", "open the run's staging prefix", (action,))


@dataclass(frozen=True)
class StageDatabase(Step):
    system: str
    name: str
    server: str
    dbname: str

    @property
    def id(self) -> str:
        return layout.stage_db_id(self.system, self.name)

    def needs(self, run: Run) -> tuple:
        return (DatabaseSize(self.server, self.dbname),)

    def plan(self, run: Run, facts) -> StepPlan:
        prefix = run.layout.database(self.name)
        key = layout.schema_key(prefix)
        undo = Action("s3.delete_prefix", {"prefix": key}, f"delete s3://{run.bucket}/{key}*")
        action = Action("db.stage_schema", {"server": self.server, "dbname": self.dbname, "prefix": prefix},
                        f"pg_dump --schema-only {self.server}/{self.dbname} -> s3://{run.bucket}/{key}", undo=undo)
        return StepPlan(self.id, self.system, f"stage the schema of database {self.name} in the bucket", (action,),
                        volume={"database_bytes": facts[DatabaseSize(self.server, self.dbname)]})


@dataclass(frozen=True)
class CreateDatabase(Step):
    system: str
    name: str
    server: str
    dbname: str

    @property
    def id(self) -> str:
        return layout.create_db_id(self.system, self.name)

    def _source(self, run: Run):
        return run.spec.systems[self.system].databases[self.name].source

    def needs(self, run: Run) -> tuple:
        exists = (DatabaseExists(self.server, self.dbname),)
        if role_map(run, self.system, self.name) is None:
            return exists
        source = self._source(run)
        return exists + (RolesReferenced(source.server, source.dbname), RolesPresent(self.server))

    def plan(self, run: Run, facts) -> StepPlan:
        if facts[DatabaseExists(self.server, self.dbname)]:
            raise StepFailed(f"target database {self.server}/{self.dbname} already exists; this wave"
                             " will not overwrite a database it did not create")
        rolemap = role_map(run, self.system, self.name)
        undo = Action("db.drop_database", {"server": self.server, "dbname": self.dbname},
                      f"drop database {self.server}/{self.dbname}")
        args = {"server": self.server, "dbname": self.dbname, "prefix": run.layout.database(self.name)}
        action = Action("db.create_target", {**args, "roles": rolemap.to_json()} if rolemap else args,
                        f"create {self.server}/{self.dbname} with the staged pre-data schema", undo=undo)
        create_roles = self._roles_action(run, facts, rolemap) if rolemap else None
        return StepPlan(self.id, self.system, f"create database {self.name} on the target",
                        (create_roles, action) if create_roles else (action,))

    def _roles_action(self, run: Run, facts, rolemap: RoleMap) -> Action | None:
        """The target roles the source's owners and grants map to that the target lacks."""
        source = self._source(run)
        named = facts[RolesReferenced(source.server, source.dbname)]
        unmapped = sorted(r for r in named if rolemap.target(r) is None)
        if unmapped:
            raise ConfigError(f"{run.inv.path / SPEC_FILE}: systems.{self.system}.databases.{self.name}.roles:"
                              f" source role(s) {', '.join(unmapped)} own or are granted objects of"
                              f" {source.server}/{source.dbname} but are not mapped; map them, or set"
                              " unmapped_roles: create")
        wanted = {rolemap.target(r) for r in named if not pgroles.is_builtin(r)}
        missing = sorted(wanted - facts[RolesPresent(self.server)])
        if not missing:
            return None
        args = {"server": self.server, "roles": missing, "marker": pgroles.marker(run.run_id, self.id)}
        names = ", ".join(missing)
        undo = Action("db.drop_roles", args, f"drop the roles this step created on {self.server}: {names}")
        return Action("db.create_roles", args, f"create roles {names} on {self.server} (NOLOGIN, no password),"
                      f" for the owners and grants of {self.name}", undo=undo)


@dataclass(frozen=True)
class RestoreDatabase(Step):
    system: str
    name: str
    source_server: str
    source_dbname: str
    server: str
    dbname: str

    @property
    def id(self) -> str:
        return layout.restore_db_id(self.system, self.name)

    def _tables(self, run: Run) -> TablesToCopy:
        return TablesToCopy(self.source_server, self.source_dbname, run.spec.transfer.chunk_mb * MIB)

    def needs(self, run: Run) -> tuple:
        return (self._tables(run),)

    def plan(self, run: Run, facts) -> StepPlan:
        tables = facts[self._tables(run)]
        chunks = chunking.plan_chunks(list(tables), run.spec.transfer.chunk_mb * MIB)
        prefix = run.layout.database(self.name)
        undo = Action("s3.abort_uploads", {"prefix": f"{prefix}/data/"},
                      f"abort incomplete uploads under s3://{run.bucket}/{prefix}/data/ (staged chunks are deleted"
                      " with the staging prefix; the rows with the database)")
        args = {"name": self.name, "step": self.id, "prefix": prefix,
                "source": {"server": self.source_server, "dbname": self.source_dbname},
                "target": {"server": self.server, "dbname": self.dbname},
                "chunks": [c.to_json() for c in chunks]}
        rolemap = role_map(run, self.system, self.name)
        if rolemap:
            args["roles"] = rolemap.to_json()
        grants = ", owners and grants mapped to the target's roles" if rolemap else ""
        action = Action("db.copy_through_bucket", args,
                        f"copy {len(tables)} tables in {len(chunks)} chunks {self.source_server}/{self.source_dbname}"
                        f" -> s3://{run.bucket}/{prefix}/data/ -> {self.server}/{self.dbname}, then indexes,"
                        f" constraints, triggers and sequences{grants}", undo=undo)
        return StepPlan(self.id, self.system, f"restore database {self.name} on the target", (action,),
                        volume={"tables": len(tables), "chunks": len(chunks),
                                "table_bytes": sum(t.bytes for t in tables)})
