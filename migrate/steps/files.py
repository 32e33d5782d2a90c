"""The document archive: from the source host over SFTP into the bucket, with a manifest, and
optionally back onto the target application host.

The copy itself is `migrate.transfer.archive` (parallel, streamed, resumable). The step's undo
only aborts incomplete uploads: after a kill, staged documents stay and the rerun skips them;
a rollback deletes them with the run's staging prefix (see `steps.database.OpenStaging`).

The restore (`migrate.transfer.restore`) is two steps, for the executor's resume rule (an
interrupted step is undone, then run again): `<system>/open-restore-archive` completes at once
and its undo removes exactly what this run's restore wrote, so only a rollback does that;
`<system>/restore-archive` writes the files and its undo removes only its temporary files, so
a rerun after a kill keeps the documents already restored and writes only the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from migrate import config
from migrate.adapters import cloud, ssh
from migrate.engine.journal import Journal
from migrate.engine.ops import Context, op
from migrate.errors import ConfigError, StepFailed
from migrate.model.plan import Action, StepPlan
from migrate.steps.database import run_prefix, transfer_log
from migrate.transfer import archive, restore


def archive_prefix(ctx: Context, system: str) -> str:
    return f"{run_prefix(ctx)}/docs/{system}"


def progress_prefix(ctx: Context, system: str) -> str:
    return f"{run_prefix(ctx)}/progress/docs/{system}"


@op("files.archive_to_bucket")
def archive_to_bucket(ctx: Context, *, host: str, path: str, prefix: str, step: str | None = None,
                      progress_prefix: str | None = None, system: str | None = None) -> dict:
    transfer = ctx.inv.spec.transfer
    workers = transfer.workers or os.cpu_count() or 2
    log = transfer_log(ctx, step)
    try:
        job = archive.ArchiveJob(inv=ctx.inv, s3=cloud.client(ctx.inv, pool=2 * workers + 4), log=log,
                                 scope=system or prefix, host=host, path=path, prefix=prefix,
                                 progress_prefix=progress_prefix or f"{prefix}.progress", workers=workers,
                                 part_bytes=max(cloud.MIN_PART, min(transfer.chunk_mb, 64) * 1024 * 1024))
        return archive.stage_archive(job)
    finally:
        log.journal.close()


@dataclass(frozen=True)
class StageArchive:
    system: str
    host: str
    path: str

    @property
    def id(self) -> str:
        return f"{self.system}/stage-archive"

    def plan(self, ctx: Context) -> StepPlan:
        job = archive.ArchiveJob(inv=ctx.inv, s3=None, log=None, scope=self.system, host=self.host, path=self.path,
                                 prefix="", progress_prefix="", workers=1, part_bytes=0)
        _, files = archive.listing(job)
        prefix = archive_prefix(ctx, self.system)
        bucket = ctx.inv.spec.storage.bucket
        undo = Action("s3.abort_uploads", {"prefix": prefix + "/"},
                      f"abort incomplete uploads under s3://{bucket}/{prefix}/ (staged documents are deleted with"
                      " the staging prefix)")
        action = Action("files.archive_to_bucket",
                        {"host": self.host, "path": self.path, "prefix": prefix, "step": self.id,
                         "system": self.system, "progress_prefix": progress_prefix(ctx, self.system)},
                        f"copy {self.host}:{self.path} -> s3://{bucket}/{prefix}/ (parallel, SHA-256 per file)",
                        undo=undo)
        return StepPlan(self.id, self.system, f"stage document archive of {self.system}", (action,),
                        volume={"files": len(files), "bytes": sum(f.size for f in files)})


# --- restoring the archive onto the target application host ---------------------------------

def stage_step_id(system: str) -> str:
    return f"{system}/stage-archive"


def restore_step_id(system: str) -> str:
    return f"{system}/restore-archive"


def staged_manifest_sha256(ctx: Context, system: str) -> str | None:
    """The archive manifest's SHA-256 as this run's staging step recorded it."""
    journal = Journal(ctx.inv.state_dir / "journal.sqlite")
    try:
        found = [r.data.get("result") or {} for r in journal.records(run_id=ctx.run_id)
                 if r.kind == "effect_done" and r.step == stage_step_id(system)]
    finally:
        journal.close()
    return next((f["manifest_sha256"] for f in reversed(found) if "manifest_sha256" in f), None)


def _restore_job(ctx: Context, log, *, host: str, path: str, system: str, workers: int = 1,
                 manifest_sha256: str | None = None) -> restore.RestoreJob:
    return restore.RestoreJob(inv=ctx.inv, s3=cloud.client(ctx.inv, pool=2 * workers + 4), log=log, scope=system,
                              host=host, path=path, top=ssh.host_path(ssh.host(ctx.inv, host), path),
                              prefix=archive_prefix(ctx, system),
                              progress_prefix=f"{run_prefix(ctx)}/progress/restore/{system}",
                              tag=restore.tag_for(ctx.run_id, restore_step_id(system)), workers=workers,
                              manifest_sha256=manifest_sha256)


@op("files.claim_restore")
def claim_restore(ctx: Context, *, host: str, path: str, system: str) -> dict:
    """Changes nothing (it checks the host answers): this effect carries the undo of everything
    the restore writes."""
    with ssh.connect(ctx.inv, host) as client, client.open_sftp() as sftp:
        try:
            exists = restore.remote_stat(sftp, ssh.host_path(ssh.host(ctx.inv, host), path)) is not None
        except OSError as exc:
            raise StepFailed(f"{host}:{path}: cannot look at it ({type(exc).__name__})") from None
    return {"target_path_exists": exists}


@op("files.remove_restored")
def remove_restored(ctx: Context, *, host: str, path: str, system: str) -> dict:
    log = transfer_log(ctx, restore_step_id(system))
    try:
        return restore.remove_restored(_restore_job(ctx, log, host=host, path=path, system=system))
    finally:
        log.journal.close()


@op("files.restore_from_bucket")
def restore_from_bucket(ctx: Context, *, host: str, path: str, system: str) -> dict:
    workers = ctx.inv.spec.transfer.workers or os.cpu_count() or 2
    log = transfer_log(ctx, restore_step_id(system))
    try:
        job = _restore_job(ctx, log, host=host, path=path, system=system, workers=workers,
                           manifest_sha256=staged_manifest_sha256(ctx, system))
        return restore.restore_archive(job)
    finally:
        log.journal.close()


@op("files.remove_restore_leftovers")
def remove_restore_leftovers(ctx: Context, *, host: str, path: str, system: str) -> dict:
    log = transfer_log(ctx, restore_step_id(system))
    try:
        return {"removed": restore.remove_leftovers(_restore_job(ctx, log, host=host, path=path, system=system))}
    finally:
        log.journal.close()


def _target_host(ctx: Context, system: str, host: str | None) -> str:
    if host is None:
        raise ConfigError(f"{ctx.inv.path / config.SPEC_FILE}: systems.{system}.archive.target_path: system {system}"
                          " has no app.target_host to restore the archive onto")
    return host


@dataclass(frozen=True)
class OpenArchiveRestore:
    """Holds the undo of the restore: done at once, so only a rollback removes restored files."""

    system: str
    host: str | None   # the system's app.target_host
    path: str          # archive.target_path

    @property
    def id(self) -> str:
        return f"{self.system}/open-restore-archive"

    def plan(self, ctx: Context) -> StepPlan:
        host = _target_host(ctx, self.system, self.host)
        args = {"host": host, "path": self.path, "system": self.system}
        undo = Action("files.remove_restored", args,
                      f"remove from {host}:{self.path} exactly the documents and directories this run's restore"
                      " wrote (as its journaled intents list them; a file changed since is kept)")
        action = Action("files.claim_restore", args, f"claim {host}:{self.path} for this run's document restore",
                        undo=undo)
        return StepPlan(self.id, self.system, f"open the restore of the document archive of {self.system}", (action,))


@dataclass(frozen=True)
class RestoreArchive:
    system: str
    host: str | None   # the system's app.target_host
    path: str          # archive.target_path

    @property
    def id(self) -> str:
        return restore_step_id(self.system)

    def plan(self, ctx: Context) -> StepPlan:
        host = _target_host(ctx, self.system, self.host)
        source = ctx.inv.spec.systems[self.system].archive
        job = archive.ArchiveJob(inv=ctx.inv, s3=None, log=None, scope=self.system, host=source.host,
                                 path=source.path, prefix="", progress_prefix="", workers=1, part_bytes=0)
        _, files = archive.listing(job)
        args = {"host": host, "path": self.path, "system": self.system}
        prefix = archive_prefix(ctx, self.system)
        undo = Action("files.remove_restore_leftovers", args,
                      f"remove this step's temporary files under {host}:{self.path} (restored documents go with the"
                      " rollback of the open-restore-archive step)")
        action = Action("files.restore_from_bucket", args,
                        f"restore s3://{ctx.inv.spec.storage.bucket}/{prefix}/ -> {host}:{self.path} (SHA-256 checked"
                        " while streaming, mode and mtime kept, files already there with the same SHA-256 skipped)",
                        undo=undo)
        return StepPlan(self.id, self.system, f"restore the document archive of {self.system} on {host}", (action,),
                        volume={"files": len(files), "bytes": sum(f.size for f in files)})
