"""The lab's historical personnel files (`lab seed --documents N`): the plan, the PDFs, writing
them to disk and restoring them; the baseline leaving them out of its copy."""

import hashlib
import os
import re
import shutil
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate.lab import api as lab_api
from migrate.lab.baseline import _leaving_out
from migrate.lab.data.bulk_archive import (DIR_MODE, SCAN_SIZES, content, fingerprint, noise_for,
                                           plan, restore_bulk_archive, write_bulk_archive)
from migrate.lab.data.dates import AS_OF
from migrate.lab.data.formats import make_scanned_pdf
from migrate.lab.files import sync_tree
from migrate.lab_cli import lab as lab_group

KB = 1024


def check_pdf(blob: bytes) -> None:
    """Structure a reader relies on: header, trailer, xref offsets, stream lengths, scan size."""
    assert blob.startswith(b"%PDF-1.4\n")
    found = re.search(rb"startxref\n(\d+)\n%%EOF\n\Z", blob)
    assert found, blob[-80:]
    xref_at = int(found.group(1))
    assert blob[xref_at:].startswith(b"xref\n0 ")
    count = int(blob[xref_at + 7:blob.index(b"\n", xref_at + 5)])
    entries = blob[xref_at:].split(b"\n")[3:2 + count]
    for number, entry in enumerate(entries, start=1):
        assert entry.endswith(b" 00000 n ")
        assert blob[int(entry[:10]):].startswith(b"%d 0 obj\n" % number)
    assert b"/Size %d" % count in blob[xref_at:]
    for stream in re.finditer(rb"<<([^>]*?)/Length (\d+)[^>]*>>\nstream\n", blob):
        end = stream.end() + int(stream.group(2))
        assert blob[end:end + 18] == b"\nendstream\nendobj\n"
        image = re.search(rb"/Width (\d+) /Height (\d+)", stream.group(1))
        if image:
            assert int(image.group(1)) * int(image.group(2)) == int(stream.group(2))


def on_disk(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, stat.S_IMODE(p.stat().st_mode))
            for p in root.rglob("*") if p.is_file()}


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def planned(count: int, seed: int) -> dict[str, tuple[int, int, int]]:
    return {doc.path: (doc.size, doc.mtime_ns, doc.mode) for doc in plan(count, seed)}


# --- the plan --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 37, 2_000])
def test_the_plan_has_exactly_count_distinct_files_numbered_in_order(count):
    docs = plan(count, seed=3)
    assert len(docs) == count == len({doc.path for doc in docs})
    assert [doc.number for doc in docs] == list(range(1, count + 1))


def test_the_plan_is_deterministic_for_a_seed_and_differs_between_seeds():
    assert plan(500, seed=1) == plan(500, seed=1)
    assert [d.path for d in plan(500, seed=1)] != [d.path for d in plan(500, seed=2)]


def test_sizes_are_mostly_1_to_10_kb_with_a_3_kb_mean_a_few_scans_and_a_few_empties():
    docs = plan(20_000, seed=1)
    sizes = [doc.size for doc in docs]
    scans = [size for size in sizes if size >= SCAN_SIZES[0]]
    small = [size for size in sizes if 0 < size < SCAN_SIZES[0]]
    assert 3 <= len(scans) <= 5 and all(SCAN_SIZES[0] <= s <= SCAN_SIZES[1] for s in scans)
    assert 1 <= sizes.count(0) <= 5
    assert sum(1 * KB <= s <= 10 * KB for s in small) / len(small) > 0.95
    assert 2.6 * KB < sum(small) / len(small) < 3.3 * KB       # 100,000 files: about 300 MB
    assert len(set(small)) > 2_000 and max(small) > 10 * KB    # varied, and a few longer ones


def test_small_archives_get_no_scans_but_one_empty_file():
    sizes = [doc.size for doc in plan(200, seed=1)]
    assert max(sizes) <= 40_000 and sizes.count(0) == 1


def test_names_have_accents_spaces_and_apostrophes_in_nested_folders():
    docs = plan(2_000, seed=1)
    paths = [doc.path for doc in docs]
    assert any("Certificato d'idoneità" in path for path in paths)
    assert sum("'" in p for p in paths) > 100 and all(" " in p for p in paths)
    assert sum(any(ord(c) > 127 for c in p) for p in paths) > 100
    assert all(p.endswith(".pdf") for p in paths)
    assert {p.count("/") for p in paths} == {2, 3}                 # year/person[/subfolder]/name
    assert all(re.fullmatch(r"(19|20)\d\d", p.split("/")[0]) for p in paths)


def test_mtimes_are_in_the_past_and_modes_0640_or_0644():
    docs = plan(2_000, seed=1)
    since = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp() * 1e9   # no pre-1970 surprises
    until = datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=timezone.utc).timestamp() * 1e9
    assert all(since < doc.mtime_ns < until for doc in docs)
    assert len({doc.mtime_ns for doc in docs}) == len(docs)
    modes = [doc.mode for doc in docs]
    assert set(modes) == {0o640, 0o644} and modes.count(0o640) > modes.count(0o644)


# --- the PDFs --------------------------------------------------------------------------------


def test_a_scanned_pdf_has_exactly_the_size_asked_and_a_valid_structure():
    noise = noise_for(1)
    created = datetime(2019, 5, 2, 10, 30, tzinfo=timezone.utc)
    for size in [*range(1_600, 1_760), 3_000, 9_999, 10_000, 40_000, 2_000_000]:
        blob = make_scanned_pdf("Certificato d'idoneità 2019", ["Fascicolo 000001 D'Angelo Niccolò"],
                                created, size=size, noise=noise)
        assert len(blob) == size
        check_pdf(blob)
    with pytest.raises(ValueError, match="at least"):
        make_scanned_pdf("Titolo", [], created, size=900, noise=noise)


def test_every_planned_file_is_made_with_its_size_and_is_the_same_on_every_call():
    noise = noise_for(5)
    for doc in plan(400, seed=5):
        blob = content(doc, noise)
        assert len(blob) == doc.size
        if doc.size:
            check_pdf(blob)
            assert b"/Title (" + doc.name.split(" ")[0].encode("cp1252") in blob
    again = noise_for(5)
    assert all(content(doc, noise) == content(doc, again) for doc in plan(50, seed=5))


# --- on disk ---------------------------------------------------------------------------------


def test_writing_puts_exactly_the_plan_on_disk(tmp_path):
    root = tmp_path / "fascicoli-storici"
    result = write_bulk_archive(root, count=1_300, seed=2)

    assert result["files"] == 1_300 and result["bytes"] == sum(d.size for d in plan(1_300, 2))
    assert result["fingerprint"] == fingerprint(plan(1_300, 2), noise_for(2))
    assert on_disk(root) == planned(1_300, 2)
    assert all(stat.S_IMODE(d.stat().st_mode) == DIR_MODE for d in root.rglob("*") if d.is_dir())
    noise = noise_for(2)
    for doc in plan(1_300, 2)[::97]:
        assert (root / doc.path).read_bytes() == content(doc, noise)


def test_writing_again_replaces_the_tree_with_the_same_bytes(tmp_path):
    root = tmp_path / "bulk"
    write_bulk_archive(root, count=120, seed=4)
    first = digests(root)
    (root / "stray.pdf").write_bytes(b"x")
    write_bulk_archive(root, count=120, seed=4)
    assert digests(root) == first


def test_writing_over_the_same_archive_rewrites_only_what_differs(tmp_path):
    root = tmp_path / "bulk"
    mark = write_bulk_archive(root, count=200, seed=4)["fingerprint"]
    first = digests(root)
    changed = next(p for p in sorted(root.rglob("*.pdf")) if p.stat().st_size)
    changed.write_bytes(b"tampered")
    # A write changes a file's ctime, which utime cannot set back: it tells what was rewritten.
    ctimes = {p: p.stat().st_ctime_ns for p in root.rglob("*.pdf")}

    assert write_bulk_archive(root, count=200, seed=4, previous=mark)["fingerprint"] == mark
    assert digests(root) == first
    assert [p for p, ctime in ctimes.items() if p.stat().st_ctime_ns != ctime] == [changed]
    (root / "stray.pdf").write_bytes(b"x")
    write_bulk_archive(root, count=200, seed=4, previous="another archive")
    assert digests(root) == first                                     # replaced: stray.pdf gone


def test_restore_rewrites_what_changed_and_removes_what_the_plan_lacks(tmp_path):
    root = tmp_path / "bulk"
    write_bulk_archive(root, count=300, seed=6)
    before = digests(root)
    docs = [d for d in plan(300, 6) if d.size]
    (root / docs[0].path).write_bytes(b"tampered")
    (root / docs[1].path).unlink()
    (root / docs[2].path).chmod(0o600)
    os.utime(root / docs[3].path, ns=(1, 1))
    (root / docs[4].path).unlink()
    (root / docs[4].path).symlink_to("/etc/hostname")
    (root / docs[5].folder).chmod(0o777)
    (root / docs[6].folder / "nuovo documento.pdf").write_bytes(b"%PDF")
    (root / "1999/cartella in più").mkdir(parents=True)

    result = restore_bulk_archive(root, count=300, seed=6)

    assert result == {"rewritten": 5, "removed": 3}     # symlink, extra file, extra folder tree
    assert digests(root) == before and on_disk(root) == planned(300, 6)
    assert stat.S_IMODE((root / docs[5].folder).stat().st_mode) == DIR_MODE
    assert restore_bulk_archive(root, count=300, seed=6) == {"rewritten": 0, "removed": 0}


def test_restore_refuses_an_archive_another_generator_wrote_and_touches_nothing(tmp_path):
    root = tmp_path / "bulk"
    written = write_bulk_archive(root, count=80, seed=6)
    (root / "extra.pdf").write_bytes(b"x")
    assert restore_bulk_archive(root, count=80, seed=6, expected=written["fingerprint"])["removed"] == 1
    (root / "extra.pdf").write_bytes(b"x")
    with pytest.raises(ValueError, match="another version"):
        restore_bulk_archive(root, count=80, seed=6, expected="0" * 64)
    assert (root / "extra.pdf").exists()
    assert fingerprint(plan(80, 6), noise_for(6)) != fingerprint(plan(80, 7), noise_for(7))


def test_restore_brings_back_a_deleted_archive(tmp_path):
    root = tmp_path / "bulk"
    write_bulk_archive(root, count=80, seed=6)
    before = digests(root)
    shutil.rmtree(root)
    assert restore_bulk_archive(root, count=80, seed=6)["rewritten"] == 80
    assert digests(root) == before


def test_writing_is_fast_enough_for_a_large_archive(tmp_path):
    began = time.monotonic()
    write_bulk_archive(tmp_path / "bulk", count=3_000, seed=1)
    # 300,000 files must take well under a minute; file creation here costs up to ~0.3 ms.
    assert time.monotonic() - began < 10


# --- the baseline: the historical files are kept out of the copy and of the sync ----------------


def make_tree(root: Path) -> None:
    (root / "docs/fascicoli-storici/2001").mkdir(parents=True)
    (root / "docs/fascicoli-storici/2001/a.pdf").write_bytes(b"a")
    (root / "docs/2024").mkdir(parents=True)
    (root / "docs/2024/b.pdf").write_bytes(b"b")
    (root / "etc").mkdir()
    (root / "etc/app.conf").write_text("x")


def test_the_baseline_copy_leaves_out_only_the_historical_files(tmp_path):
    make_tree(tmp_path / "live")
    skipped = tmp_path / "live/docs/fascicoli-storici"
    shutil.copytree(tmp_path / "live", tmp_path / "saved", ignore=_leaving_out(skipped))
    assert sorted(str(p.relative_to(tmp_path / "saved")) for p in (tmp_path / "saved").rglob("*")) == [
        "docs", "docs/2024", "docs/2024/b.pdf", "etc", "etc/app.conf"]


def test_sync_tree_restores_everything_but_the_kept_subtree(tmp_path):
    live, saved = tmp_path / "live", tmp_path / "saved"
    make_tree(live)
    kept = live / "docs/fascicoli-storici"
    shutil.copytree(live, saved, ignore=_leaving_out(kept))
    (live / "docs/2024/b.pdf").write_bytes(b"changed")
    (live / "etc/new.conf").write_text("y")
    (kept / "2001/extra.pdf").write_bytes(b"e")

    sync_tree(saved, live, keep=kept)

    assert (live / "docs/2024/b.pdf").read_bytes() == b"b" and not (live / "etc/new.conf").exists()
    assert sorted(p.name for p in kept.rglob("*")) == ["2001", "a.pdf", "extra.pdf"]
    sync_tree(saved, live)
    assert not kept.exists()


# --- the command line ------------------------------------------------------------------------


def test_lab_seed_passes_documents_and_reports_them(monkeypatch, tmp_path):
    calls = []

    def reseed(lab_dir, **kwargs):
        calls.append(kwargs)
        return {"presenze.punch": 37_609,
                "bulk_archive": {"files": 100_000, "bytes": 316_399_791, "seconds": 31.4}}

    monkeypatch.setattr(lab_api, "reseed", reseed)
    result = CliRunner().invoke(lab_group, ["seed", "--lab-dir", str(tmp_path), "--documents", "100000"])
    assert result.exit_code == 0, result.output
    assert calls == [{"employees": 40, "years": 2, "seed": 1, "documents": 100_000}]
    assert result.output == ("seeded 40 employees x 2 years (seed 1): 37,609 punches + 100,000 archive"
                             " documents (316 MB, written in 31.4 s)\n")
