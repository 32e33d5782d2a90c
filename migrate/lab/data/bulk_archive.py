"""The historical personnel files (fascicoli storici): a large archive of small PDFs beside the
indexed documents, to see how a migration copes with many files. No index rows point at them.

Layout under the bulk root (`<archive>/fascicoli-storici/`):
`<year opened>/<matricola> <surname> <given name>/[<subfolder>/]<name>.pdf`, names with the
accents, spaces and apostrophes real archives have ("Certificato d'idoneità 2019.pdf").
Sizes mostly 1.6-10 KB (mean about 3 KB, so 100,000 files are about 300 MB), a few longer
documents, a few scans of several MB and a few empty files (uploads that failed); mtimes in
the past; modes 0640 or 0644.

Everything derives from (count, seed): `plan` lists the files with their size, mtime and mode
without making any, `content` makes one file's bytes. So `restore_bulk_archive` puts the tree
back by comparing the disk with the plan and rewriting only what differs, and the lab keeps no
copy of it: creating a file costs 0.1-0.5 ms on the lab's machine (deleting one about as much),
so a copy of 300,000 files would double the seed, and walking it would slow every reset. For
the same reason a reseed with the same numbers reuses the files already there.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path

from migrate.lab.data.dates import AS_OF, ROME
from migrate.lab.data.formats import make_scanned_pdf
from migrate.lab.data.reference import COMUNE, FEMALE_NAMES, MALE_NAMES, MONTHS_IT, SURNAMES

BULK_DIR = "fascicoli-storici"   # inside the archive directory
DIR_MODE = 0o750
SMALLEST = 1600                  # a scanned page with its three lines of text fits in this
SCAN_SIZES = (2_000_000, 8_000_000)
NOISE_BYTES = 9_000_000          # the pixels every file's scan is cut from (> largest scan)
SCAN_CAMPAIGN = datetime(2004, 1, 1, tzinfo=ROME).timestamp()
WORKERS = 2                      # file creation is kernel time: two threads keep both cores busy

# (weight, subfolder, name): what a personnel file of the past holds, most often first; only
# payslips and medical certificates have a subfolder (every directory costs as much as a file).
KINDS = [
    (30, "Cedolini", "Cedolino {month} {year}"),
    (12, "", "Richiesta ferie {day:02d}-{mm:02d}-{year}"),
    (8, "Certificati medici", "Certificato medico del {day:02d}.{mm:02d}.{year}"),
    (4, "Certificati medici", "Certificato d'idoneità {year}"),
    (6, "", "Scheda di valutazione {year}"),
    (5, "", "Contratto individuale di lavoro {year}"),
    (4, "", "Lettera all'Ufficio personale del {day} {month} {year}"),
    (3, "", "Comunicazione variazione residenza {year}"),
    (3, "", "Dichiarazione sostitutiva dell'atto di notorietà {year}"),
    (3, "", "Attestato di partecipazione – corso sicurezza {year}"),
    (2, "", "Decreto di nomina {year}"),
    (2, "", "Nota prot. {day}{mm:02d} del {day:02d}-{mm:02d}-{year}"),
]
CUMULATIVE = list(accumulate(weight for weight, _, _ in KINDS))


@dataclass(frozen=True, slots=True)
class BulkDocument:
    number: int          # 1..count, in plan order
    folder: str          # relative to the bulk root, "/"-separated
    name: str
    size: int
    mtime_ns: int
    mode: int

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}"


def plan(count: int, seed: int) -> list[BulkDocument]:
    """The `count` files of the archive for `seed`, person by person (nothing is written)."""
    if count < 0:
        raise ValueError("count must not be negative")
    rng = random.Random(f"bulk:{seed}")
    docs: list[BulkDocument] = []
    matricola = 0
    while len(docs) < count:
        matricola += 1
        wanted = min(count - len(docs), rng.randint(20, 100))
        docs += _personnel_file(rng, matricola, len(docs) + 1, wanted)
    return _with_scans_and_empties(docs, seed)


def _personnel_file(rng: random.Random, matricola: int, first: int,
                    count: int) -> list[BulkDocument]:
    opened = rng.randint(1965, 2015)
    given = rng.choice(MALE_NAMES if rng.random() < 0.5 else FEMALE_NAMES)
    folder = f"{opened}/{matricola:06d} {rng.choice(SURNAMES)} {given}"
    used: set[str] = set()
    docs = []
    for number in range(first, first + count):
        when = _moment(rng, opened)
        _, subfolder, template = rng.choices(KINDS, cum_weights=CUMULATIVE)[0]
        name = template.format(year=when.year, month=MONTHS_IT[when.month - 1], mm=when.month,
                               day=when.day)
        where = f"{folder}/{subfolder}" if subfolder else folder
        docs.append(BulkDocument(number, where, _unique(used, where, name), _size(rng),
                                 _stored_ns(rng, when), 0o644 if rng.random() < 0.2 else 0o640))
    return docs


def _below(rng: random.Random, n: int) -> int:
    # rng.randrange is several times slower, and the plan draws a few numbers per file.
    return int(rng.random() * n)


def _moment(rng: random.Random, opened: int) -> datetime:
    """A time in the file's life, which ended before the synthetic world's today."""
    last = min(opened + 40, AS_OF.year - 1)
    start = datetime(opened + _below(rng, last - opened + 1), 1, 1, tzinfo=ROME)
    return start + timedelta(seconds=_below(rng, 365 * 86400))


def _stored_ns(rng: random.Random, when: datetime) -> int:
    """When the file was written (its mtime): a paper document from before 2000 was scanned in
    the campaign of 2004-2006, a later one filed within a month."""
    if when.year >= 2000:
        seconds = when.timestamp() + _below(rng, 30 * 86400)
    else:
        seconds = SCAN_CAMPAIGN + _below(rng, 3 * 365 * 86400)
    return int(seconds) * 10**9 + _below(rng, 10**9)


def _unique(used: set[str], folder: str, name: str) -> str:
    # Two payslips of one month happen (a correction): the second is "... (2).pdf".
    candidate, copy = f"{name}.pdf", 1
    while f"{folder}/{candidate}" in used:
        copy += 1
        candidate = f"{name} ({copy}).pdf"
    used.add(f"{folder}/{candidate}")
    return candidate


def _size(rng: random.Random) -> int:
    if rng.random() < 0.01:                     # a longer document
        return 10_241 + _below(rng, 30_000)
    # A long tail over the smallest page: median about 2.4 KB, one in a hundred over 7 KB.
    return min(10_240, SMALLEST + int(rng.lognormvariate(6.73, 0.8)))


def _with_scans_and_empties(docs: list[BulkDocument], seed: int) -> list[BulkDocument]:
    """A few files become scans of several MB (from about 250 files on), a few empty."""
    picker = random.Random(f"bulk-specials:{seed}:{len(docs)}")
    scans = min(len(docs) // 250, 3 + picker.randrange(3))
    empties = min(len(docs) - scans, 1 + len(docs) // 20_000)
    chosen = picker.sample(range(len(docs)), scans + empties)
    for index in chosen[:scans]:
        doc = docs[index]
        docs[index] = replace(doc, name=f"Scansione fascicolo cartaceo n. {doc.number}.pdf",
                              size=picker.randint(*SCAN_SIZES))
    for index in chosen[scans:]:
        docs[index] = replace(docs[index], size=0)
    return docs


def noise_for(seed: int) -> bytes:
    """The random pixels of every scan in the archive of `seed`."""
    return random.Random(f"bulk-noise:{seed}").randbytes(NOISE_BYTES)


def content(doc: BulkDocument, noise: bytes) -> bytes:
    """The bytes of one file: a one-page scanned PDF of exactly `doc.size` bytes (or none)."""
    if doc.size == 0:
        return b""
    created = datetime.fromtimestamp(doc.mtime_ns // 10**9, ROME)
    person = doc.folder.split("/")[1]
    lines = [f"{COMUNE} - Archivio storico del personale", f"Fascicolo {person}",
             f"Documento n. {doc.number}, acquisito il {created:%d/%m/%Y}"]
    start = doc.number * 7919 % (len(noise) - doc.size + 1)
    return make_scanned_pdf(doc.name.removesuffix(".pdf"), lines, created, size=doc.size,
                            noise=memoryview(noise)[start:])


def write_bulk_archive(root: Path, *, count: int, seed: int, previous: str | None = None) -> dict:
    """Make `root` the archive of (count, seed); return {"files", "bytes", "seconds",
    "fingerprint"}. `previous`: the fingerprint of the archive already in `root`; if this
    generator makes the same, only what differs is rewritten (a reseed with the same numbers
    takes seconds), otherwise `root` is replaced."""
    began = time.monotonic()
    docs, noise = plan(count, seed), noise_for(seed)
    mark = fingerprint(docs, noise)
    root = Path(root)
    if previous != mark and (root.exists() or root.is_symlink()):
        _remove(root)
    _sync(root, docs, noise)
    return {"files": len(docs), "bytes": sum(doc.size for doc in docs),
            "seconds": round(time.monotonic() - began, 1), "fingerprint": mark}


def restore_bulk_archive(root: Path, *, count: int, seed: int,
                         expected: str | None = None) -> dict:
    """Make `root` the archive of (count, seed) again: remove what the plan does not hold,
    rewrite each file whose size, mtime or mode differs; return {"rewritten", "removed"}.
    expected: the fingerprint taken when it was written; ValueError (and nothing touched) if
    this generator's differs."""
    docs, noise = plan(count, seed), noise_for(seed)
    if expected is not None and fingerprint(docs, noise) != expected:
        raise ValueError("the historical files were written by another version of the"
                         " generator")
    return _sync(Path(root), docs, noise)


def fingerprint(docs: list[BulkDocument], noise: bytes) -> str:
    """A digest of the plan and of a few files' bytes: two generators with the same
    fingerprint make the same archive (a changed one would rewrite every file of a restore)."""
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(f"{doc.path}\0{doc.size}\0{doc.mtime_ns}\0{doc.mode}\n".encode())
    for doc in [doc for doc in docs[:20] if doc.size][:3]:
        digest.update(content(doc, noise))
    return digest.hexdigest()


def _sync(root: Path, docs: list[BulkDocument], noise: bytes) -> dict:
    """Remove from `root` what `docs` do not hold, write each doc missing or differing in size,
    mtime or mode, and give every folder its mode."""
    planned = {doc.path: doc for doc in docs}
    folders = {prefix for folder in {doc.folder for doc in docs} for prefix in _prefixes(folder)}
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        root.unlink()
    found = _walk_and_prune(root, "", planned, folders) if root.is_dir() else _Walk()
    stale = [doc for doc in docs if found.files.get(doc.path) != _facts(doc)]
    _write(root, stale, noise)
    for folder in folders - found.dirs_ok:
        os.chmod(root / folder, DIR_MODE)
    os.chmod(root, DIR_MODE)
    return {"rewritten": len(stale), "removed": found.removed}


@dataclass
class _Walk:
    files: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path -> (size, mtime_ns, mode)
    dirs_ok: set[str] = field(default_factory=set)     # planned folders found with the right mode
    removed: int = 0


def _walk_and_prune(root: Path, rel: str, planned: dict, folders: set[str],
                    walk: _Walk | None = None) -> _Walk:
    """What is under root/rel, removing every entry the plan does not hold."""
    walk = walk or _Walk()
    with os.scandir(root / rel if rel else root) as entries:
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False) and path in folders:
                if stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) == DIR_MODE:
                    walk.dirs_ok.add(path)
                _walk_and_prune(root, path, planned, folders, walk)
            elif entry.is_file(follow_symlinks=False) and path in planned:
                info = entry.stat(follow_symlinks=False)
                walk.files[path] = (info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode))
            else:
                _remove(Path(entry.path))
                walk.removed += 1
    return walk


def _facts(doc: BulkDocument) -> tuple[int, int, int]:
    return doc.size, doc.mtime_ns, doc.mode


def _prefixes(folder: str) -> list[str]:
    parts = folder.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _write(root: Path, docs: list[BulkDocument], noise: bytes) -> None:
    """Write `docs` under `root`, a folder at a time, on WORKERS threads."""
    _make_dir(root)
    by_folder: dict[str, list[BulkDocument]] = {}
    for doc in docs:
        by_folder.setdefault(doc.folder, []).append(doc)
    with ThreadPoolExecutor(WORKERS) as pool:
        # list(): map re-raises a worker's error only when its result is taken
        list(pool.map(lambda item: _write_folder(root, *item, noise), by_folder.items()))


def _write_folder(root: Path, folder: str, docs: list[BulkDocument], noise: bytes) -> None:
    for prefix in _prefixes(folder):
        _make_dir(root / prefix)
    for doc in docs:
        _write_file(f"{root}/{doc.path}", doc, noise)


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        return
    path.chmod(DIR_MODE)                  # whatever the umask


def _write_file(path: str, doc: BulkDocument, noise: bytes) -> None:
    data = memoryview(content(doc, noise))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, doc.mode)
    try:
        while data:
            data = data[os.write(fd, data):]
        os.fchmod(fd, doc.mode)           # whatever the umask or an earlier mode
        os.utime(fd, ns=(doc.mtime_ns, doc.mtime_ns))
    finally:
        os.close(fd)
