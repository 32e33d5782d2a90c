"""The archive's host-side program, run here as the hosts run it (`python3 -c <source>`), on
temporary trees: packs are whole tar archives whose index matches their bytes; a restore writes
exactly the wanted files with their mode and mtime; a pack with one flipped byte leaves no file
and no temporary behind; remove, trash and untrash touch only what matches."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from migrate.adapters import ssh

SOURCE = ssh.HOST_PROGRAM.read_text()


def run(mode: str, top, *args, stdin: bytes = b"[]") -> bytes:
    done = subprocess.run([sys.executable, "-c", SOURCE, mode, str(top), *args], input=stdin, capture_output=True,
                          check=True, timeout=60)
    return done.stdout


def frames(body: bytes):
    stream = io.BytesIO(body)
    while line := stream.readline():
        kind, length = line.split()
        yield kind, stream.read(int(length))


def frame(kind: bytes, body: bytes) -> bytes:
    return b"%s %d\n" % (kind, len(body)) + body


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "a b" / "c").mkdir(parents=True)
    (src / "a b" / "D'Angelo Nicolò.pdf").write_bytes(b"%PDF-1.4 " + os.urandom(5000))
    (src / "vuoto.pdf").write_bytes(b"")
    (src / "a b" / "c" / "scan.tiff").write_bytes(os.urandom(1_500_000))
    os.chmod(src / "vuoto.pdf", 0o600)
    os.utime(src / "vuoto.pdf", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    return src


def listing(top) -> list[dict]:
    return [json.loads(line) for line in run("scan", top).splitlines()[1:] if b'"path"' in line]


def pack(top) -> tuple[bytes, dict]:
    data, index = b"", None
    for kind, body in frames(run("pack", top, stdin=json.dumps([f["path"] for f in listing(top)]).encode())):
        if kind == b"D":
            data += body
        elif kind == b"E":
            index = json.loads(body)
    return data, index


def test_a_pack_is_a_tar_whose_index_points_at_each_file(tree):
    data, index = pack(tree)
    assert index["size"] == len(data)
    assert tarfile.open(fileobj=io.BytesIO(data)).getnames() == [f["path"] for f in index["files"]]
    for f in index["files"]:
        body = (tree / f["path"]).read_bytes()
        assert data[f["offset"]:f["offset"] + f["size"]] == body and hashlib.sha256(body).hexdigest() == f["sha256"]
    empty = next(f for f in index["files"] if f["path"] == "vuoto.pdf")
    assert (empty["mode"], empty["mtime_ns"]) == (0o600, 1_500_000_000_123_456_789)


def restore_frames(data: bytes, files: list[dict], sha: str) -> bytes:
    body = frame(b"P", json.dumps({"key": "pack", "files": files}).encode())
    body += b"".join(frame(b"D", data[i:i + 70_000]) for i in range(0, len(data), 70_000))
    return body + frame(b"C", json.dumps({"sha256": sha}).encode())


def test_restore_writes_the_wanted_files_with_mode_and_mtime(tree, tmp_path):
    data, index = pack(tree)
    dst = tmp_path / "dst"
    dst.mkdir()
    run("mkdirs", dst, stdin=json.dumps(["a b", "a b/c"]).encode())
    wanted = [f for f in index["files"] if f["path"] != "a b/c/scan.tiff"]
    answer = json.loads(run("restore", dst, "T", stdin=restore_frames(data, wanted, hashlib.sha256(data).hexdigest())))
    assert answer == {"key": "pack", "ok": True, "written": 2, "bytes": sum(f["size"] for f in wanted)}
    for f in wanted:
        st = (dst / f["path"]).stat()
        assert (dst / f["path"]).read_bytes() == (tree / f["path"]).read_bytes()
        assert (st.st_mode & 0o7777, st.st_mtime_ns) == (f["mode"], f["mtime_ns"])
    assert not (dst / "a b" / "c" / "scan.tiff").exists()
    assert [p for p in dst.rglob(".migrate-*")] == []


def test_a_flipped_byte_leaves_no_file_and_no_temporary(tree, tmp_path):
    data, index = pack(tree)
    flipped = bytearray(data)
    flipped[index["files"][-1]["offset"] + 10] ^= 0x01
    dst = tmp_path / "dst"
    dst.mkdir()
    run("mkdirs", dst, stdin=json.dumps(["a b", "a b/c"]).encode())
    answer = json.loads(run("restore", dst, "T", stdin=restore_frames(bytes(flipped), index["files"],
                                                                      hashlib.sha256(data).hexdigest())))
    assert answer["ok"] is False and "pack SHA-256" in answer["error"]
    assert [p for p in dst.rglob("*") if p.is_file()] == []


def test_remove_and_trash_touch_only_what_matches(tree):
    files = listing(tree)
    doc = next(f for f in files if f["path"].endswith(".pdf") and f["size"])
    stale = {**doc, "mtime_ns": doc["mtime_ns"] + 1}
    assert json.loads(run("remove", tree, stdin=json.dumps({"files": [stale]}).encode()))["kept_changed"] == 1
    sha = hashlib.sha256((tree / doc["path"]).read_bytes()).hexdigest()
    wrong = json.loads(run("trash", tree, ".migrate-trash-T", stdin=json.dumps([{"path": doc["path"],
                                                                                  "sha256": "0" * 64}]).encode()))
    assert wrong == {"moved": 0} and (tree / doc["path"]).exists()
    item = json.dumps([{"path": doc["path"], "sha256": sha}]).encode()
    assert json.loads(run("trash", tree, ".migrate-trash-T", stdin=item)) == {"moved": 1}
    assert not (tree / doc["path"]).exists() and doc["path"] not in {f["path"] for f in listing(tree)}
    assert json.loads(run("untrash", tree, ".migrate-trash-T", stdin=item)) == {"moved": 1}
    assert json.loads(run("remove", tree, stdin=json.dumps({"files": [doc]}).encode()))["removed"] == 1


@pytest.mark.parametrize("rel", ["../outside.pdf", "/etc/passwd", "a/../../x", "a//b"])
def test_a_path_leaving_the_archive_is_refused(tree, tmp_path, rel):
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(b"keep me")
    st = outside.stat()
    done = subprocess.run([sys.executable, "-c", SOURCE, "remove", str(tree)], capture_output=True, timeout=60,
                          input=json.dumps({"files": [{"path": rel, "size": st.st_size,
                                                       "mtime_ns": st.st_mtime_ns}]}).encode())
    assert done.returncode != 0 and b"ValueError" in done.stderr and outside.exists()
