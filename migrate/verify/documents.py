"""Documents: the manifest written while staging, against the bucket (presence, size and our
own SHA-256 of the bytes: the object store's checksums are not trusted) and against the source
archive (every file there must be in the manifest).

A difference never names a document by its path (it can name a person and the kind of
document): a document of the manifest goes by its index and SHA-256, any other file by its
position in the sorted listing it was found in (see migrate.model.document_names)."""

from __future__ import annotations

import json

from migrate.model import document_names as names
from migrate.verify.model import Difference, Section

RESTAGE = "stage the document again from the source archive (run the archive step again)"


def _document(system: str, index: int, f: dict, problem: str, remedy: str, detail: str = "") -> Difference:
    return Difference("documents", system, names.MANIFEST, problem, remedy,
                      key=names.document_key(index, f["sha256"]), detail=detail)


def _unlisted(system: str, where: str, listing: dict, position: int, path: str, problem: str,
              remedy: str) -> Difference:
    """`listing`: path -> size, or path -> entry of a host scan (size, and sha256 when hashed)."""
    found = listing[path]
    size, sha = (found, None) if isinstance(found, int) else (found["size"], found.get("sha256"))
    return Difference("documents", system, where, problem, remedy,
                      key=names.file_key(position, len(listing), size, sha))


def compare(system: str, manifest: dict, objects: dict[str, int], hashes: dict[str, str] | None,
            on_source: dict[str, int] | None) -> tuple[Section, list[Difference]]:
    """manifest: {"files": [{path, size, sha256, key}]}; objects: bucket key -> size under the
    archive prefix; hashes: key -> SHA-256 (None at counts depth); on_source: path -> size."""
    files = manifest.get("files", [])
    diffs = []
    for i, f in enumerate(files):
        diffs += _check_file(system, i, f, objects, hashes)
    listed = {f["key"] for f in files}
    for position, key in enumerate(sorted(objects)):
        if key not in listed and not key.endswith("/manifest.json"):
            diffs.append(_unlisted(system, names.BUCKET, objects, position, key, "extra_in_bucket",
                                   "delete it from the staging prefix: it is not in the manifest"))
    if on_source is not None:
        in_manifest = {f["path"]: i for i, f in enumerate(files)}
        for position, path in enumerate(sorted(on_source)):
            i = in_manifest.get(path)
            if i is None:
                diffs.append(_unlisted(system, names.SOURCE, on_source, position, path, "not_staged", RESTAGE))
            elif on_source[path] != files[i]["size"]:
                diffs.append(_document(system, i, files[i], "changed_on_source_since_staging",
                                       "the source was not frozen: stage the archive again"))
    section = Section("documents", system, "archive", "differs" if diffs else "ok",
                      {"files": len(files), "bytes": sum(f["size"] for f in files),
                       "hashed": hashes is not None, "source_files": len(on_source or {})})
    return section, diffs


RESTORE = "restore the document again (run the wave, or its restore-archive step, again)"


def compare_restored(system: str, manifest: dict, sizes: dict[str, int], hashes: dict[str, str] | None,
                     where: str) -> tuple[Section, list[Difference]]:
    """Every file of the manifest on the target host with its size (and, at full depth, its
    SHA-256). Other files there are the application's own and are not judged."""
    diffs = []
    for i, f in enumerate(manifest.get("files", [])):
        if f["path"] not in sizes:
            diffs.append(_document(system, i, f, "missing_on_target_host", RESTORE))
        elif sizes[f["path"]] != f["size"]:
            diffs.append(_document(system, i, f, "size_differs_on_target_host", RESTORE,
                                   detail=f"manifest {f['size']} bytes, target host {sizes[f['path']]} bytes"))
        elif hashes is not None and hashes.get(f["path"]) != f["sha256"]:
            diffs.append(_document(system, i, f, "altered_on_target_host", RESTORE,
                                   detail="SHA-256 on the target host differs from the manifest"))
    section = Section("documents", system, "restored archive", "differs" if diffs else "ok",
                      {"where": where, "files": len(manifest.get("files", [])), "hashed": hashes is not None})
    return section, diffs


def _check_file(system: str, i: int, f: dict, objects: dict[str, int],
                hashes: dict[str, str] | None) -> list[Difference]:
    if f["key"] not in objects:
        return [_document(system, i, f, "missing_in_bucket", RESTAGE)]
    if objects[f["key"]] != f["size"]:
        return [_document(system, i, f, "size_differs", RESTAGE,
                          detail=f"manifest {f['size']} bytes, bucket {objects[f['key']]} bytes")]
    if hashes is not None and hashes.get(f["key"]) != f["sha256"]:
        return [_document(system, i, f, "altered_in_bucket", RESTAGE,
                          detail="SHA-256 of the object differs from the manifest")]
    return []


def missing_manifest(system: str, key: str) -> tuple[Section, list[Difference]]:
    return (Section("documents", system, "archive", "differs", {"manifest": key}),
            [Difference("documents", system, key, "manifest_missing",
                        "the archive was not staged in this run: run the wave (or its archive step) again")])


def parse_manifest(body: bytes) -> dict:
    return json.loads(body)


# --- the packed layout: checked by its manifest, no document downloaded ---------------------

RESYNC = "run the archive's staging again (the warm wave's archive-delta step, or the wave)"


def compare_packed(system: str, manifest: dict, objects: dict[str, int], pack_hashes: dict[str, str] | None,
                   on_source: dict[str, dict] | None) -> tuple[Section, list[Difference]]:
    """The packs against the bucket (present, size, at full depth their SHA-256), and the source
    listing against the manifest (size and mtime; at full depth the SHA-256 computed on the host)."""
    files, diffs = manifest.get("files", []), []
    holds: dict[str, int] = {}
    for f in files:
        holds[f["pack"]] = holds.get(f["pack"], 0) + 1
    for p in manifest.get("packs", []):
        problem = ("missing_in_bucket" if p["key"] not in objects
                   else "size_differs" if objects[p["key"]] != p["size"]
                   else "altered_in_bucket" if pack_hashes is not None and pack_hashes.get(p["key"]) != p["sha256"]
                   else None)
        if problem:
            diffs.append(Difference("documents", system, p["key"], problem, RESTAGE,
                                    detail=f"pack of {holds.get(p['key'], 0)} document(s)"))
    if on_source is not None:
        diffs += _against_source(system, files, on_source)
    section = Section("documents", system, "archive", "differs" if diffs else "ok",
                      {"layout": "packed", "files": len(files), "bytes": sum(f["size"] for f in files),
                       "packs": len(manifest.get("packs", [])), "hashed": pack_hashes is not None,
                       "source_files": len(on_source or {})})
    return section, diffs


def _against_source(system: str, files: list[dict], on_source: dict[str, dict]) -> list[Difference]:
    diffs, listed = [], {f["path"] for f in files}
    for position, path in enumerate(sorted(on_source)):
        if path not in listed:
            diffs.append(_unlisted(system, names.SOURCE, on_source, position, path, "not_staged", RESYNC))
    for i, f in enumerate(files):
        s = on_source.get(f["path"])
        if s is None:
            diffs.append(_document(system, i, f, "gone_from_source_since_staging", RESYNC))
        elif (f["size"], f["mtime_ns"]) != (s["size"], s["mtime_ns"]):
            diffs.append(_document(system, i, f, "changed_on_source_since_staging", RESYNC))
        elif "sha256" in s and s["sha256"] != f["sha256"]:
            diffs.append(_document(system, i, f, "altered_on_source_since_staging", RESYNC,
                                   detail="same size and mtime, different SHA-256"))
    return diffs


def compare_restored_packed(system: str, manifest: dict, on_host: dict[str, dict], where: str,
                            hashed: bool) -> tuple[Section, list[Difference]]:
    """The target host's tree, listed and hashed there, against the manifest: missing, extra,
    altered (SHA-256), and a size, mode or mtime that differs."""
    files, diffs = manifest.get("files", []), []
    for i, f in enumerate(files):
        if f["path"] in on_host:
            diffs += _restored_differs(system, i, f, on_host[f["path"]], hashed)
        else:
            diffs.append(_document(system, i, f, "missing_on_target_host", RESTORE))
    listed = {f["path"] for f in files}
    for position, path in enumerate(sorted(on_host)):
        if path not in listed:
            diffs.append(_unlisted(system, names.TARGET, on_host, position, path, "extra_on_target_host",
                                   "remove it from the target path, or stage the archive again if the source has it"))
    section = Section("documents", system, "restored archive", "differs" if diffs else "ok",
                      {"where": where, "files": len(files), "on_host": len(on_host), "hashed": hashed})
    return section, diffs


def _restored_differs(system: str, i: int, f: dict, h: dict, hashed: bool) -> list[Difference]:
    if h["size"] != f["size"]:
        return [_document(system, i, f, "size_differs_on_target_host", RESTORE,
                          detail=f"manifest {f['size']} bytes, target host {h['size']} bytes")]
    if hashed and h.get("sha256") != f["sha256"]:
        return [_document(system, i, f, "altered_on_target_host", RESTORE,
                          detail="SHA-256 on the target host differs from the manifest")]
    if (h["mode"], h["mtime_ns"]) != (f["mode"], f["mtime_ns"]):
        return [_document(system, i, f, "metadata_differs_on_target_host", RESTORE,
                          detail=f"mode {oct(h['mode'])} mtime {h['mtime_ns']} on the host,"
                                 f" {oct(f['mode'])} {f['mtime_ns']} in the manifest")]
    return []
