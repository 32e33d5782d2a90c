"""The journal: an append-only, hash-chained record of every run, step and side effect.

SQLite in WAL mode, one file per inventory. Each record is committed before the thing it
announces happens, so resume and rollback read only the journal, never memory. Each record
carries the hash of the one before it: editing or deleting a record breaks the chain, and
`verify_chain` says where. Records hold counts, names and hashes, never row values or secrets.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

GENESIS = "0" * 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    TEXT NOT NULL,
    wave      TEXT NOT NULL,
    step      TEXT,
    kind      TEXT NOT NULL,
    data      TEXT NOT NULL,
    at        REAL NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_run ON records (run_id, seq);
CREATE INDEX IF NOT EXISTS records_wave ON records (wave, seq);
"""


@dataclass(frozen=True)
class Record:
    seq: int
    run_id: str
    wave: str
    step: str | None
    kind: str
    data: dict
    at: float


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def new_run_id(wave: str) -> str:
    return f"{wave}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"


# Records after which the head is also sent to the second anchor (see `Journal.remote`): the end
# of each step, undo and run, not every record.
REMOTE_KINDS = frozenset({"step_done", "step_failed", "step_waiting", "undone", "run_finished",
                          "rollback_finished", "finalized", "evidence_pack", "chain_override"})


class Journal:
    def __init__(self, path: Path, remote=None):
        """`remote`: a second anchor off this machine (`put(first, seq, digest)`, `get(first)` ->
        (seq, digest), None when it holds none, or "unreachable"), keyed by the first record's hash;
        best effort: a journal is never refused because its second anchor cannot be reached."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.remote = path, remote
        # isolation_level=None: we open explicit IMMEDIATE transactions so that two processes
        # appending at once serialise on the chain's tail instead of forking it.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def append(self, run_id: str, wave: str, kind: str, data: dict | None = None,
               step: str | None = None) -> Record:
        body = json.dumps(data or {}, sort_keys=True, separators=(",", ":"))
        at = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            digest = record_hash(prev, seq, run_id, wave, step, kind, body, at)
            self.db.execute(
                "INSERT INTO records (seq, run_id, wave, step, kind, data, at, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, run_id, wave, step, kind, body, at, prev, digest))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._anchor(seq, digest)
        if self.remote is not None and kind in REMOTE_KINDS:
            self.remote.put(self._first_hash(), seq, digest)
        return Record(seq, run_id, wave, step, kind, json.loads(body), at)

    @property
    def head_path(self) -> Path:
        return self.path.with_name(self.path.name + ".head")

    def _anchor(self, seq: int, digest: str) -> None:
        """The chain's head, outside the SQLite file (written atomically): records cut from the
        tail no longer go unnoticed. A kill between the commit and this leaves the head one
        record behind, which `verify_chain` accepts (that record chains onto it)."""
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        with open(self.head_path.with_name(self.head_path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes appending: the head only moves forward
            current = self._head()
            if current is not None and current[0] >= seq:
                return
            with open(tmp, "w") as f:
                f.write(f"{seq} {digest}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.head_path)

    def _head(self) -> tuple[int, str] | None:
        try:
            seq, digest = self.head_path.read_text().split()
            return int(seq), digest
        except (FileNotFoundError, ValueError):
            return None

    def _first_hash(self) -> str | None:
        row = self.db.execute("SELECT hash FROM records WHERE seq = 1").fetchone()
        return row[0] if row else None

    def records(self, *, run_id: str | None = None, wave: str | None = None) -> list[Record]:
        query, args = "SELECT seq, run_id, wave, step, kind, data, at FROM records", []
        if run_id:
            query, args = query + " WHERE run_id = ?", [run_id]
        elif wave:
            query, args = query + " WHERE wave = ?", [wave]
        rows = self.db.execute(query + " ORDER BY seq", args).fetchall()
        return [Record(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def waves(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT wave FROM records GROUP BY wave ORDER BY MIN(seq)")]

    def rows(self):
        """Every record as stored (seq, run_id, wave, step, kind, body text, at, prev_hash, hash),
        in order: what the chain is computed over, for an export that others can check."""
        yield from self.db.execute(
            "SELECT seq, run_id, wave, step, kind, data, at, prev_hash, hash FROM records ORDER BY seq")

    def verify_chain(self) -> str | None:
        """None when intact, else a one-line description of the first broken record. The last
        record must reach the anchored head (see `_anchor`); a journal written before heads were
        anchored has none, and is judged by its chain alone."""
        prev = GENESIS
        expected_seq = 1
        hashes = {}
        for row in self.db.execute(
                "SELECT seq, run_id, wave, step, kind, data, at, prev_hash, hash FROM records ORDER BY seq"):
            seq, run_id, wave, step, kind, body, at, prev_hash, digest = row
            if seq != expected_seq:
                return f"record {expected_seq} is missing"
            if prev_hash != prev or digest != record_hash(prev, seq, run_id, wave, step, kind, body, at):
                return f"record {seq} was altered"
            hashes[seq] = digest
            prev, expected_seq = digest, seq + 1
        head = self._head()
        if head is not None:
            seq, digest = head
            if seq >= expected_seq:
                return f"records {expected_seq} to {seq} are missing (cut from the end; the head says {seq})"
            if hashes.get(seq) != digest:
                return f"record {seq} does not match the anchored head"
            if expected_seq - 1 > seq + 1:
                return f"records {seq + 2} to {expected_seq - 1} were added after the anchored head"
        return self._check_remote(hashes, expected_seq)

    def _check_remote(self, hashes: dict[int, str], expected_seq: int) -> str | None:
        """The second anchor may lag (it is sent at the end of steps, best effort) but never leads."""
        if self.remote is None or not hashes:
            return None
        found = self.remote.get(hashes[1])
        if found is None or found == "unreachable":
            return None
        if found == "unreadable":
            return "the copy of the head kept in the bucket is unreadable"
        seq, digest = found
        if seq >= expected_seq:
            return (f"records {expected_seq} to {seq} are missing (cut from the end; the bucket's copy of the"
                    f" head says {seq})")
        if hashes.get(seq) != digest:
            return f"record {seq} does not match the head kept in the bucket"
        return None


def record_hash(prev: str, seq: int, run_id: str, wave: str, step: str | None, kind: str,
                body: str, at: float) -> str:
    material = json.dumps([prev, seq, run_id, wave, step, kind, body, repr(at)], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()
