"""The document archive copy on the real lab (SFTP from src-app into moto): every file staged
once with its SHA-256 and metadata; a SIGKILL mid-copy, then a rerun, stages only what is
missing; a rerun after completion copies nothing (incremental).

And back onto the target application host (tgt-app): every file with the source's SHA-256, mode
and mtime; files already there skipped; a corrupted staged object refused before any byte of it
reaches its place; a different file in the way refused before anything is written; a SIGKILL
mid-restore, then a rerun, writes only the rest; the rollback removes exactly what was written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from migrate import commands, config
from migrate.adapters import cloud
from migrate.engine import state
from migrate.engine.context import Context
from migrate.engine.events import Bus
from migrate.engine.executor import Executor
from migrate.engine.journal import Journal
from migrate.errors import StepFailed
from migrate.model.layout import RunLayout, journal_path
from migrate.model.plan import WavePlan
from migrate.ops import archive as archive_ops
from migrate.steps.archive import RestoreArchive, StageArchive
from migrate.steps.database import OpenStaging
from migrate.transfer import archive_restore as restore
from migrate.transfer import archive_stage as archive
from migrate.transfer.log import TransferLog
from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration

ARCHIVE = "/srv/personale/documents"


@pytest.fixture(autouse=True)
def objects_layout(monkeypatch):
    """These tests are of the `objects` layout (one object per document); the packed layout,
    the default, has its own (test_packed_archive.py)."""
    from migrate.config import inventory

    real = inventory._load_spec

    def load(path):
        spec = real(path)
        systems = {name: s.model_copy(update={"archive": s.archive.model_copy(update={"layout": "objects"})})
                   if s.archive else s for name, s in spec.systems.items()}
        return spec.model_copy(update={"systems": systems})
    monkeypatch.setattr(inventory, "_load_spec", load)


@pytest.fixture
def documents(clean_lab):
    """The lab's archive plus a file larger than one part (a multipart upload, hashed first on
    the source host) and a name that needs quoting."""
    extra = lab.host_root("src-app") / ARCHIVE.lstrip("/") / "zz-test"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / "big scan.tiff").write_bytes(os.urandom(7 * 1024 * 1024))
    (extra / "D'Angelo Nicolò.pdf").write_bytes(b"%PDF-1.4 tiny")
    yield lab.tree(lab.host_root("src-app") / ARCHIVE.lstrip("/"))
    shutil.rmtree(extra)


def make_job(journal: Path, prefix: str) -> archive.ArchiveJob:
    inv = config.load(lab.INVENTORY)
    log = TransferLog(Journal(journal), "run-docs", "wave-test", "personnel/stage-archive")
    return archive.ArchiveJob(inv=inv, s3=cloud.client(inv, pool=8), log=log, scope="personnel", host="src-app",
                              path=ARCHIVE, prefix=prefix, progress_prefix=prefix + ".progress", workers=2,
                              part_bytes=cloud.MIN_PART)


def child_main(journal: str, prefix: str) -> None:
    """A slow copy in small batches, to be killed halfway."""
    archive.BATCH_FILES = 4
    copy = archive.Worker.copy

    def slowly(self, f):
        time.sleep(0.1)
        return copy(self, f)
    archive.Worker.copy = slowly
    job = make_job(Path(journal), prefix)
    job.progress = lambda kind, data: print(json.dumps({"event": kind, "files": data["files"]}), flush=True)
    archive.stage_archive(job)


def kill_after(call: str, args: list[str], event: str, count: int) -> None:
    """Run `call` (a function of this module) in a child and SIGKILL it at the count-th `event`."""
    code = f"import sys; from tests.integration import test_copy_archive as t; t.{call}"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=lab.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = 0
    for line in proc.stdout:
        seen += json.loads(line)["event"] == event
        if seen == count:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]


def test_archive_is_staged_once_resumed_after_sigkill_and_incremental(documents, tmp_path):
    journal, prefix = tmp_path / "journal.sqlite", "test/docs/personnel"
    kill_after("child_main(sys.argv[1], sys.argv[2])", [str(journal), prefix], "archive_batch", 2)

    job = make_job(journal, prefix)
    result = archive.stage_archive(job)
    assert result["files"] == len(documents) and 8 <= result["skipped_unchanged"] < len(documents)

    s3, bucket = job.s3, job.bucket
    versions = cloud.list_versions(s3, bucket, prefix + "/files/")
    assert len(versions) == len(documents) and all(len(v) == 1 for v in versions.values()), "one upload per file"
    assert cloud.incomplete_uploads(s3, bucket, "") == []
    manifest = json.loads(b"".join(cloud.iter_object(s3, bucket, prefix + "/manifest.json")))
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {p: v.split()[0] for p, v in documents.items()}
    big = next(f for f in manifest["files"] if f["path"].endswith("big scan.tiff"))
    body = b"".join(cloud.iter_object(s3, bucket, big["key"]))
    assert hashlib.sha256(body).hexdigest() == big["sha256"] and len(body) == 7 * 1024 * 1024
    meta = cloud.head_metadata(s3, bucket, big["key"])
    assert meta["sha256"] == big["sha256"] and unquote(meta["original-path"]) == f"{ARCHIVE}/zz-test/big scan.tiff"
    assert meta["size"] == str(len(body)) and meta["mode"].startswith("0o")

    again = archive.stage_archive(make_job(journal, prefix))
    assert again["copied"] == 0 and again["skipped_unchanged"] == len(documents)
    assert len(cloud.list_versions(s3, bucket, prefix + "/manifest.json")[prefix + "/manifest.json"]) == 1, \
        "an unchanged manifest is not written again"


# --- restoring onto the target application host ---------------------------------------------

TARGET = "/srv/personale/documents"
RESTORE_ARGS = {"host": "tgt-app", "path": TARGET, "system": "personnel"}


def target_root() -> Path:
    return lab.host_root("tgt-app") / TARGET.lstrip("/")


def files_of(root: Path) -> dict[str, tuple[str, str, int]]:
    """path -> (SHA-256, mode, mtime) of every file under root."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), oct(p.stat().st_mode & 0o7777),
                                       int(p.stat().st_mtime)) for p in sorted(root.rglob("*")) if p.is_file()}


def dirs_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()} if root.exists() else set()


@pytest.fixture
def restorable(clean_lab):
    """The lab's archive plus files with modes and mtimes of their own (one private, one in a
    directory whose name needs quoting); the target path as the lab left it, without them."""
    source = lab.host_root("src-app") / ARCHIVE.lstrip("/")
    extra = source / "zz-restore"
    (extra / "sub dir").mkdir(parents=True)
    private, shared = extra / "private scan.pdf", extra / "sub dir" / "D'Angelo Nicolò.pdf"
    private.write_bytes(os.urandom(3 * 1024 * 1024))
    shared.write_bytes(b"%PDF-1.4 shared")
    private.chmod(0o600)
    shared.chmod(0o640)
    os.utime(private, (1_500_000_000, 1_500_000_000))
    os.utime(shared, (1_400_000_000, 1_400_000_000))
    yield source
    shutil.rmtree(extra)
    shutil.rmtree(target_root() / "zz-restore", ignore_errors=True)


def run_steps(run_id: str, steps: list) -> tuple[Journal, Context, WavePlan]:
    """What `migrate run` does with these steps: plan, journal the plan, apply."""
    inv = config.load(lab.INVENTORY)
    j = Journal(journal_path(inv.state_dir))
    ctx = commands.context(inv, run_id, "wave-test", journal=j)
    plan = commands.plan_steps(inv, "wave-test", run_id, steps)
    j.append(run_id, "wave-test", "run_started", {"plan": plan.to_json(), "operator": "test"})
    results = Executor(j, commands.live_sink(ctx), Bus()).apply(plan)
    assert [r.status for r in results] == ["done"] * len(plan.steps), results[-1].error
    return j, ctx, plan


def stage_steps() -> list:
    return [OpenStaging(lab.BUCKET), StageArchive("personnel", "src-app", ARCHIVE)]


def result_of(j: Journal, run_id: str, step: str) -> dict:
    return [r.data["result"] for r in j.records(run_id=run_id) if r.kind == "effect_done" and r.step == step][-1]


def test_archive_is_restored_with_its_checks_incrementally_and_rolled_back_exactly(restorable):
    before_dirs = dirs_of(target_root())
    # Already in place with the right content: skipped, and kept by the rollback. Not in the archive: untouched.
    present = target_root() / "zz-restore" / "sub dir" / "D'Angelo Nicolò.pdf"
    present.parent.mkdir(parents=True)
    shutil.copy2(restorable / "zz-restore" / "sub dir" / "D'Angelo Nicolò.pdf", present)
    unrelated = target_root() / "zz-restore" / "notes.txt"
    unrelated.write_text("not from the archive")
    source = files_of(restorable)

    steps = [*stage_steps(), RestoreArchive("personnel", "tgt-app", TARGET)]
    j, ctx, plan = run_steps("run-restore", steps)
    done = result_of(j, "run-restore", "personnel/restore-archive")
    assert done["files"] == len(source) and done["skipped_present"] == 1 and done["written"] == len(source) - 1
    restored = files_of(target_root())
    assert {k: v for k, v in restored.items() if k != "zz-restore/notes.txt"} == source, "SHA-256, mode and mtime"
    assert restored["zz-restore/private scan.pdf"][1:] == ("0o600", 1_500_000_000)
    assert not [p for p in target_root().rglob("*") if ".migrate-" in p.name], "no temporary file left"

    again = archive_ops.restore_from_bucket(ctx, **RESTORE_ARGS)
    assert again["written"] == 0 and again["skipped_present"] == len(source), "incremental"

    view = state.latest(j.records(wave="wave-test"))
    Executor(j, commands.live_sink(ctx), Bus()).undo(plan, view.pending_undo())
    assert set(files_of(target_root())) == {"zz-restore/notes.txt", "zz-restore/sub dir/D'Angelo Nicolò.pdf"}, \
        "exactly the files the restore wrote are gone"
    assert dirs_of(target_root()) == before_dirs | {"zz-restore", "zz-restore/sub dir"}, "and the directories it made"
    assert cloud.list_versions(cloud.client(ctx.inv), lab.BUCKET, "") == {}


def restore_child(run_id: str) -> None:
    """A slow restore, to be killed halfway: one JSON line per restored file."""
    write, lock = restore.Writer.restore, threading.Lock()

    def slowly(self, entry):
        size = write(self, entry)
        with lock:  # two writer threads: one whole line at a time
            sys.stdout.write(json.dumps({"event": "restored"}) + "\n")
            sys.stdout.flush()
        time.sleep(0.3)
        return size
    restore.Writer.restore = slowly
    inv = config.load(lab.INVENTORY)
    ctx = commands.context(inv, run_id, "wave-test", journal=Journal(journal_path(inv.state_dir)))
    archive_ops.restore_from_bucket(ctx, **RESTORE_ARGS)


def test_refusals_then_a_killed_restore_resumes_writing_only_the_rest(restorable):
    _, ctx, _ = run_steps("run-refuse", stage_steps())
    s3 = cloud.client(ctx.inv)
    source = files_of(restorable)
    manifest = json.loads(b"".join(cloud.iter_object(s3, lab.BUCKET, RunLayout("waves", "wave-test", "run-refuse")
                                                                     .documents("personnel") + "/manifest.json")))
    victim = next(f for f in manifest["files"] if f["path"] == "zz-restore/private scan.pdf")
    final = target_root() / victim["path"]

    # A different file in the way: refused before anything is written.
    in_the_way = target_root() / "zz-restore" / "sub dir" / "D'Angelo Nicolò.pdf"
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_bytes(b"%PDF-1.4 someone else's")
    untouched = files_of(target_root())
    number = next(i for i, f in enumerate(manifest["files"]) if f["path"] == "zz-restore/sub dir/D'Angelo Nicolò.pdf")
    with pytest.raises(StepFailed, match=rf"1 document.* differ from the staged ones \(first: document #{number} "
                                         rf"\(sha256 {manifest['files'][number]['sha256'][:16]}…\)\)") as refused:
        archive_ops.restore_from_bucket(ctx, **RESTORE_ARGS)
    assert "D'Angelo" not in str(refused.value), "a path can name a person: never in a message"
    assert files_of(target_root()) == untouched
    in_the_way.unlink()

    # A staged object with one flipped byte (its metadata intact): refused, nothing at its place.
    original = b"".join(cloud.iter_object(s3, lab.BUCKET, victim["key"]))
    metadata = cloud.head_metadata(s3, lab.BUCKET, victim["key"])
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    s3.put_object(Bucket=lab.BUCKET, Key=victim["key"], Body=bytes(flipped), Metadata=metadata)
    number = manifest["files"].index(victim)
    with pytest.raises(StepFailed, match=rf"document #{number} \(sha256 {victim['sha256'][:16]}…\): its staged"
                                         " object has SHA-256 .* refusing to restore it") as refused:
        archive_ops.restore_from_bucket(ctx, **RESTORE_ARGS)
    assert "private scan" not in str(refused.value)
    assert not final.exists() and not [p for p in target_root().rglob("*") if ".migrate-" in p.name]
    s3.put_object(Bucket=lab.BUCKET, Key=victim["key"], Body=original, Metadata=metadata)

    # Killed after a few files; a rerun removes the killed attempt's temporary files and finishes it.
    kill_after("restore_child(sys.argv[1])", ["run-refuse"], "restored", 3)
    done = archive_ops.restore_from_bucket(ctx, **RESTORE_ARGS)
    assert done["skipped_present"] >= 3 and done["written"] + done["skipped_present"] == len(source)
    assert files_of(target_root()) == source
    archive_ops.remove_restored(ctx, **RESTORE_ARGS)
    assert files_of(target_root()) == {}, "every attempt's files, as its intent recorded them"
