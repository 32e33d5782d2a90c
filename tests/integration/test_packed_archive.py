"""The packed document archive on the real lab, against both S3 implementations (moto and
`rclone serve s3`): the source host's program packs the archive over SSH into tar packs, the
target host's program restores them; an independent walk of both trees then compares path, size,
SHA-256, mode and mtime to the nanosecond.

Also: a re-sync after adding, changing and deleting files moves exactly those (and its undo puts
back what it set aside); kill -9 mid-pack and mid-restore, then a rerun: no file missing, none
twice, no temporary left; a flipped byte in a staged pack refused before any file of it has its
name; a channel dropped mid-stream tried again."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from migrate import config
from migrate.adapters import cloud
from migrate.engine.journal import Journal
from migrate.errors import StepFailed
from migrate.transfer import packed
from migrate.transfer.log import TransferLog
from tests.integration import lab_support as lab
from tests.integration.test_copy import endpoint  # noqa: F401  (moto and rclone serve s3)

pytestmark = pytest.mark.integration

ARCHIVE = "/srv/personale/documents"
TARGET = "/srv/personale/documents"


def source_root() -> Path:
    return lab.host_root("src-app") / ARCHIVE.lstrip("/")


def target_root() -> Path:
    return lab.host_root("tgt-app") / TARGET.lstrip("/")


def files_of(root: Path) -> dict[str, tuple]:
    """path -> (size, SHA-256, mode, mtime in ns) of every file under root, our trash left out."""
    found = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and not rel.startswith(".migrate-trash-"):
            st = p.stat()
            found[rel] = (st.st_size, hashlib.sha256(p.read_bytes()).hexdigest(), oct(st.st_mode & 0o7777),
                          st.st_mtime_ns)
    return found


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".migrate-") and p.is_file()
            and ".migrate-trash-" not in str(p)]


@pytest.fixture
def archive(clean_lab, endpoint):  # noqa: F811
    """The lab's archive plus a file over one part (a multipart pack), an empty file, a private
    one with an old mtime, and names that need quoting; the target path emptied."""
    extra = source_root() / "zz-packed" / "sub dir"
    extra.mkdir(parents=True)
    (extra / "big scan.tiff").write_bytes(os.urandom(7 * 1024 * 1024))
    (extra / "vuoto.pdf").write_bytes(b"")
    private = extra / "D'Angelo Nicolò – idoneità.pdf"
    private.write_bytes(b"%PDF-1.4 " + os.urandom(3000))
    private.chmod(0o600)
    os.utime(private, ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    shutil.rmtree(target_root(), ignore_errors=True)
    target_root().mkdir(parents=True)
    inv = config.load(lab.INVENTORY)
    storage = inv.spec.storage.model_copy(update={"endpoint_url": endpoint[1]})
    inv = dataclasses.replace(inv, spec=inv.spec.model_copy(update={"storage": storage}))
    cloud.delete_prefix(cloud.client(inv), inv.spec.storage.bucket, "")
    yield inv
    shutil.rmtree(source_root() / "zz-packed", ignore_errors=True)


def pack_job(inv, journal: Path, *, delta: bool = False, previous=(), pack_mb: float = 1) -> packed.PackJob:
    scope = "personnel/delta" if delta else "personnel"
    log = TransferLog(Journal(journal), "run-packed", "wave-test", "personnel/stage-archive")
    return packed.PackJob(inv=inv, s3=cloud.client(inv, pool=8), log=log, scope=scope, host="src-app", path=ARCHIVE,
                          prefix="test/docs/personnel", progress_prefix="test/progress/" + scope,
                          manifest="manifest-delta.json" if delta else "manifest.json", workers=2,
                          pack_bytes=int(pack_mb * 1024 * 1024), part_bytes=cloud.MIN_PART, previous=list(previous))


def restore_job(inv, journal: Path, *, delta: bool = False, workers: int = 2) -> packed.RestoreJob:
    scope = "personnel/delta" if delta else "personnel"
    log = TransferLog(Journal(journal), "run-packed", "wave-test", "personnel/restore-archive")
    return packed.RestoreJob(inv=inv, s3=cloud.client(inv, pool=8), log=log, scope=scope, host="tgt-app",
                             path=TARGET, top=str(target_root()), progress_prefix="test/restore/" + scope,
                             tag="t" + ("delta" if delta else "base"), workers=workers)


def manifest_of(job: packed.PackJob, result: dict) -> dict:
    return packed.read_manifest(job.s3, job.bucket, result["manifest_key"], result["manifest_sha256"],
                                result["manifest_bytes"])


def test_packed_stage_and_restore_give_the_same_tree_then_a_resync_moves_only_changes(archive, tmp_path):
    inv, journal = archive, tmp_path / "journal.sqlite"
    source = files_of(source_root())
    job = pack_job(inv, journal)
    staged = packed.stage(job)
    assert staged["files"] == len(source) and staged["packed"] == len(source) and staged["packs"] >= 3

    # The bucket holds packs and the manifest, not one object per document; each pack is a tar.
    keys = cloud.list_keys(job.s3, job.bucket, "test/docs/")
    assert keys == {p["key"] for p in manifest_of(job, staged)["packs"]} | {staged["manifest_key"]}
    manifest = manifest_of(job, staged)
    for p in manifest["packs"]:
        body = b"".join(cloud.iter_object(job.s3, job.bucket, p["key"]))
        assert hashlib.sha256(body).hexdigest() == p["sha256"]
        names = tarfile.open(fileobj=io.BytesIO(body)).getnames()
        assert names == [f["path"] for f in manifest["files"] if f["pack"] == p["key"]]
    assert {f["path"]: (f["size"], f["sha256"], oct(f["mode"]), f["mtime_ns"]) for f in manifest["files"]} == source

    restored = packed.restore(restore_job(inv, journal), manifest, [])
    assert restored["written"] == len(source) and restored["skipped_present"] == 0
    assert files_of(target_root()) == source, "path, size, SHA-256, mode and mtime to the ns"
    assert temporaries(target_root()) == []

    # Nothing changed: nothing packed, nothing written.
    again = packed.stage(pack_job(inv, journal, delta=True, previous=manifest["files"]))
    assert again["packed"] == 0 and again["deleted"] == 0 and again["files"] == len(source)

    # Add one, change one, delete one: exactly those move.
    added = source_root() / "zz-packed" / "nuovo atto.pdf"
    added.write_bytes(b"%PDF-1.4 new")
    changed = source_root() / "zz-packed" / "sub dir" / "D'Angelo Nicolò – idoneità.pdf"
    changed.write_bytes(b"%PDF-1.4 changed " + os.urandom(100))
    (source_root() / "zz-packed" / "sub dir" / "vuoto.pdf").unlink()
    delta_job = pack_job(inv, tmp_path / "delta.sqlite", delta=True, previous=manifest["files"])
    delta = packed.stage(delta_job)
    assert (delta["packed"], delta["deleted"], delta["packs"]) == (2, 1, 1)
    new_manifest = manifest_of(delta_job, delta)
    undo_job = restore_job(inv, tmp_path / "delta.sqlite", delta=True)
    moved = packed.restore(undo_job, new_manifest, manifest["files"])
    assert (moved["written"], moved["set_aside"], moved["skipped_present"]) == (2, 2, len(source) - 2)
    assert files_of(target_root()) == files_of(source_root())

    # The delta's undo puts the first pass's versions back exactly.
    packed.undo(undo_job)
    assert files_of(target_root()) == source
    assert not (target_root() / ".migrate-trash-tdelta").exists()

    # And the first pass's undo leaves the target path as it was: empty.
    packed.undo(restore_job(inv, journal))
    assert list(target_root().rglob("*")) == []


def test_a_flipped_byte_in_a_pack_is_refused_before_any_file_of_it_is_written(archive, tmp_path):
    inv, journal = archive, tmp_path / "journal.sqlite"
    job = pack_job(inv, journal)
    manifest = manifest_of(job, packed.stage(job))
    victim = next(p for p in manifest["packs"] if any(f["path"].endswith("idoneità.pdf") and f["pack"] == p["key"]
                                                      for f in manifest["files"]))
    body = bytearray(b"".join(cloud.iter_object(job.s3, job.bucket, victim["key"])))
    body[len(body) // 3] ^= 0x01
    job.s3.put_object(Bucket=job.bucket, Key=victim["key"], Body=bytes(body))
    with pytest.raises(StepFailed, match=f"staged pack s3://{job.bucket}/{victim['key']}: SHA-256 .* refused, none"
                                         " of its files was written"):
        packed.restore(restore_job(inv, journal, workers=1), manifest, [])
    in_victim = [f["path"] for f in manifest["files"] if f["pack"] == victim["key"]]
    assert in_victim and not any((target_root() / p).exists() for p in in_victim)
    assert temporaries(target_root()) == []


# --- kill -9, then a rerun ------------------------------------------------------------------

def child(kind: str, journal: str, url: str) -> None:
    """A slow pack or restore in a child process, one JSON line per finished pack, to be killed."""
    inv = config.load(lab.INVENTORY)
    storage = inv.spec.storage.model_copy(update={"endpoint_url": url})
    inv = dataclasses.replace(inv, spec=inv.spec.model_copy(update={"storage": storage}))
    if kind == "pack":
        slow_down(packed.Packer, "pack")
        packed.stage(pack_job(inv, Path(journal), pack_mb=0.05))
    else:
        slow_down(packed.Writer, "restore")
        job = pack_job(inv, Path(journal))
        manifest = manifest_of(job, job.log.journal.records(run_id="run-packed")[-1].data["result"])
        packed.restore(restore_job(inv, Path(journal)), manifest, [])


def slow_down(cls, method: str) -> None:
    """Each finished pack printed as one JSON line, then a pause: time for the test to kill."""
    real, lock = getattr(cls, method), threading.Lock()

    def slowly(self, task):
        found = real(self, task)
        with lock:  # two worker threads: one whole line at a time
            print(json.dumps({"event": method}), flush=True)
        time.sleep(0.3)
        return found
    setattr(cls, method, slowly)


def kill_at(kind: str, journal: Path, url: str, count: int) -> None:
    code = "import sys; from tests.integration import test_packed_archive as t; t.child(*sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, kind, str(journal), url], cwd=lab.ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = 0
    for _ in proc.stdout:
        seen += 1
        if seen == count:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]


def test_killed_packing_and_killed_restore_resume_with_nothing_missing_or_twice(archive, endpoint, tmp_path):  # noqa: F811
    inv, journal = archive, tmp_path / "journal.sqlite"
    source = files_of(source_root())
    kill_at("pack", journal, endpoint[1], 3)
    job = pack_job(inv, journal, pack_mb=0.05)
    before = job.log.records_of(packed.PACK_RECORD, "personnel")
    staged = packed.stage(job)
    assert before and staged["packed"] == len(source) - sum(r["files_count"] for r in before), \
        "the rerun packed only the files no recorded pack holds"
    manifest = manifest_of(job, staged)
    paths = [f["path"] for f in manifest["files"]]
    assert sorted(paths) == sorted(source) and len(set(paths)) == len(paths), "every file once"
    assert cloud.list_keys(job.s3, job.bucket, "test/docs/personnel/packs/") == {p["key"] for p in manifest["packs"]}
    assert cloud.incomplete_uploads(job.s3, job.bucket, "") == []

    # The child finds the manifest through the journal: record it as the step would.
    job.log.journal.append("run-packed", "wave-test", "effect_done", {"result": staged}, step="personnel/stage-archive")
    kill_at("restore", journal, endpoint[1], 2)
    assert temporaries(target_root()) or len(files_of(target_root())) < len(source), "killed mid-restore"
    rerun = restore_job(inv, journal)
    packed.remove_leftovers(rerun)
    done = packed.restore(rerun, manifest, [])
    assert done["skipped_present"] > 0 and done["written"] + done["skipped_present"] == len(source)
    assert files_of(target_root()) == source and temporaries(target_root()) == []

    # Both attempts' intents are undone: the target path is empty again.
    packed.undo(restore_job(inv, journal))
    assert list(target_root().rglob("*")) == []


def test_a_channel_dropped_mid_stream_is_tried_again(archive, tmp_path, monkeypatch):
    inv, journal = archive, tmp_path / "journal.sqlite"
    job = pack_job(inv, journal)
    manifest = manifest_of(job, packed.stage(job))
    real, dropped = packed.ssh.Program.send_frame, []

    def drop_once(self, kind, body):
        if kind == b"D" and not dropped:
            dropped.append(True)
            self.channel.close()  # the channel goes away under the stream
        return real(self, kind, body)
    monkeypatch.setattr(packed.ssh.Program, "send_frame", drop_once)
    done = packed.restore(restore_job(inv, journal, workers=1), manifest, [])
    assert dropped and done["written"] == len(manifest["files"])
    assert files_of(target_root()) == files_of(source_root()) and temporaries(target_root()) == []


def test_verification_by_manifest_names_a_missing_an_extra_and_an_altered_file(archive, tmp_path):
    from migrate.verify import documents, probes

    inv, journal = archive, tmp_path / "journal.sqlite"
    job = pack_job(inv, journal)
    manifest = manifest_of(job, packed.stage(job))
    packed.restore(restore_job(inv, journal), manifest, [])
    objects = cloud.object_sizes(job.s3, job.bucket, "test/docs/personnel/")
    hashes = probes.objects_sha256(job.s3, job.bucket, [p["key"] for p in manifest["packs"]])
    on_source = probes.archive_scan(inv, "src-app", ARCHIVE, with_hash=True)
    assert documents.compare_packed("personnel", manifest, objects, hashes, on_source)[1] == []
    on_host = probes.archive_scan(inv, "tgt-app", TARGET, with_hash=True)
    assert documents.compare_restored_packed("personnel", manifest, on_host, "tgt-app", True)[1] == []

    (target_root() / "zz-packed" / "sub dir" / "vuoto.pdf").unlink()
    (target_root() / "zz-packed" / "intruso.pdf").write_bytes(b"%PDF-1.4 not ours")
    altered = target_root() / "zz-packed" / "sub dir" / "big scan.tiff"
    st = altered.stat()
    with altered.open("r+b") as f:  # one byte, same size and mtime: only the hash can tell
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(altered, ns=(st.st_atime_ns, st.st_mtime_ns))
    on_host = probes.archive_scan(inv, "tgt-app", TARGET, with_hash=True)
    _, diffs = documents.compare_restored_packed("personnel", manifest, on_host, "tgt-app", True)
    index = {f["path"]: i for i, f in enumerate(manifest["files"])}  # named by manifest index, never by path
    assert {(d.object, d.problem, d.key.get("document", d.key.get("file"))) for d in diffs} == {
        ("manifest", "missing_on_target_host", index["zz-packed/sub dir/vuoto.pdf"]),
        ("target host listing", "extra_on_target_host", sorted(on_host).index("zz-packed/intruso.pdf")),
        ("manifest", "altered_on_target_host", index["zz-packed/sub dir/big scan.tiff"])}
    assert "zz-packed" not in json.dumps([d.to_json() for d in diffs])

    # A flipped byte in a staged pack: named at full depth, by the pack's own SHA-256.
    victim = manifest["packs"][0]
    body = bytearray(b"".join(cloud.iter_object(job.s3, job.bucket, victim["key"])))
    body[100] ^= 0x01
    job.s3.put_object(Bucket=job.bucket, Key=victim["key"], Body=bytes(body))
    hashes = probes.objects_sha256(job.s3, job.bucket, [p["key"] for p in manifest["packs"]])
    _, diffs = documents.compare_packed("personnel", manifest, objects, hashes, on_source)
    assert [(d.object, d.problem) for d in diffs] == [(victim["key"], "altered_in_bucket")]


def test_a_channel_dropped_while_packing_is_tried_again(archive, tmp_path, monkeypatch):
    inv, journal = archive, tmp_path / "journal.sqlite"
    real, dropped = packed.ssh.Program.read_frame, []

    def drop_once(self):
        kind, body = real(self)
        if kind == b"D" and not dropped:
            dropped.append(True)
            self.channel.close()  # mid-pack: the rest of this pack never arrives
        return kind, body
    monkeypatch.setattr(packed.ssh.Program, "read_frame", drop_once)
    job = pack_job(inv, journal)
    staged = packed.stage(job)
    assert dropped and staged["files"] == len(files_of(source_root()))
    manifest = manifest_of(job, staged)
    assert cloud.list_keys(job.s3, job.bucket, "test/docs/personnel/packs/") == {p["key"] for p in manifest["packs"]}
    assert cloud.incomplete_uploads(job.s3, job.bucket, "") == []
