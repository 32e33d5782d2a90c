"""`lab seed --documents N` on the session lab: the historical files land on src-app beside the
indexed archive (which stays as it was), the baseline keeps no copy of them, and `reset` puts
them back. The session lab is reseeded as conftest made it afterwards."""

import json

import psycopg
import pytest

from migrate.lab import api as lab_api
from tests.integration import lab_support

SESSION_SEED = {"employees": 12, "years": 1, "seed": 7}     # as conftest's `up`
DOCUMENTS = 300
ARCHIVE = "srv/personale/documents"
BULK = f"{ARCHIVE}/fascicoli-storici"


def indexed_documents() -> list[tuple]:
    with psycopg.connect(lab_support.dsn("source", "personale")) as conn:
        return conn.execute("SELECT rel_path, size_bytes, sha256 FROM personnel_document ORDER BY 1").fetchall()


@pytest.fixture(scope="module")
def seeded_with_documents(test_lab):
    lab_support.reset()
    archive = lab_support.host_root("src-app") / ARCHIVE
    before = {"index": indexed_documents(), "files": lab_support.tree(archive)}
    try:
        result = lab_api.reseed(lab_support.LAB_DIR, **SESSION_SEED, documents=DOCUMENTS)
        yield before, result
    finally:
        lab_api.reseed(lab_support.LAB_DIR, **SESSION_SEED)


def test_the_seed_adds_the_files_beside_an_untouched_indexed_archive(seeded_with_documents):
    before, result = seeded_with_documents
    src = lab_support.host_root("src-app")
    bulk = lab_support.tree(src / BULK)

    assert result["bulk_archive"]["files"] == DOCUMENTS == len(bulk)
    assert result["bulk_archive"]["bytes"] == sum(p.stat().st_size for p in (src / BULK).rglob("*") if p.is_file())
    assert indexed_documents() == before["index"]
    indexed = {path: digest for path, digest in lab_support.tree(src / ARCHIVE).items()
               if not path.startswith("fascicoli-storici/")}
    assert indexed == before["files"]
    assert not (lab_support.LAB_DIR / "baseline/hosts/src-app" / BULK).exists()
    record = json.loads((lab_support.LAB_DIR / "baseline/bulk-archive.json").read_text())
    assert {k: record[k] for k in ("host", "path", "count", "seed")} == {
        "host": "src-app", "path": BULK, "count": DOCUMENTS, "seed": 7}


def test_reset_puts_the_files_back(seeded_with_documents):
    root = lab_support.host_root("src-app") / BULK
    seeded = lab_support.tree(root)
    files = sorted(p for p in root.rglob("*.pdf") if p.stat().st_size)
    files[0].write_bytes(b"tampered")
    files[1].unlink()
    files[2].chmod(0o600)
    (root / "extra.pdf").write_bytes(b"%PDF")

    lab_api.reset(lab_support.LAB_DIR)

    assert lab_support.tree(root) == seeded


def test_a_reseed_with_the_same_numbers_reuses_the_files(seeded_with_documents):
    root = lab_support.host_root("src-app") / BULK
    seeded = lab_support.tree(root)
    ctimes = {p: p.stat().st_ctime_ns for p in root.rglob("*") if p.is_file()}
    (root / "extra.pdf").write_bytes(b"%PDF")

    result = lab_api.reseed(lab_support.LAB_DIR, **SESSION_SEED, documents=DOCUMENTS)

    assert result["bulk_archive"]["files"] == DOCUMENTS and lab_support.tree(root) == seeded
    assert all(p.stat().st_ctime_ns == ctime for p, ctime in ctimes.items())  # not one rewritten
    assert not list(root.parent.parent.glob(".fascicoli-storici*"))          # nothing left aside
