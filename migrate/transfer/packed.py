"""The document archive in packs: many files per object, one stream per worker, each way.

Staging: the source host's program (`hostside.py`, run over one SSH exec channel per pack)
reads a group of files and writes them as one POSIX tar archive, hashing each file once while it
reads it; here the bytes go straight into an S3 upload (multipart past one part: memory is one
part per worker), hashed again as a whole. The pack's index (per file: offset, size, mtime,
mode, owner and group names, SHA-256) goes to the progress prefix and is journalled (counts and
hashes only: paths can name people), so a rerun packs only the files no recorded pack holds;
an unrecorded pack is a killed attempt's leftover and is deleted first.

The manifest lists every file with the pack and offset that hold it. A second staging of the
same archive (the warm wave's delta, inside the freeze) starts from the previous manifest and
packs only what is new or changed by size or mtime; what is gone from the source is left out.

Restoring: the target host is listed once, files of the same size hashed there in batches;
then every pack holding a file to write streams from the bucket into the host's program, which
writes the wanted files under hidden temporary names and gives them their names only after the
whole pack and each file match their SHA-256 (a flipped byte: nothing of the pack is written).
Before the first write, what will be written, the directories to make and the old versions to
set aside (a delta's changed and deleted files, moved into a trash directory under the target
path) are listed in an intent in the bucket and journalled: the undo reverses exactly that.

An error names a document by its manifest index and SHA-256, a file no manifest holds yet by its
place in the source listing, never by its path (migrate.model.document_names).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

from migrate.adapters import cloud, ssh
from migrate.config import Inventory
from migrate.errors import StepFailed
from migrate.model import document_names as names
from migrate.transfer.pool import Pool

PACK_RECORD = "archive_pack"
RESTORE_RECORD = "archive_restore_intent"
MANIFEST_SPOOL = 64 * 1024 * 1024
ATTEMPTS = 3          # a dropped SSH channel or connection: the pack is sent again on a new one
MAX_PACK_FILES = 20_000
HASH_GROUP = 5_000


class Dropped(StepFailed):
    """The host's program ended without its answer (the channel or the connection dropped)."""


class Session:
    """One SSH connection used by one thread for many packs; a task whose channel drops is tried
    again on a new connection (its pack is whole or not written at all, either way)."""

    def __init__(self, inv: Inventory, host: str):
        self.inv, self.host = inv, host
        self.stack = ExitStack()
        self.client = self.stack.enter_context(ssh.connect(inv, host))

    def close(self) -> None:
        self.stack.close()

    def retrying(self, fn, task):
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return fn(task)
            except (Dropped, *ssh.ERRORS) as exc:
                if attempt == ATTEMPTS:
                    raise Dropped(f"host {self.host}: {exc if isinstance(exc, Dropped) else type(exc).__name__}"
                                  f" ({ATTEMPTS} attempts)") from None
                self.close()
                self.stack = ExitStack()
                self.client = self.stack.enter_context(ssh.connect(self.inv, self.host))


# --- staging --------------------------------------------------------------------------------

@dataclass
class PackJob:
    inv: Inventory
    s3: object
    log: object              # TransferLog
    scope: str               # the records' scope: the system, or "<system>/delta"
    host: str
    path: str                # the archive's path as the spec gives it
    prefix: str              # <prefix>/packs/..., <prefix>/<manifest>
    progress_prefix: str     # the packs' indexes
    manifest: str            # the manifest's name under prefix
    workers: int
    pack_bytes: int
    part_bytes: int
    previous: list[dict] = field(default_factory=list)   # the last manifest's files (a delta)
    live: bool = False       # the source is not frozen: a file changing while read is left for the delta
    progress: Callable[[str, dict], None] = field(default=lambda kind, data: None)

    @property
    def bucket(self) -> str:
        return self.inv.spec.storage.bucket


def groups(files: list[dict], pack_bytes: int) -> list[list[dict]]:
    """Files in path order, cut into groups of about pack_bytes (a larger file alone)."""
    found, current, size = [], [], 0
    for f in sorted(files, key=lambda f: f["path"]):
        if current and (size + f["size"] > pack_bytes or len(current) >= MAX_PACK_FILES):
            found.append(current)
            current, size = [], 0
        current.append(f)
        size += f["size"]
    return found + ([current] if current else [])


def recorded_packs(job: PackJob) -> list[dict]:
    """The packs this step recorded, each with its index read back and checked."""
    packs = []
    for record in job.log.records_of(PACK_RECORD, job.scope):
        with cloud.fetch_verified(job.s3, job.bucket, record["index_key"], sha256=record["index_sha256"],
                                  size=record["index_bytes"], spool_bytes=MANIFEST_SPOOL) as f:
            packs.append({**record, "files": json.loads(f.read())["files"]})
    return packs


def changed(known: dict | None, f: dict) -> bool:
    return known is None or (known["size"], known["mtime_ns"]) != (f["size"], f["mtime_ns"])


class Packer(Session):
    """Packs from the source host, one exec channel each."""

    def __init__(self, job: PackJob, top: str):
        super().__init__(job.inv, job.host)
        self.job, self.top = job, top

    def pack(self, task: tuple[str, list[dict]]) -> dict:
        return self.retrying(self._pack, task)

    def _pack(self, task: tuple[str, list[dict]]) -> dict:
        key, files = task
        job = self.job
        run = ssh.Program(self.client, ssh.program_command(job.inv, job.host, "pack", self.top))
        run.send(json.dumps([f["path"] for f in files]).encode())
        run.end_input()
        index, failures = None, []
        with cloud.StreamUpload(job.inv, job.s3, key, part_size=job.part_bytes) as upload:
            while True:
                kind, body = run.read_frame()
                if kind == b"D":
                    upload.write(body)
                elif kind == b"X":
                    failures.append(json.loads(body))
                elif kind == b"E":
                    index = json.loads(body)
                else:
                    break
            status, err = run.finish()
            if index is None or status != 0:
                raise Dropped(f"packing documents failed ({ssh.last_error(err)})")
            stored = upload.close()
        if stored.size != index["size"]:
            raise StepFailed(f"pack {key}: {stored.size} bytes arrived, the host sent {index['size']}")
        return {"key": key, "size": stored.size, "sha256": stored.sha256, "version": stored.version,
                "files": [{**f, "pack": key} for f in index["files"]], "failures": failures}


def stage(job: PackJob) -> dict:
    top = ssh.host_path(ssh.host(job.inv, job.host), job.path)
    _, listing, _ = ssh.scan_program(job.inv, job.host, top)
    packs = recorded_packs(job)
    removed = _remove_leftovers(job, packs)
    known = {f["path"]: f for f in job.previous}
    known.update({f["path"]: f for p in packs for f in p["files"]})
    attempt = 1 + max((p["attempt"] for p in packs), default=0)
    todo = [f for f in listing if changed(known.get(f["path"]), f)]
    tasks = [(f"{job.prefix}/packs/{_scope_tag(job.scope)}-{attempt:03d}-{n:05d}.tar", g)
             for n, g in enumerate(groups(todo, job.pack_bytes), 1)]
    new = _pack_checked(job, top, tasks, attempt, {f["path"]: f["size"] for f in listing})
    for p in new:
        known.update({f["path"]: f for f in p["files"]})
    entries = _entries(job, listing, known)
    packed_now = {f["path"] for p in new for f in p["files"]}
    return {"files": len(entries), "packed": sum(e["path"] in packed_now for e in entries), "packs": len(new),
            "unchanged": sum(e["path"] not in packed_now for e in entries),
            "deleted": len({f["path"] for f in job.previous} - {f["path"] for f in listing}),
            "left_for_later": len(listing) - len(entries), "bytes": sum(e["size"] for e in entries),
            "leftovers_removed": removed, **write_manifest(job, entries, packs + new)}


def _pack_checked(job: PackJob, top: str, tasks: list, attempt: int, sizes: dict[str, int]) -> list[dict]:
    """`sizes`: the source listing, path -> size (a failed file is named by its place in it)."""
    errors, failures, new = _pack_all(job, top, tasks, attempt)
    if errors:
        raise StepFailed(f"{errors[0]}{f' (and {len(errors) - 1} more)' if len(errors) > 1 else ''}; a rerun"
                         " packs only the files no finished pack holds")
    if failures and not job.live:
        first = failures[0]
        raise StepFailed(f"{names.Listing(names.SOURCE, sizes).name(first['path'])}: {first['reason']} while it was"
                         f" packed ({len(failures)} in all); is the source frozen?")
    return new


def _entries(job: PackJob, listing: list[dict], known: dict[str, dict]) -> list[dict]:
    """The manifest's entries: every listed file whose staged version is the one listed. On a
    live source, a file changed since the listing waits for the next pass; frozen, it is an error."""
    listed = {f["path"]: f for f in listing}
    moved = sorted(p for p in listed if p in known and changed(known[p], listed[p]))
    if moved and not job.live:
        sizes = {p: f["size"] for p, f in listed.items()}
        raise StepFailed(f"{names.Listing(names.SOURCE, sizes).name(moved[0])}: changed while the archive was staged"
                         f" ({len(moved)} in all); is the source frozen?")
    return [known[p] for p in sorted(listed) if p in known and not changed(known[p], listed[p])]


def _scope_tag(scope: str) -> str:
    return "delta" if scope.endswith("/delta") else "base"


def _remove_leftovers(job: PackJob, packs: list[dict]) -> int:
    prefix = f"{job.prefix}/packs/{_scope_tag(job.scope)}-"
    cloud.abort_uploads(job.s3, job.bucket, prefix)
    return cloud.delete_unrecorded(job.s3, job.bucket, prefix, {p["key"] for p in packs})


def _pack_all(job: PackJob, top: str, tasks: list, attempt: int) -> tuple[list[str], list[dict], list[dict]]:
    """Pack in parallel; this thread records each finished pack (the journal is its alone)."""
    errors, failures, new = [], [], []
    with Pool(job.workers, lambda: Packer(job, top), name="pack") as workers:
        for (key, _), future in workers.each(Packer.pack, tasks):
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                errors.append(str(error) if isinstance(error, StepFailed) else f"pack {key}: {type(error).__name__}")
                continue
            pack = future.result()
            failures += pack.pop("failures")
            if not job.live and failures:
                continue  # not recorded: the rerun packs these files again
            new.append(_record_pack(job, pack, attempt))
    return errors, failures, new


def _record_pack(job: PackJob, pack: dict, attempt: int) -> dict:
    body = json.dumps({"key": pack["key"], "files": pack["files"]}, sort_keys=True).encode()
    index_key = f"{job.progress_prefix}/{posixpath.basename(pack['key'])}.json"
    stored = cloud.put_bytes(job.inv, job.s3, index_key, body)
    record = {"attempt": attempt, "key": pack["key"], "size": pack["size"], "sha256": pack["sha256"],
              "version": pack["version"], "files_count": len(pack["files"]),
              "bytes": sum(f["size"] for f in pack["files"]), "index_key": index_key,
              "index_sha256": stored.sha256, "index_bytes": stored.size}
    job.log.append(PACK_RECORD, job.scope, record)
    job.progress(PACK_RECORD, record)
    return {**record, "files": pack["files"]}


MANIFEST_FIELDS = ("path", "size", "mtime_ns", "mode", "uname", "gname", "sha256", "pack", "offset")


def write_manifest(job: PackJob, entries: list[dict], packs: list[dict]) -> dict:
    used = {e["pack"] for e in entries}
    body = json.dumps({"layout": "packed", "host": job.host, "path": job.path,
                       "packs": [{k: p[k] for k in ("key", "size", "sha256")} for p in packs if p["key"] in used],
                       "files": [{k: e[k] for k in MANIFEST_FIELDS} for e in entries]},
                      separators=(",", ":"), sort_keys=True).encode()
    key = f"{job.prefix}/{job.manifest}"
    stored = cloud.put_bytes(job.inv, job.s3, key, body, metadata={"sha256": hashlib.sha256(body).hexdigest()})
    return {"manifest_key": key, "manifest_sha256": stored.sha256, "manifest_bytes": stored.size}


def read_manifest(s3, bucket: str, key: str, sha256: str, size: int) -> dict:
    with cloud.fetch_verified(s3, bucket, key, sha256=sha256, size=size, spool_bytes=MANIFEST_SPOOL) as f:
        return json.loads(f.read())


# --- restoring ------------------------------------------------------------------------------

@dataclass
class RestoreJob:
    inv: Inventory
    s3: object
    log: object
    scope: str
    host: str                # the target application host
    path: str                # the target path as the spec gives it (messages)
    top: str                 # where it is on the host
    progress_prefix: str     # the intents
    tag: str                 # marks this step's temporaries and trash
    workers: int
    owners: dict[str, str] = field(default_factory=dict)   # source owner/group name -> target's

    @property
    def bucket(self) -> str:
        return self.inv.spec.storage.bucket

    @property
    def trash(self) -> str:
        return f".migrate-trash-{self.tag}"


@dataclass(frozen=True)
class Survey:
    todo: list[dict]
    present: int
    conflicts: list[str]
    dirs: list[str]
    set_aside: list[dict]     # {path, sha256}: old versions moved to the trash


def changed_paths(files: list[dict], previous: list[dict]) -> set[str]:
    """What a delta moves: paths new, changed or gone between the two manifests."""
    before = {f["path"]: f for f in previous}
    now = {f["path"] for f in files}
    return ({f["path"] for f in files if _entry(before.get(f["path"])) != _entry(f)}
            | {p for p in before if p not in now})


def _entry(f: dict | None) -> tuple | None:
    return None if f is None else (f["size"], f["mtime_ns"], f["sha256"], f["mode"])


def survey(job: RestoreJob, files: list[dict], previous: list[dict]) -> Survey:
    return survey_delta(job, files, previous) if previous else survey_all(job, files)


def survey_delta(job: RestoreJob, files: list[dict], previous: list[dict]) -> Survey:
    """A delta looks only at what changed between the manifests (the rest is as the first pass
    left it: the verification that follows hashes every file on the host)."""
    moved = changed_paths(files, previous)
    before, now = {f["path"]: f for f in previous}, {f["path"]: f for f in files}
    hashes = host_hashes(job, sorted(moved))
    todo, conflicts, set_aside = [], [], []
    for path in sorted(moved):
        new, old, there = now.get(path), before.get(path), hashes.get(path)
        if new is not None and there == new["sha256"]:
            continue
        if there is not None and old is not None and there == old["sha256"]:
            set_aside.append({"path": path, "sha256": old["sha256"]})
        elif there is not None:  # a third version on the target: never replaced (a deleted one stays)
            if new is not None:
                conflicts.append(path)
            continue
        if new is not None:
            todo.append(new)
    candidates = sorted({d for f in todo for d in _ancestors(f["path"])})
    existing = set(ssh.call_program(job.inv, job.host, "exists", job.top, work=candidates)) if candidates else set()
    return Survey(todo, len(files) - len(todo), conflicts, _missing_dirs(todo, existing), set_aside)


def _ancestors(path: str) -> list[str]:
    found, d = [], posixpath.dirname(path)
    while d:
        found.append(d)
        d = posixpath.dirname(d)
    return found


def survey_all(job: RestoreJob, files: list[dict]) -> Survey:
    _, there, dirs = ssh.scan_program(job.inv, job.host, job.top)
    on_host = {f["path"]: f for f in there}
    same_size = [f for f in files if f["path"] in on_host and on_host[f["path"]]["size"] == f["size"]]
    hashes = host_hashes(job, [f["path"] for f in same_size])
    todo, conflicts, present = [], [], 0
    for f in files:
        if f["path"] not in on_host:
            todo.append(f)
        elif hashes.get(f["path"]) == f["sha256"]:
            present += 1
        else:
            conflicts.append(f["path"])
    return Survey(todo, present, sorted(conflicts), _missing_dirs(todo, set(dirs)), [])


def host_hashes(job: RestoreJob, rels: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    unique = sorted(set(rels))
    with ssh.connect(job.inv, job.host) as client:
        for i in range(0, len(unique), HASH_GROUP):
            found.update(ssh.call_program(job.inv, job.host, "hash", job.top, work=unique[i:i + HASH_GROUP],
                                          client=client))
    return found


def _missing_dirs(todo: list[dict], existing: set[str]) -> list[str]:
    missing: set[str] = set()
    for f in todo:
        d = posixpath.dirname(f["path"])
        while d and d not in existing and d not in missing:
            missing.add(d)
            d = posixpath.dirname(d)
    return sorted(missing, key=lambda d: (d.count("/"), d))


def record_intent(job: RestoreJob, found: Survey) -> dict:
    attempt = len(job.log.records_of(RESTORE_RECORD, job.scope)) + 1
    body = json.dumps({"host": job.host, "path": job.path, "dirs": found.dirs, "trash": found.set_aside,
                       "files": [{k: f[k] for k in ("path", "size", "mtime_ns", "sha256")} for f in found.todo]},
                      sort_keys=True).encode()
    key = f"{job.progress_prefix}/intent-{attempt:04d}.json"
    stored = cloud.put_bytes(job.inv, job.s3, key, body)
    record = {"attempt": attempt, "key": key, "files": len(found.todo), "dirs": len(found.dirs),
              "set_aside": len(found.set_aside), "bytes": sum(f["size"] for f in found.todo),
              "bytes_json": stored.size, "sha256": stored.sha256, "layout": "packed"}
    job.log.append(RESTORE_RECORD, job.scope, record)
    return record


class Writer(Session):
    """Packs into the target host, one exec channel each."""

    def __init__(self, job: RestoreJob):
        super().__init__(job.inv, job.host)
        self.job = job

    def restore(self, task: tuple[dict, list[dict]]) -> dict:
        return self.retrying(self._restore, task)

    def _restore(self, task: tuple[dict, list[dict]]) -> dict:
        pack, files = task
        job = self.job
        run = ssh.Program(self.client, ssh.program_command(job.inv, job.host, "restore", job.top, job.tag))
        wanted = [{**{k: f[k] for k in ("path", "size", "mtime_ns", "mode", "sha256", "offset")},
                   "uname": job.owners.get(f["uname"], f["uname"]), "gname": job.owners.get(f["gname"], f["gname"])}
                  for f in files]
        digest, size = hashlib.sha256(), 0
        try:
            run.send_frame(b"P", json.dumps({"key": pack["key"], "files": wanted}).encode())
            for block in cloud.iter_object(job.s3, job.bucket, pack["key"]):
                digest.update(block)
                size += len(block)
                run.send_frame(b"D", block)
            # The host checks the pack against the manifest's SHA-256, and so do we.
            run.send_frame(b"C", json.dumps({"sha256": pack["sha256"]}).encode())
            run.end_input()
        except ssh.ERRORS:
            pass  # the host stopped reading: its answer says why
        answer = run.read_line()
        status, err = run.finish()
        if not answer:
            raise Dropped(f"restoring pack {pack['key']} failed ({ssh.last_error(err)})")
        result = json.loads(answer)
        if digest.hexdigest() != pack["sha256"] or size != pack["size"]:
            raise StepFailed(f"staged pack s3://{job.bucket}/{pack['key']}: SHA-256 {digest.hexdigest()[:16]}…"
                             f" ({size} bytes) differs from the manifest's {pack['sha256'][:16]}…; refused, none of"
                             " its files was written")
        if not result["ok"]:
            raise StepFailed(f"{job.host}:{job.path}: pack {pack['key']} refused: {result['error']}; none of its"
                             " files was written")
        return result


def restore(job: RestoreJob, manifest: dict, previous: list[dict]) -> dict:
    files = manifest["files"]
    found = survey(job, files, previous)
    if found.conflicts:
        raise StepFailed(f"{len(found.conflicts)} document(s) at {job.host}:{job.path} differ from the staged ones"
                         f" (first: {names.in_manifest(files, found.conflicts[0])}); a restore never replaces a file"
                         " it did not write: move them away, then run again")
    if found.todo or found.set_aside:
        record_intent(job, found)  # before the first directory, file or move
    if found.set_aside:
        ssh.call_program(job.inv, job.host, "trash", job.top, job.trash, work=found.set_aside)
    if found.dirs:
        ssh.call_program(job.inv, job.host, "mkdirs", job.top, work=found.dirs)
    packs = {p["key"]: p for p in manifest["packs"]}
    by_pack: dict[str, list[dict]] = {}
    for f in found.todo:
        by_pack.setdefault(f["pack"], []).append(f)
    tasks = sorted(((packs[k], fs) for k, fs in by_pack.items()), key=lambda t: -t[0]["size"])
    errors, written = _write_all(job, tasks)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StepFailed(f"{errors[0]}{more}; {sum(r['written'] for r in written)} of {len(found.todo)} documents"
                         " restored: a rerun continues from there")
    return {"files": len(files), "written": sum(r["written"] for r in written), "skipped_present": found.present,
            "bytes_written": sum(r["bytes"] for r in written), "dirs_created": len(found.dirs),
            "set_aside": len(found.set_aside), "packs_read": len(tasks)}


def _write_all(job: RestoreJob, tasks: list) -> tuple[list[str], list[dict]]:
    errors, written = [], []
    with Pool(job.workers, lambda: Writer(job), name="restore") as writers:
        for (pack, _), future in writers.each(Writer.restore, tasks):
            if future.cancelled():
                continue
            error = future.exception()
            if error is None:
                written.append(future.result())
            else:
                errors.append(str(error) if isinstance(error, StepFailed)
                              else f"pack {pack['key']}: {type(error).__name__}")
    return errors, written


def temp_prefix(tag: str) -> str:
    return f".migrate-{tag}-"


def remove_leftovers(job: RestoreJob, paths: set[str] | None = None) -> int:
    """A killed attempt's temporaries: beside the given paths only (a delta's), or anywhere."""
    dirs = sorted({posixpath.dirname(p) for p in paths}) if paths else []
    if paths is not None and not paths:
        return 0
    return ssh.call_program(job.inv, job.host, "clean", job.top, temp_prefix(job.tag), work=dirs)["removed"]


def intents(job: RestoreJob) -> list[dict]:
    found = []
    for record in job.log.records_of(RESTORE_RECORD, job.scope):
        with cloud.fetch_verified(job.s3, job.bucket, record["key"], sha256=record["sha256"],
                                  size=record["bytes_json"], spool_bytes=MANIFEST_SPOOL) as f:
            found.append(json.loads(f.read()))
    return found


def undo(job: RestoreJob) -> dict:
    """Remove what this step wrote (while it has the size and mtime it was given), put back what
    it set aside, remove the directories it made once empty, and its temporaries."""
    recorded = intents(job)
    removed = kept = back = dirs = 0
    for intent in reversed(recorded):
        done = ssh.call_program(job.inv, job.host, "remove", job.top, work={"files": intent["files"]})
        removed, kept = removed + done["removed"], kept + done["kept_changed"]
        if intent.get("trash"):
            back += ssh.call_program(job.inv, job.host, "untrash", job.top, job.trash, work=intent["trash"])["moved"]
    leftovers = remove_leftovers(job) if recorded else 0
    all_dirs = sorted({d for i in recorded for d in i["dirs"]} | _trash_dirs(job, recorded), key=lambda d: -d.count("/"))
    if all_dirs:
        dirs = ssh.call_program(job.inv, job.host, "remove", job.top, work={"dirs": all_dirs})["dirs_removed"]
    return {"removed": removed, "kept_changed": kept, "put_back": back, "dirs_removed": dirs,
            "leftovers_removed": leftovers}


def _trash_dirs(job: RestoreJob, recorded: list[dict]) -> set[str]:
    """The trash directory and every directory inside it that a move made."""
    found = set()
    for intent in recorded:
        for item in intent.get("trash", []):
            d = posixpath.dirname(item["path"])
            while d:
                found.add(posixpath.join(job.trash, d))
                d = posixpath.dirname(d)
            found.add(job.trash)
    return found


def purge_set_aside(job: RestoreJob) -> dict:
    """Finalize: the old versions a delta set aside are no longer needed to roll back."""
    return ssh.call_program(job.inv, job.host, "purge", job.top, job.trash)
