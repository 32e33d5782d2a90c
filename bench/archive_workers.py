"""Stage the lab's document archive with different worker counts: latency- or CPU-bound?

Usage (the default lab up, e.g. seeded at 1,000 x 10): .venv/bin/python bench/archive_workers.py 2 8
Each count stages the whole archive under exp/ in the lab bucket, which is deleted afterwards.
"""

import sys
import tempfile
import time
from pathlib import Path

from migrate import config
from migrate.adapters import cloud
from migrate.engine.journal import Journal
from migrate.model import layout
from migrate.transfer import archive_stage
from migrate.transfer.log import TransferLog


def stage(inv: config.Inventory, workers: int) -> float:
    prefix = f"exp/w{workers}/{time.time_ns()}"
    s3 = cloud.client(inv, pool=2 * workers + 4)
    with tempfile.TemporaryDirectory() as tmp:
        log = TransferLog(Journal(layout.journal_path(Path(tmp))), "exp", "exp", "exp")
        job = archive_stage.ArchiveJob(inv=inv, s3=s3, log=log, scope="personnel", host="src-app",
                                       path="/srv/personale/documents", prefix=prefix,
                                       progress_prefix=prefix + ".progress", workers=workers, part_bytes=cloud.MIN_PART)
        started = time.monotonic()
        archive_stage.stage_archive(job)
        seconds = time.monotonic() - started
    cloud.delete_prefix(s3, inv.spec.storage.bucket, "exp/")
    return seconds


def main() -> None:
    inv = config.load("inventories/lab")
    for workers in [int(w) for w in sys.argv[1:]]:
        print(f"{workers} workers: {stage(inv, workers):.1f} s", flush=True)


if __name__ == "__main__":
    main()
