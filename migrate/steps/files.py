"""The document archive: from the source host over SFTP into the bucket, with a manifest.

The copy itself is `migrate.transfer.archive` (parallel, streamed, resumable). The step's undo
only aborts incomplete uploads: after a kill, staged documents stay and the rerun skips them;
a rollback deletes them with the run's staging prefix (see `steps.database.OpenStaging`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from migrate.adapters import cloud
from migrate.engine.ops import Context, op
from migrate.model.plan import Action, StepPlan
from migrate.steps.database import run_prefix, transfer_log
from migrate.transfer import archive


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
