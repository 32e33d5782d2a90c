"""The warm path: `migrate sync` copies and keeps the target in sync while the source is live;
`migrate run` on a synced wave cuts over in a short freeze.

- `<system>/sync-db:<name>` (source live): a publication of every table on the source (REPLICA
  IDENTITY FULL, set and undone by the tool, on the tables without a key), a slot made with an
  exported snapshot, the copy engine reading that snapshot through the bucket, then a
  subscription on the target bound to the slot (see `migrate.transfer.sync`). Its undo, for a
  rollback, drops the subscription, the slot and the publication and resets the replica
  identities: nothing is left on the source. A killed copy starts over from a new slot (an
  exported snapshot dies with its connection), unless every chunk was staged already.
- `synced`: where `migrate sync` stops (its step waits, status `synced`); `migrate run` passes.
- `cutover-check` (source still live): every database streams, no DDL since the sync began.
- `<system>/fence-db:<name>` (in the freeze, after maintenance mode): every writer fenced, the
  fenced position confirmed by the target, no DDL, sequences carried, the subscription and its
  slot dropped. Its undo lifts the fence.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.config import SPEC_FILE
from migrate.errors import ConfigError
from migrate.facts.database import TablesToCopy
from migrate.facts.replication import LargeObjects, TablesWithoutKey
from migrate.model import layout
from migrate.model.plan import Action, StepPlan, reading
from migrate.steps.base import Run, Step, db_sides
from migrate.steps.database import role_map
from migrate.transfer import chunks as chunking
from migrate.transfer.dbcopy import MIB

LAG_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class SyncDatabase(Step):
    system: str
    name: str

    @property
    def id(self) -> str:
        return layout.sync_db_id(self.system, self.name)

    def _db(self, run: Run):
        return run.spec.systems[self.system].databases[self.name]

    def needs(self, run: Run) -> tuple:
        s = self._db(run).source
        return (TablesToCopy(s.server, s.dbname, run.spec.transfer.chunk_mb * MIB),
                TablesWithoutKey(s.server, s.dbname), LargeObjects(s.server, s.dbname))

    def plan(self, run: Run, facts) -> StepPlan:
        d = self._db(run)
        s, t = d.source, d.target
        if facts[LargeObjects(s.server, s.dbname)]:
            raise ConfigError(f"{run.inv.path / SPEC_FILE}: systems.{self.system}.databases.{self.name}:"
                              f" {s.server}/{s.dbname} has {facts[LargeObjects(s.server, s.dbname)]} large objects,"
                              " which logical replication does not carry; migrate this wave cold (`migrate run`)")
        if not run.spec.db_servers[t.server].replication_passfile:
            raise ConfigError(f"{run.inv.path / SPEC_FILE}: db_servers.{t.server}.replication_passfile: required"
                              f" for a warm sync: the subscription on {t.server} reads {s.server}'s password there")
        keyless = list(facts[TablesWithoutKey(s.server, s.dbname)])
        where = {"server": s.server, "dbname": s.dbname}
        identity = f", REPLICA IDENTITY FULL on {len(keyless)} table(s) without a key" if keyless else ""
        restore = Action("sync.restore_source", {**where, "replica_identity_full": keyless},
                         f"{s.server}/{s.dbname}: drop the sync's slot and publication"
                         + (f", replica identity back to default on {', '.join(keyless)}" if keyless else ""))
        prepare = Action("sync.prepare_source", {**where, "replica_identity_full": keyless},
                         f"{s.server}/{s.dbname}: publication of every table{identity}", undo=restore,
                         undo_on="rollback")
        return StepPlan(self.id, self.system, f"sync database {self.name} while the source is live",
                        (prepare, self._copy(run, facts)))

    def _copy(self, run: Run, facts) -> Action:
        d = self._db(run)
        s, t = d.source, d.target
        tables = facts[TablesToCopy(s.server, s.dbname, run.spec.transfer.chunk_mb * MIB)]
        chunks = chunking.plan_chunks(list(tables), run.spec.transfer.chunk_mb * MIB)
        prefix = run.layout.database(self.name)
        args = {"name": self.name, "step": self.id, "prefix": prefix, "sides": db_sides(d),
                "chunks": [c.to_json() for c in chunks]}
        rolemap = role_map(run, self.system, self.name)
        if rolemap:
            args["roles"] = rolemap.to_json()
        stop = Action("sync.unfollow", db_sides(d), f"drop the subscription on {t.server}/{t.dbname} and its slot on"
                                                  f" {s.server}")
        return Action("sync.copy_and_follow", args,
                      f"slot on {s.server}/{s.dbname} with its snapshot; copy {len(tables)} tables in {len(chunks)}"
                      f" chunks of that snapshot through s3://{run.bucket}/{prefix}/; then a subscription on"
                      f" {t.server}/{t.dbname} from the slot's position", undo=stop, undo_on="rollback")


@dataclass(frozen=True)
class Synced(Step):
    """Where `migrate sync` stops; `migrate run` goes on to the cutover."""

    databases: tuple[tuple[str, str], ...]  # (system, database)
    id = layout.SYNCED_ID

    def plan(self, run: Run, facts) -> StepPlan:
        action = reading("sync.hold", {"databases": _labelled(run, self.databases)},
                         "synced: the target follows the live source until `migrate run`")
        return StepPlan(self.id, _systems(self.databases), "in sync, waiting for the cutover", (action,))


def _labelled(run: Run, databases) -> list[dict]:
    return [{"label": f"{sy}/{db}", **db_sides(run.spec.systems[sy].databases[db])} for sy, db in databases]


def _systems(databases) -> str:
    return "+".join(dict.fromkeys(sy for sy, _ in databases))


@dataclass(frozen=True)
class CutoverCheck(Step):
    """Before the freeze: every database streams and is close behind, and no DDL ran on the
    source since the sync began (logical replication does not carry DDL). Then the baseline of
    the freeze's verification (see `migrate.verify.incremental`), taken while the source is live."""

    databases: tuple[tuple[str, str], ...]  # (system, database)
    id = layout.CUTOVER_CHECK_ID

    def plan(self, run: Run, facts) -> StepPlan:
        action = reading("sync.check", {"databases": _labelled(run, self.databases), "wait": LAG_WAIT_SECONDS},
                         "every database streams, is nearly caught up and has the source's schema;"
                         " the baseline of the freeze's verification")
        return StepPlan(self.id, _systems(self.databases), "ready to freeze: in sync, no DDL", (action,))


@dataclass(frozen=True)
class FenceDatabase(Step):
    system: str
    name: str

    @property
    def id(self) -> str:
        return layout.fence_db_id(self.system, self.name)

    def plan(self, run: Run, facts) -> StepPlan:
        d = run.spec.systems[self.system].databases[self.name]
        s, t = d.source, d.target
        lift = Action("sync.unfence", {"server": s.server, "dbname": s.dbname},
                      f"{s.server}/{s.dbname}: lift the fence (read-write again)")
        fence = Action("sync.fence", {**db_sides(d), "step": self.id},
                       f"fence every writer of {s.server}/{s.dbname} (read-only, sessions ended), wait until"
                       f" {t.server}/{t.dbname} confirms the fenced position, check the schema, carry sequences,"
                       " drop the subscription", undo=lift, undo_on="rollback")
        return StepPlan(self.id, self.system, f"fence {self.name} and catch up", (fence,))
