"""The run's staging prefix in the bucket: opened with an expiry rule, closed by deleting it."""

from __future__ import annotations

from migrate.adapters import cloud
from migrate.engine.context import Context
from migrate.engine.registry import operation
from migrate.ops.common import s3


@operation("s3.open_staging")
def open_staging(ctx: Context, *, prefix: str, days: int, rule_id: str) -> dict:
    state = cloud.set_expiry(s3(ctx), ctx.inv.spec.storage.bucket, prefix + "/", rule_id=rule_id, days=days)
    return {"expiry_days": days, "lifecycle": state}


@operation("s3.close_staging")
def close_staging(ctx: Context, *, prefix: str, rule_id: str) -> dict:
    bucket = ctx.inv.spec.storage.bucket
    deleted = cloud.delete_prefix(s3(ctx), bucket, prefix + "/")
    return {"deleted": deleted, "lifecycle": cloud.remove_expiry(s3(ctx), bucket, rule_id=rule_id)}


@operation("s3.delete_prefix")
def delete_prefix(ctx: Context, *, prefix: str) -> dict:
    return {"deleted": cloud.delete_prefix(s3(ctx), ctx.inv.spec.storage.bucket, prefix)}


@operation("s3.abort_uploads")
def abort_uploads(ctx: Context, *, prefix: str) -> dict:
    return {"aborted": cloud.abort_uploads(s3(ctx), ctx.inv.spec.storage.bucket, prefix)}
