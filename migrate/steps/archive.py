"""The document archive: from the source host over SFTP into the bucket, with a manifest, and
optionally back onto the target application host.

The copy itself is `migrate.transfer.archive_stage` (parallel, streamed, resumable). The staging
step's undo only aborts incomplete uploads: after a kill, staged documents stay and the rerun
skips them; a rollback deletes them with the run's staging prefix.

The restore (`migrate.transfer.archive_restore`) writes the files; its undo, for rollback only, removes
exactly what this run's restore wrote (as its journalled intents list them). A resume keeps the
documents already restored: the rerun removes the killed attempt's temporary files and writes
only the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.config import SPEC_FILE
from migrate.errors import ConfigError
from migrate.facts.archive import ArchiveOnHost
from migrate.model import layout
from migrate.model.plan import Action, StepPlan
from migrate.steps.base import Run, Step


def _volume(facts, host: str, path: str) -> dict:
    found = facts[ArchiveOnHost(host, path)]
    return {"files": found.files, "bytes": found.bytes}


@dataclass(frozen=True)
class StageArchive(Step):
    system: str
    host: str
    path: str
    live: bool = False   # the warm wave's first pass: the source is not frozen yet

    @property
    def id(self) -> str:
        return layout.stage_archive_id(self.system)

    def needs(self, run: Run) -> tuple:
        return (ArchiveOnHost(self.host, self.path),)

    def plan(self, run: Run, facts) -> StepPlan:
        prefix = run.layout.documents(self.system)
        packed = run.spec.systems[self.system].archive.layout == "packed"
        return StepPlan(self.id, self.system, f"stage document archive of {self.system}",
                        (self._packs(run, prefix) if packed else self._objects(run, prefix),),
                        volume=_volume(facts, self.host, self.path))

    def _objects(self, run: Run, prefix: str) -> Action:
        undo = Action("s3.abort_uploads", {"prefix": prefix + "/"},
                      f"abort incomplete uploads under s3://{run.bucket}/{prefix}/ (staged documents are deleted"
                      " with the staging prefix)")
        return Action("files.archive_to_bucket",
                      {"host": self.host, "path": self.path, "prefix": prefix, "step": self.id,
                       "system": self.system, "progress_prefix": run.layout.documents_progress(self.system)},
                      f"copy {self.host}:{self.path} -> s3://{run.bucket}/{prefix}/ (parallel, SHA-256 per file)",
                      undo=undo)

    def _packs(self, run: Run, prefix: str) -> Action:
        return pack_action(run, self.id, self.system, self.host, self.path, delta=False, live=self.live)


def _need_target_host(run: Run, system: str, host: str | None) -> None:
    if host is None:
        raise ConfigError(f"{run.inv.path / SPEC_FILE}: systems.{system}.archive.target_path: system"
                          f" {system} has no app.target_host to restore the archive onto")


def pack_action(run: Run, step: str, system: str, host: str, path: str, *, delta: bool, live: bool) -> Action:
    prefix = run.layout.documents(system)
    undo = Action("s3.abort_uploads", {"prefix": prefix + "/packs/"},
                  f"abort incomplete uploads under s3://{run.bucket}/{prefix}/packs/ (staged packs are deleted"
                  " with the staging prefix)")
    what = "only what changed since the first pass" if delta else "every document"
    when = " while the source is live (a file changing meanwhile is left for the delta)" if live else ""
    return Action("files.pack_to_bucket",
                  {"host": host, "path": path, "system": system, "step": step, "delta": delta, "live": live},
                  f"pack {host}:{path} -> s3://{run.bucket}/{prefix}/packs/ ({what}, SHA-256 per file and per"
                  f" pack){when}", undo=undo)


def restore_packs_action(run: Run, step: str, system: str, host: str, path: str, *, delta: bool) -> Action:
    args = {"host": host, "path": path, "system": system, "step": step, "delta": delta}
    undo = Action("files.unrestore_packs", args,
                  f"remove from {host}:{path} exactly the documents and directories this step wrote, and put back"
                  " what it set aside (as its journalled intents list them; a file changed since is kept)")
    aside = "; the old versions of changed and deleted documents set aside, not deleted" if delta else ""
    return Action("files.restore_packs", args,
                  f"restore s3://{run.bucket}/{run.layout.documents(system)}/packs/ -> {host}:{path} (each pack and"
                  f" file checked by SHA-256 before a file takes its name, mode, owner and mtime kept, files already"
                  f" there with the same SHA-256 skipped{aside})", undo=undo, undo_on="rollback")


@dataclass(frozen=True)
class RestoreArchive(Step):
    system: str
    host: str | None   # the system's app.target_host (None: the plan says which spec field is missing)
    path: str          # archive.target_path

    @property
    def id(self) -> str:
        return layout.restore_archive_id(self.system)

    def _source(self, run: Run):
        return run.spec.systems[self.system].archive

    def needs(self, run: Run) -> tuple:
        return (ArchiveOnHost(self._source(run).host, self._source(run).path),)

    def plan(self, run: Run, facts) -> StepPlan:
        _need_target_host(run, self.system, self.host)
        if run.spec.systems[self.system].archive.layout == "packed":
            action = restore_packs_action(run, self.id, self.system, self.host, self.path, delta=False)
        else:
            action = self._objects(run)
        return StepPlan(self.id, self.system, f"restore the document archive of {self.system} on {self.host}",
                        (action,), volume=_volume(facts, self._source(run).host, self._source(run).path))

    def _objects(self, run: Run) -> Action:
        args = {"host": self.host, "path": self.path, "system": self.system}
        undo = Action("files.remove_restored", args,
                      f"remove from {self.host}:{self.path} exactly the documents and directories this run's restore"
                      " wrote (as its journaled intents list them; a file changed since is kept)")
        return Action("files.restore_from_bucket", args,
                      f"restore s3://{run.bucket}/{run.layout.documents(self.system)}/ -> {self.host}:{self.path}"
                      " (SHA-256 checked while streaming, mode and mtime kept, files already there with the same"
                      " SHA-256 skipped)", undo=undo, undo_on="rollback")


@dataclass(frozen=True)
class ArchiveDelta(Step):
    """Inside the warm wave's freeze: pack only what changed since the first pass, and restore it
    (deletions too) onto the target host."""
    system: str
    host: str
    path: str
    target_host: str | None
    target_path: str | None

    @property
    def id(self) -> str:
        return layout.archive_delta_id(self.system)

    def needs(self, run: Run) -> tuple:
        return (ArchiveOnHost(self.host, self.path),)

    def plan(self, run: Run, facts) -> StepPlan:
        actions = [pack_action(run, self.id, self.system, self.host, self.path, delta=True, live=False)]
        if self.target_path:
            _need_target_host(run, self.system, self.target_host)
            actions.append(restore_packs_action(run, self.id, self.system, self.target_host, self.target_path,
                                                delta=True))
        return StepPlan(self.id, self.system, f"bring the document archive of {self.system} up to date (delta)",
                        tuple(actions), volume=_volume(facts, self.host, self.path))
