"""The document archive: from the source host over SFTP into the bucket, in parallel, streamed.

Each worker of the pool has its own SSH connection (so several sshd processes encrypt at once)
and takes files from its bounded queue, largest first. A file goes straight from the SFTP stream to S3 (a small one in one
PUT, a large one as a multipart upload), hashed on the way; nothing is written to local disk.
Every object carries its original path, size, mtime, mode and SHA-256 as metadata.

Progress is recorded in batches: every few hundred files (or seconds) the coordinator writes a
batch manifest to the bucket, then journals it (count, bytes, the batch's SHA-256; paths stay
out of the journal, they can name people). A rerun reads the journaled batches and skips every
file whose size and mtime are unchanged; an object uploaded after the last batch record is a
leftover of the killed attempt and is deleted before the file is sent again.

An error names a file by its place in the source listing, never by its path or its object's key
(which holds the path): see migrate.model.document_names.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

from migrate.adapters import cloud, ssh
from migrate.config import Inventory
from migrate.errors import StepFailed
from migrate.model import document_names as names
from migrate.model import layout
from migrate.transfer.log import ARCHIVE_BATCH, TransferLog
from migrate.transfer.pool import Pool

BATCH_FILES = 500
BATCH_SECONDS = 5.0
READ_BLOCK = 1024 * 1024


@dataclass
class ArchiveJob:
    inv: Inventory
    s3: object
    log: TransferLog
    scope: str             # the system: the records' scope
    host: str
    path: str              # the archive's path as the spec gives it
    prefix: str            # where the documents go: <prefix>/files/<relative path>
    progress_prefix: str   # where the batch manifests go (outside `prefix`: they are not documents)
    workers: int
    part_bytes: int
    progress: Callable[[str, dict], None] = field(default=lambda kind, data: None)

    @property
    def bucket(self) -> str:
        return self.inv.spec.storage.bucket

    def key(self, rel: str) -> str:
        return f"{self.prefix}/files/{rel}"


@dataclass(frozen=True)
class Remote:
    rel: str
    size: int
    mtime: int
    mode: int


def listing(job: ArchiveJob) -> tuple[str, list[Remote]]:
    top = ssh.host_path(ssh.host(job.inv, job.host), job.path)
    return top, [Remote(*f) for f in ssh.list_files(job.inv, job.host, job.path)]


def _metadata(job: ArchiveJob, f: Remote, sha256: str) -> dict:
    return {"original-path": quote(posixpath.join(job.path, f.rel)), "size": str(f.size), "mtime": str(f.mtime),
            "mode": oct(f.mode), "sha256": sha256}


def _remote_sha256(client, path: str) -> str:
    """The source host hashes a large file first, so its SHA-256 can travel as the object's
    metadata (set when the multipart upload starts); the stream is hashed again and compared."""
    sha = ssh.remote_sha256(client, path)
    if sha is None:
        raise StepFailed("the source host could not hash it")
    return sha


class Worker:
    """One SSH connection and SFTP session, used by one thread for many files."""

    def __init__(self, job: ArchiveJob, top: str):
        self.job, self.top = job, top
        self.session = ssh.BulkSession(job.inv, job.host)
        self.client, self.sftp = self.session.client, self.session.sftp

    def close(self) -> None:
        self.session.close()

    def copy(self, f: Remote) -> dict:
        path = posixpath.join(self.top, f.rel)
        with ssh.open_read(self.sftp, path, f.size) as remote:
            if f.size <= self.job.part_bytes:
                body = remote.read(f.size + 1)
                sha = hashlib.sha256(body).hexdigest()
                stored = cloud.put_bytes(self.job.inv, self.job.s3, self.job.key(f.rel), body,
                                         metadata=_metadata(self.job, f, sha))
            else:
                sha = _remote_sha256(self.client, path)
                stored = self._stream(remote, f, sha)
        if stored.size != f.size or stored.sha256 != sha:
            raise StepFailed("changed while it was copied (size or SHA-256 differ); is the source frozen?")
        return {"path": f.rel, "key": stored.key, "size": stored.size, "sha256": stored.sha256, "mtime": f.mtime,
                "mode": oct(f.mode), "version": stored.version}

    def _stream(self, remote, f: Remote, sha: str) -> cloud.Stored:
        with cloud.StreamUpload(self.job.inv, self.job.s3, self.job.key(f.rel), part_size=self.job.part_bytes,
                                metadata=_metadata(self.job, f, sha)) as upload:
            while block := remote.read(READ_BLOCK):
                upload.write(block)
            return upload.close()


def _done_files(job: ArchiveJob) -> dict[str, dict]:
    """Files staged by earlier attempts of this run, from the journaled batch manifests."""
    done = {}
    for batch in job.log.batches(job.scope):
        with cloud.fetch_verified(job.s3, job.bucket, batch["key"], sha256=batch["sha256"], size=batch["bytes_json"],
                                  spool_bytes=64 * 1024 * 1024) as f:
            for entry in json.loads(f.read())["files"]:
                done[entry["path"]] = entry
    return done


def _unchanged(entry: dict | None, f: Remote) -> bool:
    return entry is not None and entry["size"] == f.size and entry["mtime"] == f.mtime


def _remove_leftovers(job: ArchiveJob, done: dict[str, dict]) -> int:
    cloud.abort_uploads(job.s3, job.bucket, f"{job.prefix}/files/")
    return cloud.delete_unrecorded(job.s3, job.bucket, f"{job.prefix}/files/", {e["key"] for e in done.values()})


class Batcher:
    """Collects finished files; writes a batch manifest and journals it every so often."""

    def __init__(self, job: ArchiveJob, first: int):
        self.job, self.number, self.pending, self.since = job, first, [], time.monotonic()

    def add(self, entry: dict) -> None:
        self.pending.append(entry)
        if len(self.pending) >= BATCH_FILES or time.monotonic() - self.since >= BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        body = json.dumps({"files": self.pending}, sort_keys=True).encode()
        key = f"{self.job.progress_prefix}/batch-{self.number:05d}.json"
        stored = cloud.put_bytes(self.job.inv, self.job.s3, key, body)
        record = {"batch": self.number, "key": key, "files": len(self.pending),
                  "bytes": sum(e["size"] for e in self.pending), "bytes_json": stored.size, "sha256": stored.sha256}
        self.job.log.append(ARCHIVE_BATCH, self.job.scope, record)
        self.job.progress(ARCHIVE_BATCH, record)
        self.number, self.pending, self.since = self.number + 1, [], time.monotonic()


def stage_archive(job: ArchiveJob) -> dict:
    top, files = listing(job)
    done = _done_files(job)
    removed = _remove_leftovers(job, done)
    todo = sorted((f for f in files if not _unchanged(done.get(f.rel), f)), key=lambda f: -f.size)
    batcher = Batcher(job, first=len(job.log.batches(job.scope)) + 1)
    errors = _copy_all(job, top, todo, batcher, done, names.Listing(names.SOURCE, {f.rel: f.size for f in files}))
    batcher.flush()  # what did finish is recorded even when something failed
    if errors:
        raise StepFailed(f"{errors[0]}{f' (and {len(errors) - 1} more)' if len(errors) > 1 else ''};"
                         f" {len(todo) - len(errors)} of {len(todo)} documents staged: a rerun continues from there")
    manifest = _write_manifest(job, [done[f.rel] for f in files])
    return {"files": len(files), "copied": len(todo), "skipped_unchanged": len(files) - len(todo),
            "bytes": sum(f.size for f in files), "leftovers_removed": removed, "manifest_sha256": manifest}


def _copy_all(job: ArchiveJob, top: str, todo: list[Remote], batcher: Batcher, done: dict,
              listed: names.Listing) -> list[str]:
    """Copy in parallel; this thread records each finished file (the journal is its alone).
    A failed file is named by its place in the source listing."""
    errors = []
    with Pool(job.workers, lambda: Worker(job, top), name="archive") as workers:
        for f, future in workers.each(Worker.copy, todo):
            if future.cancelled():
                continue
            error = future.exception()
            if error is None:
                done[f.rel] = future.result()
                batcher.add(done[f.rel])
            else:  # reported as data, raised once at the end
                why = str(error) if isinstance(error, StepFailed) else type(error).__name__
                name = listed.name(f.rel)
                errors.append(f"{name}: {names.without(why, job.key(f.rel), 'its object')}")
    return errors


def _write_manifest(job: ArchiveJob, entries: list[dict]) -> str:
    """The whole archive's manifest; written again only when its content changed."""
    body = json.dumps({"host": job.host, "path": job.path,
                       "files": [{k: e[k] for k in ("path", "size", "sha256", "key", "mtime", "mode")} for e in entries]},
                      indent=1, sort_keys=True).encode()
    sha = hashlib.sha256(body).hexdigest()
    key = layout.manifest_key(job.prefix)
    if (cloud.head_metadata(job.s3, job.bucket, key) or {}).get("sha256") != sha:
        cloud.put_bytes(job.inv, job.s3, key, body, metadata={"sha256": sha})
    return sha
