"""Databases through the bucket: schema staged, target created (roles first), data copied."""

from __future__ import annotations

from migrate.adapters import db
from migrate.engine.context import Context
from migrate.engine.registry import operation
from migrate.ops.common import chunk_progress, s3, transfer_log
from migrate.transfer import dbcopy
from migrate.transfer import roles as pgroles
from migrate.transfer.chunks import Chunk
from migrate.transfer.roles import RoleMap


@operation("db.stage_schema")
def stage_schema(ctx: Context, *, server: str, dbname: str, prefix: str) -> dict:
    stored = dbcopy.stage_schema(ctx.inv, s3(ctx), dbcopy.Side(server, dbname), prefix)
    return {"key": stored.key, "bytes": stored.size, "sha256": stored.sha256}


@operation("db.create_target")
def create_target(ctx: Context, *, server: str, dbname: str, prefix: str, roles: dict | None = None) -> dict:
    return dbcopy.create_target(ctx.inv, s3(ctx), dbcopy.Side(server, dbname), prefix, rolemap=RoleMap.from_json(roles))


@operation("db.create_roles")
def create_roles(ctx: Context, *, server: str, roles: list[str], marker: str) -> dict:
    with db.connect(ctx.inv, server, "postgres", autocommit=True) as conn:
        created = [r for r in roles if pgroles.create(conn, r, marker)]
    return {"created": created, "present_already": len(roles) - len(created)}


@operation("db.drop_roles")
def drop_roles(ctx: Context, *, server: str, roles: list[str], marker: str) -> dict:
    with db.connect(ctx.inv, server, "postgres", autocommit=True) as conn:
        dropped = [r for r in reversed(roles) if pgroles.drop(conn, r, marker, server)]
    return {"dropped": dropped}


@operation("db.drop_database")
def drop_database(ctx: Context, *, server: str, dbname: str) -> dict:
    return {"dropped": db.drop_database(ctx.inv, server, dbname)}


@operation("db.copy_through_bucket")
def copy_through_bucket(ctx: Context, *, name: str, step: str, source: dict, target: dict, prefix: str,
                        chunks: list[dict], roles: dict | None = None) -> dict:
    settings = dbcopy.Settings.from_spec(ctx.inv.spec.transfer)
    job = dbcopy.Job(inv=ctx.inv, s3=s3(ctx, pool=4 * settings.workers + 4),
                     log=transfer_log(ctx, step), scope=name, source=dbcopy.Side(**source),
                     target=dbcopy.Side(**target), prefix=prefix, chunks=[Chunk.from_json(c) for c in chunks],
                     settings=settings, progress=chunk_progress(ctx, name, len(chunks)),
                     roles=RoleMap.from_json(roles))
    return dbcopy.copy_data(job)
