"""The document archive back onto a host: from the bucket over SFTP onto the target application
host, with the checks of staging.

The staged manifest (its SHA-256 is the one the staging step journaled) says what to restore.
Each object streams from the bucket into a temporary file beside its final path, hashed on the
way; only when its size and SHA-256 match the manifest does it get its mode and mtime (from the
object's metadata, which must agree with the manifest) and its name, by a rename that never
replaces an existing file. A corrupted object is refused with no byte at its final path.

Before the first write, the files about to be written and the directories about to be created
are listed in an intent manifest in the bucket and journaled (count and SHA-256; paths stay out
of the journal, they can name people): the rollback removes exactly those (a file only while it
still has the size and mtime written), never a file that was there before. A file already at
its place with the manifest's size and SHA-256 is skipped, so a rerun writes only what is
missing; a different file in the way stops the restore before anything is written.

An error names a document by its manifest index and SHA-256, never by its path or its object's
key (which holds the path): see migrate.model.document_names.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import stat
from contextlib import contextmanager
from dataclasses import dataclass

from migrate.adapters import cloud, ssh
from migrate.config import Inventory
from migrate.errors import StepFailed
from migrate.model import document_names as names
from migrate.model import layout
from migrate.transfer.log import RESTORE_INTENT, TransferLog
from migrate.transfer.pool import Pool

DIR_MODE = 0o750          # the manifest has no directory modes; documents are personal data
MANIFEST_SPOOL = 64 * 1024 * 1024


@dataclass
class RestoreJob:
    inv: Inventory
    s3: object
    log: TransferLog
    scope: str               # the system: the records' scope
    host: str                # the target application host
    path: str                # the target path as the spec gives it (for messages)
    top: str                 # where that path is on the host (ssh.host_path)
    prefix: str              # the staged archive: <prefix>/manifest.json, <prefix>/files/...
    progress_prefix: str     # where the intent manifests go
    tag: str                 # marks this step's temporary files
    workers: int
    manifest_sha256: str | None = None   # as the staging step journaled it

    @property
    def bucket(self) -> str:
        return self.inv.spec.storage.bucket

    def final(self, rel: str) -> str:
        return posixpath.join(self.top, rel)

    def temporary(self, rel: str) -> str:
        # Fixed length (a long name plus a suffix could pass NAME_MAX), hidden, and ours by its prefix.
        return posixpath.join(posixpath.dirname(self.final(rel)), f"{temp_prefix(self.tag)}{_digest(rel)[:16]}")


def temp_prefix(tag: str) -> str:
    return f".migrate-{tag}-"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tag_for(run_id: str, step: str) -> str:
    return _digest(f"{run_id} {step}")[:12]


# --- what to restore, and what is there already ---------------------------------------------

def read_manifest(job: RestoreJob) -> list[dict]:
    """The staged archive's manifest, checked against the SHA-256 the staging step recorded;
    each entry with its "index" there (what messages name it by)."""
    key = layout.manifest_key(job.prefix)
    expected = job.manifest_sha256
    if expected is None:
        raise StepFailed(f"s3://{job.bucket}/{key}: no SHA-256 for it in this run's journal; stage the archive first")
    size = cloud.object_size(job.s3, job.bucket, key)
    with cloud.fetch_verified(job.s3, job.bucket, key, sha256=expected, size=size, spool_bytes=MANIFEST_SPOOL) as f:
        return [{**e, "index": i} for i, e in enumerate(json.loads(f.read())["files"])]


@contextmanager
def host_errors(job: RestoreJob, doing: str):
    """An SFTP or SSH failure as a step failure naming the host and the target path (the
    server's message may name a file: only its kind and errno are kept)."""
    try:
        yield
    except ssh.ERRORS as exc:
        code = f" errno {exc.errno}" if getattr(exc, "errno", None) else ""
        raise StepFailed(f"{job.host}:{job.path}: {doing} failed ({type(exc).__name__}{code})") from None


@dataclass(frozen=True)
class Survey:
    todo: list[dict]          # manifest entries to write
    present: int              # already there with the right size and SHA-256
    conflicts: list[str]      # a different file at the place of one of ours
    dirs: list[str]           # directories to create (absolute on the host), parents first


def survey(job: RestoreJob, client, sftp, files: list[dict]) -> Survey:
    todo, same_size, conflicts = [], [], []
    for entry in files:
        attrs = ssh.stat(sftp, job.final(entry["path"]))
        if attrs is None:
            todo.append(entry)
        elif not stat.S_ISREG(attrs.st_mode or 0) or attrs.st_size != entry["size"]:
            conflicts.append(entry["path"])
        else:
            same_size.append(entry)
    hashes = ssh.remote_hashes(client, job.top, [e["path"] for e in same_size]) if same_size else {}
    if hashes is None:
        raise StepFailed(f"{job.top}: the target host could not hash the files already there")
    differ = [e["path"] for e in same_size if hashes.get(e["path"]) != e["sha256"]]
    return Survey(todo, len(same_size) - len(differ), sorted(conflicts + differ), _missing_dirs(job, sftp, todo))


def _missing_dirs(job: RestoreJob, sftp, todo: list[dict]) -> list[str]:
    wanted = {posixpath.dirname(job.final(e["path"])) for e in todo}
    missing: set[str] = set()
    for d in wanted:
        while d not in missing and d != "/" and ssh.stat(sftp, d) is None:
            missing.add(d)
            d = posixpath.dirname(d)
    return sorted(missing, key=lambda d: (d.count("/"), d))


# --- the intent: written down before the first write ----------------------------------------

def record_intent(job: RestoreJob, found: Survey) -> dict:
    attempt = len(job.log.restore_intents(job.scope)) + 1
    body = json.dumps({"host": job.host, "path": job.path, "dirs": found.dirs,
                       "files": [{k: e[k] for k in ("path", "size", "mtime", "sha256")} for e in found.todo]},
                      sort_keys=True).encode()
    key = f"{job.progress_prefix}/intent-{attempt:04d}.json"
    stored = cloud.put_bytes(job.inv, job.s3, key, body)
    record = {"attempt": attempt, "key": key, "files": len(found.todo), "dirs": len(found.dirs),
              "bytes": sum(e["size"] for e in found.todo), "bytes_json": stored.size, "sha256": stored.sha256}
    job.log.append(RESTORE_INTENT, job.scope, record)
    return record


def intents(job: RestoreJob) -> list[dict]:
    """Every intent this run journaled for this archive, each checked against its SHA-256."""
    found = []
    for record in job.log.restore_intents(job.scope):
        with cloud.fetch_verified(job.s3, job.bucket, record["key"], sha256=record["sha256"],
                                  size=record["bytes_json"], spool_bytes=MANIFEST_SPOOL) as f:
            found.append(json.loads(f.read()))
    return found


# --- writing one file -----------------------------------------------------------------------

class Writer:
    """One SSH connection and SFTP session to the target host, used by one thread."""

    def __init__(self, job: RestoreJob):
        self.job = job
        self.session = ssh.BulkSession(job.inv, job.host)
        self.client, self.sftp = self.session.client, self.session.sftp

    def close(self) -> None:
        self.session.close()

    def restore(self, entry: dict) -> int:
        job, key = self.job, entry["key"]
        mode, mtime = _checked_metadata(job, entry)
        temp = job.temporary(entry["path"])
        try:
            sha, size = self._write(temp, key)
            if sha != entry["sha256"] or size != entry["size"]:
                raise StepFailed(f"its staged object has SHA-256 {sha[:16]}… ({size} bytes), not the manifest's"
                                 f" ({entry['size']} bytes); refusing to restore it")
            ssh.publish(self.sftp, temp, job.final(entry["path"]), mode=mode, mtime=mtime)  # never replaces a file
        except BaseException:
            ssh.remove(self.sftp, temp)
            raise
        return size

    def _write(self, temp: str, key: str) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0

        def hashed():
            nonlocal size
            for block in cloud.iter_object(self.job.s3, self.job.bucket, key):
                digest.update(block)
                size += len(block)
                yield block
        ssh.write_private(self.sftp, temp, hashed())
        return digest.hexdigest(), size


def _checked_metadata(job: RestoreJob, entry: dict) -> tuple[int, int]:
    """Mode and mtime from the object's metadata, which must say what the manifest says."""
    meta = cloud.head_metadata(job.s3, job.bucket, entry["key"]) or {}
    agrees = (meta.get("sha256") == entry["sha256"] and meta.get("size") == str(entry["size"])
              and meta.get("mtime") == str(entry["mtime"]) and meta.get("mode") == entry["mode"])
    if not agrees:
        raise StepFailed("its staged object's metadata disagrees with the manifest; refusing to restore it")
    return int(meta["mode"], 8), int(meta["mtime"])


# --- the whole restore ----------------------------------------------------------------------

def restore_archive(job: RestoreJob) -> dict:
    files = read_manifest(job)
    with host_errors(job, "preparing the restore"), ssh.sftp_session(job.inv, job.host) as (client, sftp):
        found = survey(job, client, sftp, files)
        if found.conflicts:
            raise StepFailed(f"{len(found.conflicts)} document(s) at {job.host}:{job.path} differ from the staged ones"
                             f" (first: {names.in_manifest(files, found.conflicts[0])}); a restore never replaces a"
                             " file it did not write: move them away, then run again")
        if found.todo:
            record_intent(job, found)  # before the first directory or file exists
        for d in found.dirs:
            ssh.mkdir(sftp, d, DIR_MODE)
    errors, written = _write_all(job, found.todo)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StepFailed(f"{errors[0]}{more}; {len(written)} of {len(found.todo)} documents restored: a rerun"
                         " continues from there")
    return {"files": len(files), "written": len(written), "skipped_present": found.present,
            "bytes_written": sum(written), "dirs_created": len(found.dirs)}


def _write_all(job: RestoreJob, todo: list[dict]) -> tuple[list[str], list[int]]:
    errors, written = [], []
    with Pool(job.workers, lambda: Writer(job), name="restore") as writers:
        for entry, future in writers.each(Writer.restore, sorted(todo, key=lambda e: -e["size"])):
            if future.cancelled():
                continue
            error = future.exception()
            if error is None:
                written.append(future.result())
            else:  # reported as data, raised once at the end
                name = names.document(entry["index"], entry["sha256"])
                why = str(error) if isinstance(error, StepFailed) else type(error).__name__
                errors.append(f"{name}: {names.without(why, entry['key'], 'its staged object')}")
    return errors, written


# --- undoing it -----------------------------------------------------------------------------

def remove_leftovers(job: RestoreJob) -> int:
    """Temporary files of this step (a killed or failed attempt): never a document's final name."""
    prefix = temp_prefix(job.tag)
    with host_errors(job, "removing temporary files"), ssh.sftp_session(job.inv, job.host) as (_, sftp):
        if ssh.stat(sftp, job.top) is None:
            return 0
        doomed = [rel for rel, _ in ssh.walk(sftp, job.top) if posixpath.basename(rel).startswith(prefix)]
        return sum(ssh.remove(sftp, job.final(rel)) for rel in doomed)


def remove_restored(job: RestoreJob) -> dict:
    """Every file this run's restore wrote that still has the size and mtime it was given, and
    every directory it created that is empty again; temporary leftovers too."""
    removed = kept = dirs = 0
    recorded = intents(job)
    with host_errors(job, "removing restored files"), ssh.sftp_session(job.inv, job.host) as (_, sftp):
        for intent in recorded:
            for entry in intent["files"]:
                attrs = ssh.stat(sftp, job.final(entry["path"]))
                if attrs is None:
                    continue
                if attrs.st_size == entry["size"] and int(attrs.st_mtime) == entry["mtime"]:
                    removed += ssh.remove(sftp, job.final(entry["path"]))
                else:
                    kept += 1  # changed since: someone else's now
    leftovers = remove_leftovers(job)
    with host_errors(job, "removing directories"), ssh.sftp_session(job.inv, job.host) as (_, sftp):
        for d in sorted({d for i in recorded for d in i["dirs"]}, key=lambda d: -d.count("/")):
            dirs += ssh.rmdir(sftp, d)
    return {"removed": removed, "kept_changed": kept, "dirs_removed": dirs, "leftovers_removed": leftovers}
