"""The document archive: staged from the source host into the bucket, restored onto the target
application host, and the restored files removed again by a rollback."""

from __future__ import annotations

from migrate.adapters import cloud, ssh
from migrate.engine.context import Context
from migrate.engine.registry import operation
from migrate.errors import StepFailed
from migrate.model import layout as names
from migrate.ops.common import layout, s3, transfer_log
from migrate.transfer import archive_restore as restore
from migrate.transfer import archive_stage as archive
from migrate.transfer import packed
from migrate.transfer.pool import worker_count


@operation("files.archive_to_bucket")
def archive_to_bucket(ctx: Context, *, host: str, path: str, prefix: str, step: str, progress_prefix: str,
                      system: str) -> dict:
    transfer = ctx.inv.spec.transfer
    workers = worker_count(transfer.workers)
    job = archive.ArchiveJob(inv=ctx.inv, s3=s3(ctx, pool=2 * workers + 4), log=transfer_log(ctx, step),
                             scope=system, host=host, path=path, prefix=prefix, progress_prefix=progress_prefix,
                             workers=workers,
                             part_bytes=max(cloud.MIN_PART, min(transfer.chunk_mb, 64) * 1024 * 1024))
    return archive.stage_archive(job)


def staged_manifest_sha256(ctx: Context, system: str) -> str | None:
    """The archive manifest's SHA-256 as this run's staging step journalled it."""
    step = names.stage_archive_id(system)
    found = [r.data.get("result") or {} for r in ctx.journal.records(run_id=ctx.run_id)
             if r.kind == "effect_done" and r.step == step]
    return next((f["manifest_sha256"] for f in reversed(found) if "manifest_sha256" in f), None)


def _restore_job(ctx: Context, *, host: str, path: str, system: str, workers: int = 1) -> restore.RestoreJob:
    step = names.restore_archive_id(system)
    run = layout(ctx)
    return restore.RestoreJob(inv=ctx.inv, s3=s3(ctx, pool=2 * workers + 4), log=transfer_log(ctx, step),
                              scope=system, host=host, path=path, top=ssh.host_path(ssh.host(ctx.inv, host), path),
                              prefix=run.documents(system), progress_prefix=run.restore_progress(system),
                              tag=restore.tag_for(ctx.run_id, step), workers=workers)


@operation("files.restore_from_bucket")
def restore_from_bucket(ctx: Context, *, host: str, path: str, system: str) -> dict:
    """A rerun after a kill first removes the killed attempt's temporary files, then writes only
    the documents not yet there (the ones already restored are kept: see the step's undo_on)."""
    job = _restore_job(ctx, host=host, path=path, system=system, workers=worker_count(ctx.inv.spec.transfer.workers))
    job.manifest_sha256 = staged_manifest_sha256(ctx, system)
    leftovers = restore.remove_leftovers(job)
    return {**restore.restore_archive(job), "leftovers_removed": leftovers}


@operation("files.remove_restored")
def remove_restored(ctx: Context, *, host: str, path: str, system: str) -> dict:
    return restore.remove_restored(_restore_job(ctx, host=host, path=path, system=system))


# --- the packed layout (migrate.transfer.packed) --------------------------------------------

def _step_results(ctx: Context, step: str) -> list[dict]:
    return [r.data.get("result") or {} for r in ctx.journal.records(run_id=ctx.run_id)
            if r.kind == "effect_done" and r.step == step]


def staged_manifest(ctx: Context, step: str) -> dict | None:
    """Key, SHA-256 and size of the manifest the given step's packing journalled last."""
    found = [r for r in _step_results(ctx, step) if "manifest_key" in r]
    return found[-1] if found else None


def _manifest_files(ctx: Context, where: dict | None) -> dict:
    if where is None:
        return {"files": [], "packs": []}
    return packed.read_manifest(s3(ctx), ctx.inv.spec.storage.bucket, where["manifest_key"],
                                where["manifest_sha256"], where["manifest_bytes"])


PACK_PART = 8 * 1024 * 1024  # one part buffered per worker: memory is workers x this, whatever the archive


def _scope(system: str, delta: bool) -> str:
    return f"{system}/delta" if delta else system


@operation("files.pack_to_bucket")
def pack_to_bucket(ctx: Context, *, host: str, path: str, system: str, step: str, delta: bool = False,
                   live: bool = False) -> dict:
    """Stage the archive in packs; a delta starts from the base staging's manifest."""
    archive, transfer = ctx.inv.spec.systems[system].archive, ctx.inv.spec.transfer
    workers = worker_count(transfer.workers)
    run = layout(ctx)
    previous = _manifest_files(ctx, staged_manifest(ctx, names.stage_archive_id(system)))["files"] if delta else []
    progress = run.documents_progress(system) + ("/delta" if delta else "")
    job = packed.PackJob(inv=ctx.inv, s3=s3(ctx, pool=2 * workers + 4), log=transfer_log(ctx, step),
                         scope=_scope(system, delta), host=host, path=path, prefix=run.documents(system),
                         progress_prefix=progress, manifest="manifest-delta.json" if delta else "manifest.json",
                         workers=workers, pack_bytes=archive.pack_mb * 1024 * 1024,
                         part_bytes=PACK_PART, previous=previous, live=live)
    return packed.stage(job)


def _packed_restore_job(ctx: Context, *, host: str, path: str, system: str, step: str, delta: bool,
                        workers: int = 1) -> packed.RestoreJob:
    run = layout(ctx)
    return packed.RestoreJob(inv=ctx.inv, s3=s3(ctx, pool=2 * workers + 4), log=transfer_log(ctx, step),
                             scope=_scope(system, delta), host=host, path=path,
                             top=ssh.host_path(ssh.host(ctx.inv, host), path),
                             progress_prefix=run.restore_progress(system) + ("/delta" if delta else ""),
                             tag=restore.tag_for(ctx.run_id, step), workers=workers,
                             owners=ctx.inv.spec.systems[system].archive.owners)


@operation("files.restore_packs")
def restore_packs(ctx: Context, *, host: str, path: str, system: str, step: str, delta: bool = False) -> dict:
    """Restore from the packs: a rerun first removes a killed attempt's temporaries, then writes
    only what is missing. A delta sets aside the old versions of changed and deleted files."""
    job = _packed_restore_job(ctx, host=host, path=path, system=system, step=step, delta=delta,
                              workers=worker_count(ctx.inv.spec.transfer.workers))
    base = staged_manifest(ctx, names.stage_archive_id(system))
    if base is None:
        raise StepFailed(f"systems.{system}.archive: no staged manifest in this run's journal; stage the archive"
                         " first")
    current = staged_manifest(ctx, step) if delta else base
    manifest = _manifest_files(ctx, current)
    previous = _manifest_files(ctx, base)["files"] if delta else []
    leftovers = packed.remove_leftovers(job, packed.changed_paths(manifest["files"], previous) if delta else None)
    return {**packed.restore(job, manifest, previous), "leftovers_removed": leftovers}


@operation("files.unrestore_packs")
def unrestore_packs(ctx: Context, *, host: str, path: str, system: str, step: str, delta: bool = False) -> dict:
    return packed.undo(_packed_restore_job(ctx, host=host, path=path, system=system, step=step, delta=delta))


@operation("files.purge_set_aside")
def purge_set_aside(ctx: Context, *, host: str, path: str, system: str, step: str, delta: bool = True) -> dict:
    return packed.purge_set_aside(_packed_restore_job(ctx, host=host, path=path, system=system, step=step,
                                                      delta=delta))
