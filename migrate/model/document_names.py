"""How a personnel document is named wherever the tool writes: never by its path.

A document's path carries an employee code and the kind of document (a medical fitness
assessment in an employee's folder): special-category data tied to a person. The journal, the
verification report, the evidence pack and every error line therefore name a document by its
place in the archive's manifest and the start of its SHA-256: `document #1234 (sha256
3fa9c1d2e4f5a6b7…)`, where 1234 is its index in the manifest's "files" list, counted from 0
(`jq '.files[1234]'` on the manifest shows it). The operator's terminal shows the path only when
asked: `migrate verify|report WAVE --show-paths` (migrate.verify.paths), which writes it nowhere.

A file that no manifest holds (on the source and not staged yet, on the target host and not
restored by us, in the bucket and not listed) is named by its position in the listing it was
found in, sorted by path, with its size and, when it was hashed, its SHA-256: `file #7 of the
source listing (2,345 bytes)`. Not by an unkeyed hash of its path: paths follow a pattern
(folder per employee code, file per kind of document) and are guessed and hashed in seconds. Not
by a keyed hash either: its key would have to be kept beside the journal for the name to be
resolved later, and then it protects nothing. The position needs only the same listing again,
which holds while the wave is verified (the source is frozen, the target written by us). The
number of files listed and the size go with it, so a listing that has changed since is refused
rather than misread (a rename to a name elsewhere in the order, same count and size, is not seen).

A verification's difference names a document like a row: `object` says where it was found (one
of the names below, as a table name does for a row) and `key` identifies it there.
"""

from __future__ import annotations

import functools

SHOWN = 16                       # hex digits of a SHA-256 shown: enough to tell documents apart

MANIFEST = "manifest"            # key: {"document": index, "sha256": prefix}
SOURCE = "source listing"        # key: {"file": position, "of": files listed, "size": bytes[, "sha256": prefix]}
TARGET = "target host listing"
BUCKET = "bucket listing"
LISTINGS = (SOURCE, TARGET, BUCKET)


def document(index: int, sha256: str) -> str:
    """A document of the manifest, in a message."""
    return f"document #{index} (sha256 {sha256[:SHOWN]}…)"


def in_manifest(files: list[dict], path: str) -> str:
    """The document at `path` of a manifest's files, in a message (the index found by a scan:
    for the one document an error names)."""
    index = next(i for i, f in enumerate(files) if f["path"] == path)
    return document(index, files[index]["sha256"])


class Listing:
    """A listing (path -> size) whose files no manifest holds yet, to name them in messages."""

    def __init__(self, where: str, sizes: dict[str, int]):
        self.where, self.sizes = where, sizes

    @functools.cached_property
    def positions(self) -> dict[str, int]:
        return {path: i for i, path in enumerate(sorted(self.sizes))}

    def name(self, path: str) -> str:
        return f"file #{self.positions[path]} of the {self.where} ({self.sizes[path]:,} bytes)"


def document_key(index: int, sha256: str) -> dict:
    return {"document": index, "sha256": sha256[:SHOWN]}


def file_key(position: int, listed: int, size: int, sha256: str | None = None) -> dict:
    """`listed`: how many files the listing had (a listing taken again must have as many)."""
    return {"file": position, "of": listed, "size": size, **({"sha256": sha256[:SHOWN]} if sha256 else {})}


def without(text: str, secret: str, name: str) -> str:
    """A message from below (the object store's, say) with a key or path that names a document
    replaced by the name it may go by."""
    return text.replace(secret, name) if secret else text
