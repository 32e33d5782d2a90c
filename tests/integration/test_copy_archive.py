"""The document archive copy on the real lab (SFTP from src-app into moto): every file staged
once with its SHA-256 and metadata; a SIGKILL mid-copy, then a rerun, stages only what is
missing; a rerun after completion copies nothing (incremental)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from migrate import config
from migrate.adapters import cloud
from migrate.engine.journal import Journal
from migrate.transfer import archive
from migrate.transfer.log import TransferLog
from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration

ARCHIVE = "/srv/personale/documents"


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


def test_archive_is_staged_once_resumed_after_sigkill_and_incremental(documents, tmp_path):
    journal, prefix = tmp_path / "journal.sqlite", "test/docs/personnel"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tests.integration.test_copy_archive import"
                             " child_main; child_main(sys.argv[1], sys.argv[2])", str(journal), prefix],
                            cwd=lab.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    batches = 0
    for line in proc.stdout:
        batches += json.loads(line)["event"] == "archive_batch"
        if batches == 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]

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
