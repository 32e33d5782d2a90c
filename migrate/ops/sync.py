"""The warm path's operations: prepare the source, copy from a slot's snapshot and follow it,
the hold where `migrate sync` stops, the check before the freeze, the fence and catch-up."""

from __future__ import annotations

import time

from migrate.adapters import db
from migrate.engine.context import Context
from migrate.engine.registry import operation
from migrate.errors import AwaitingApproval, StepFailed
from migrate.model import layout
from migrate.ops.common import chunk_progress, s3, transfer_log
from migrate.transfer import dbcopy, sync
from migrate.transfer.chunks import Chunk
from migrate.transfer.roles import RoleMap
from migrate.verify import incremental

ATTEMPT = "sync_attempt"     # a slot made for one copy: its consistent point names the attempt
CAUGHT_UP = "sync_caught_up"  # the target confirmed the fenced position (before the slot is dropped)
BASELINE = "verify_baseline"  # per database: what the freeze's verification recomputes against
FENCE_WAIT_SECONDS = 120.0
LAG_OK_BYTES = 16 * 1024 * 1024


class Synced(AwaitingApproval):
    """`migrate sync` stops at the hold: the wave waits for `migrate run`."""


@operation("sync.prepare_source")
def prepare_source(ctx: Context, *, server: str, dbname: str, replica_identity_full: list[str]) -> dict:
    return sync.prepare_source(ctx.inv, server=server, dbname=dbname, replica_identity_full=replica_identity_full)


@operation("sync.restore_source")
def restore_source(ctx: Context, *, server: str, dbname: str, replica_identity_full: list[str]) -> dict:
    return sync.restore_source(ctx.inv, server=server, dbname=dbname, replica_identity_full=replica_identity_full)


def _records(ctx: Context, kind: str, step: str) -> list[dict]:
    return [r.data for r in ctx.journal.records(run_id=ctx.run_id) if r.kind == kind and r.step == step]


def _job(ctx: Context, *, name: str, step: str, prefix: str, sides: dict, chunks: list[dict], roles, lsn: str):
    settings = dbcopy.Settings.from_spec(ctx.inv.spec.transfer)
    return dbcopy.Job(inv=ctx.inv, s3=s3(ctx, pool=4 * settings.workers + 4), log=transfer_log(ctx, step),
                      scope=f"{name}@{lsn}", source=dbcopy.Side(sides["source"], sides["source_db"]),
                      target=dbcopy.Side(sides["target"], sides["target_db"]), prefix=prefix,
                      chunks=[Chunk.from_json(c) for c in chunks], settings=settings,
                      progress=chunk_progress(ctx, name, len(chunks)), roles=RoleMap.from_json(roles),
                      data_dir="data-" + lsn.replace("/", "-"))


def _slot_of(ctx: Context, sides: dict, lsn: str) -> bool:
    """The slot is the one made for the attempt at `lsn`: unconsumed (no subscription yet), a
    slot stays at its consistent point. Another one of the same name (an unrecorded attempt's)
    would pair this attempt's rows with another snapshot's changes."""
    with db.connect(ctx.inv, sides["source"], sides["source_db"]) as conn:
        return sync.slot_at(conn, sync.name_for(sides["source_db"]), lsn)


def _start_over(ctx: Context, sides: dict, prefix: str, roles) -> None:
    """A copy whose snapshot died with its connection cannot go on: a new slot, an empty target."""
    sync.drop_slot(ctx.inv, server=sides["source"], dbname=sides["source_db"])
    db.drop_database(ctx.inv, sides["target"], sides["target_db"])
    dbcopy.create_target(ctx.inv, s3(ctx), dbcopy.Side(sides["target"], sides["target_db"]), prefix,
                         rolemap=RoleMap.from_json(roles))


@operation("sync.copy_and_follow")
def copy_and_follow(ctx: Context, *, name: str, step: str, prefix: str, sides: dict, chunks: list[dict],
                    roles: dict | None = None) -> dict:
    """Copy the slot's snapshot, then subscribe from the slot. After a kill: streaming already
    (done), every chunk staged under a live slot (load the rest), or start over."""
    if sync.subscribed(ctx.inv, target=sides["target"], target_db=sides["target_db"], source_db=sides["source_db"]):
        return {"resumed": "streaming already"}
    attempts = _records(ctx, ATTEMPT, step)
    last = attempts[-1] if attempts else None
    job = last and _job(ctx, name=name, step=step, prefix=prefix, sides=sides, chunks=chunks, roles=roles,
                        lsn=last["lsn"])
    if job and _slot_of(ctx, sides, last["lsn"]) and len(job.log.staged(job.scope)) == len(job.chunks):
        result = {**dbcopy.copy_data(job), "resumed": "every chunk was staged: loading the rest"}
    else:
        if last:
            _start_over(ctx, sides, prefix, roles)
        else:
            sync.drop_slot(ctx.inv, server=sides["source"], dbname=sides["source_db"])  # killed before its record
        with db.slot_with_snapshot(ctx.inv, sides["source"], sides["source_db"],
                                   sync.name_for(sides["source_db"])) as made:
            last = {"database": name, "slot": made.name, "lsn": made.lsn, "attempt": len(attempts) + 1}
            ctx.record(ATTEMPT, last, step=step)
            job = _job(ctx, name=name, step=step, prefix=prefix, sides=sides, chunks=chunks, roles=roles,
                       lsn=made.lsn)
            result = dbcopy.copy_data(job, snapshot=made.snapshot)
    return {**result, **sync.follow(ctx.inv, **sides), "consistent_lsn": last["lsn"]}


@operation("sync.unfollow")
def unfollow(ctx: Context, *, source: str, source_db: str, target: str, target_db: str) -> dict:
    dropped = sync.unfollow(ctx.inv, target=target, target_db=target_db, source_db=source_db)
    slot = sync.drop_slot(ctx.inv, server=source, dbname=source_db)
    return {"subscription_dropped": dropped, "slot_dropped": slot}


@operation("sync.hold")
def hold(ctx: Context, *, databases: list[dict]) -> dict:
    """`migrate sync` stops here, once each database is seen streaming with the source's schema
    (again on every `migrate sync` of a synced wave); `migrate run` goes on."""
    if not ctx.hold:
        return {"cutover": "requested"}
    lags = [f"{label} {lag} bytes behind" for label, lag in _in_sync(ctx, databases, 0.0, limit=None).items()]
    raise Synced(f"{ctx.wave} is in sync ({'; '.join(lags)}): the target follows the live source; `migrate status"
                 f" {ctx.wave}` shows the lag, `migrate run {ctx.wave}` cuts over, `migrate rollback {ctx.wave}`"
                 " undoes the sync")


@operation("sync.check")
def check(ctx: Context, *, databases: list[dict], wait: float) -> dict:
    """Streaming, nearly caught up, and the source's schema unchanged; waits up to `wait`
    seconds for the lag to come down, then fails (the source is still live: nothing to undo)."""
    found = _in_sync(ctx, databases, wait)
    seconds = {}
    for d in databases:
        started = time.monotonic()
        system, name = d["label"].split("/", 1)
        base = incremental.baseline(ctx.inv, ctx.inv.spec.systems[system].databases[name])
        ctx.record(BASELINE, {"database": d["label"], "baseline": base}, step=layout.CUTOVER_CHECK_ID)
        seconds[d["label"]] = round(time.monotonic() - started, 3)
    return {"lag_bytes": found, "baseline_seconds": seconds}


def _in_sync(ctx: Context, databases: list[dict], wait: float, limit: int | None = LAG_OK_BYTES) -> dict[str, int]:
    """Each database streams with the source's schema: its lag in bytes, by label (waiting up to
    `wait` seconds for it to come under `limit`)."""
    found = {}
    for d in databases:
        sides = {k: d[k] for k in ("source", "source_db", "target", "target_db")}
        _no_ddl(ctx, d["label"], sides)
        found[d["label"]] = _close_behind(ctx, d["label"], sides, wait, limit=limit)
    return found


def baselines(journal, run_id: str) -> dict[str, dict]:
    """The newest baseline of each database this run took (for the freeze's verification)."""
    return {r.data["database"]: r.data["baseline"] for r in journal.records(run_id=run_id) if r.kind == BASELINE}


def _no_ddl(ctx: Context, label: str, sides: dict) -> None:
    changed = sync.schema_changes(ctx.inv, **sides)
    if changed:
        raise StepFailed(f"{label}: the source's schema changed since the sync began ({', '.join(changed[:5])}"
                         f"{' ...' if len(changed) > 5 else ''}); logical replication does not carry DDL:"
                         " the cutover is refused; roll back and sync again")


def _close_behind(ctx: Context, label: str, sides: dict, wait: float, limit: int | None = LAG_OK_BYTES) -> int:
    deadline = time.monotonic() + wait
    while True:
        now = sync.progress(ctx.inv, **sides)
        if now["state"] in ("no slot", "copying"):
            raise StepFailed(f"{label}: not streaming ({now['state']}): its slot or subscription is gone; roll back"
                             f" and sync again")
        lag = now["slot_state"]["lag_bytes"] or 0
        if limit is None or lag <= limit:
            return lag
        if time.monotonic() > deadline:
            raise StepFailed(f"{label}: the target is {lag} bytes behind after {wait:.0f}s; the freeze would be"
                             " long: run again when the load is lower")
        time.sleep(0.5)


@operation("sync.fence")
def fence(ctx: Context, *, source: str, source_db: str, target: str, target_db: str, step: str) -> dict:
    """Fence, wait for the target's confirmation of the fenced position, check the schema, carry
    sequences, drop the subscription and the slot. A rerun after a kill repeats what is left."""
    sides = {"source": source, "source_db": source_db, "target": target, "target_db": target_db}
    started = time.monotonic()
    lsn = sync.fence(ctx.inv, server=source, dbname=source_db)
    fenced = time.monotonic()
    label = f"{source}/{source_db}"
    done = _records(ctx, CAUGHT_UP, step)
    if done:
        caught = done[-1]
    else:
        caught = sync.wait_applied(ctx.inv, server=source, dbname=source_db, lsn=lsn, timeout=FENCE_WAIT_SECONDS)
        _no_ddl(ctx, label, sides)
        ctx.record(CAUGHT_UP, caught, step=step)
    applied = time.monotonic()
    sequences = sync.carry_sequences(ctx.inv, **sides)
    dropped = unfollow(ctx, **sides)
    return {"fenced_lsn": caught["fenced_lsn"], "confirmed_lsn": caught["confirmed_lsn"], "sequences": sequences,
            **dropped, "phases": {"fence": round(fenced - started, 3), "catch_up": round(applied - fenced, 3),
                                  "sequences_and_drop": round(time.monotonic() - applied, 3)}}


@operation("sync.unfence")
def unfence(ctx: Context, *, server: str, dbname: str) -> dict:
    return sync.unfence(ctx.inv, server=server, dbname=dbname)

