"""The document archive: from the source host over SFTP into the bucket, with a manifest."""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from dataclasses import dataclass
from urllib.parse import quote

from migrate.adapters import cloud, ssh
from migrate.engine.ops import Context, op
from migrate.model.plan import Action, StepPlan
from migrate.steps.database import run_prefix


def archive_prefix(ctx: Context, system: str) -> str:
    return f"{run_prefix(ctx)}/docs/{system}"


@op("files.archive_to_bucket")
def archive_to_bucket(ctx: Context, *, host: str, path: str, prefix: str) -> dict:
    h = ssh.host(ctx.inv, host)
    top = ssh.host_path(h, path)
    manifest = []
    with ssh.connect(ctx.inv, host) as client, client.open_sftp() as sftp:
        for rel, attrs in ssh.walk(sftp, top):
            with sftp.open(posixpath.join(top, rel), "rb") as remote:
                remote.prefetch(attrs.st_size)
                stored = cloud.put_stream(ctx.inv, ctx.s3, remote, f"{prefix}/files/{rel}", metadata={
                    "original-path": quote(posixpath.join(path, rel)), "mtime": str(int(attrs.st_mtime)),
                    "mode": oct(attrs.st_mode & 0o7777), "size": str(attrs.st_size)})
            manifest.append({"path": rel, "size": stored.size, "sha256": stored.sha256, "key": stored.key})
    body = json.dumps({"host": host, "path": path, "files": manifest}, indent=1, sort_keys=True).encode()
    cloud.put_stream(ctx.inv, ctx.s3, io.BytesIO(body), f"{prefix}/manifest.json")
    return {"files": len(manifest), "bytes": sum(f["size"] for f in manifest),
            "manifest_sha256": hashlib.sha256(body).hexdigest()}


@dataclass(frozen=True)
class StageArchive:
    system: str
    host: str
    path: str

    @property
    def id(self) -> str:
        return f"{self.system}/stage-archive"

    def plan(self, ctx: Context) -> StepPlan:
        h = ssh.host(ctx.inv, self.host)
        with ssh.connect(ctx.inv, self.host) as client, client.open_sftp() as sftp:
            files = list(ssh.walk(sftp, ssh.host_path(h, self.path)))
        prefix = archive_prefix(ctx, self.system)
        bucket = ctx.inv.spec.storage.bucket
        undo = Action("s3.delete_prefix", {"prefix": prefix + "/"}, f"delete s3://{bucket}/{prefix}/")
        action = Action("files.archive_to_bucket", {"host": self.host, "path": self.path, "prefix": prefix},
                        f"copy {self.host}:{self.path} -> s3://{bucket}/{prefix}/", undo=undo)
        return StepPlan(self.id, self.system, f"stage document archive of {self.system}", (action,),
                        volume={"files": len(files), "bytes": sum(a.st_size for _, a in files)})
