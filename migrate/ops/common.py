"""What several operations share: the run's S3 client, its chunk-level log, progress events."""

from __future__ import annotations

from migrate.adapters import cloud
from migrate.engine.context import Context
from migrate.model.layout import RunLayout
from migrate.transfer.log import TransferLog


def s3(ctx: Context, *, pool: int = 10):
    """One S3 client per run and pool size, made on first use."""
    key = ("s3", pool)
    if key not in ctx.shared:
        ctx.shared[key] = cloud.client(ctx.inv, pool=pool)
    return ctx.shared[key]


def layout(ctx: Context) -> RunLayout:
    return RunLayout(ctx.inv.spec.storage.prefix, ctx.wave, ctx.run_id)


def transfer_log(ctx: Context, step: str | None) -> TransferLog:
    """Chunk-level records of one step, in the run's own journal."""
    return TransferLog(ctx.journal, ctx.run_id, ctx.wave, step)


def chunk_progress(ctx: Context, database: str, total: int):
    """Chunk progress as events on the run's bus (a console bar, JSON lines): counts only."""
    done = {"chunk_staged": 0, "chunk_loaded": 0}

    def report(kind: str, result: dict) -> None:
        done[kind] = done.get(kind, 0) + 1
        ctx.bus.emit("chunk", database=database, what=kind, table=result.get("table"), rows=result.get("rows", 0),
                     bytes=result.get("bytes", 0), done=done[kind], total=total)
    return report
