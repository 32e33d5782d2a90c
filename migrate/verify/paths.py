"""The paths behind the documents a verification names: for the operator's terminal only.

A report names a document by its index in the archive's manifest, and any other file by its
position in the sorted listing it was found in (migrate.model.document_names): a path can name
a person and the kind of document. `migrate verify|report WAVE --show-paths` resolves them here
when they are shown: the manifest is read again from the bucket (and must still have the SHA-256
the report holds), a listing is taken again on its host or in the bucket. Nothing here is
written anywhere; the CLI prints it and forgets it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath

from migrate.adapters import cloud
from migrate.config import Inventory
from migrate.model import document_names as names
from migrate.verify import probes

CHANGED = "(not shown: the manifest is not the one verified)"
MOVED = "(not shown: the listing changed since the verification)"


def resolve(inv: Inventory, report: dict) -> list[tuple[dict, str]]:
    """(difference, its path or why it is not shown) for every document the report names."""
    lookup = Lookup(inv, report)
    return [(d, lookup.path(d)) for d in report["differences"]
            if d["area"] == "documents" and (d["object"] == names.MANIFEST or d["object"] in names.LISTINGS)]


class Lookup:
    """Each manifest and listing read once, when a difference first needs it."""

    def __init__(self, inv: Inventory, report: dict):
        self.inv = inv
        self.read = {s["database"]: s["facts"] for s in report["sections"]
                     if s["area"] == "documents" and "manifest" in s["facts"]}
        self.s3 = functools.cache(lambda: cloud.client(inv))
        self.manifest = functools.cache(self._manifest)
        self.listing = functools.cache(self._listing)

    def path(self, d: dict) -> str:
        system, key = d["database"], d["key"]
        if system not in self.read:
            return "(not shown: the report names no manifest for it)"
        if d["object"] == names.MANIFEST:
            files = self.manifest(system)
            i = key["document"]
            good = files is not None and i < len(files) and files[i]["sha256"].startswith(key["sha256"])
            return files[i]["path"] if good else CHANGED
        listing = self.listing(system, d["object"])
        paths = sorted(listing)
        found = paths[key["file"]] if key["file"] < len(paths) else None
        same = found is not None and len(paths) == key["of"] and listing[found] == key["size"]
        return found if same else MOVED

    def _manifest(self, system: str) -> list[dict] | None:
        facts = self.read[system]
        body = b"".join(cloud.iter_object(self.s3(), self.inv.spec.storage.bucket, facts["manifest"]))
        if hashlib.sha256(body).hexdigest() != facts["manifest_sha256"]:
            return None
        return json.loads(body).get("files", [])

    def _listing(self, system: str, where: str) -> dict[str, int]:
        """path -> size, as the verification listed it (a bucket key shown below the archive's prefix)."""
        archive, app = self.inv.spec.systems[system].archive, self.inv.spec.systems[system].app
        if where == names.SOURCE:
            return probes.archive_listing(self.inv, archive.host, archive.path)
        if where == names.TARGET:
            return probes.archive_listing(self.inv, app.target_host, archive.target_path)
        prefix = posixpath.dirname(self.read[system]["manifest"]) + "/"
        sizes = cloud.object_sizes(self.s3(), self.inv.spec.storage.bucket, prefix)
        return {key[len(prefix):]: size for key, size in sizes.items()}
