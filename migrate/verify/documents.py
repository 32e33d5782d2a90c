"""Documents: the manifest written while staging, against the bucket (presence, size and our
own SHA-256 of the bytes: the object store's checksums are not trusted) and against the source
archive (every file there must be in the manifest)."""

from __future__ import annotations

import json

from migrate.verify.model import Difference, Section

RESTAGE = "stage the document again from the source archive (run the archive step again)"


def compare(system: str, manifest: dict, objects: dict[str, int], hashes: dict[str, str] | None,
            on_source: dict[str, int] | None) -> tuple[Section, list[Difference]]:
    """manifest: {"files": [{path, size, sha256, key}]}; objects: bucket key -> size under the
    archive prefix; hashes: key -> SHA-256 (None at counts depth); on_source: path -> size."""
    files = manifest.get("files", [])
    diffs = []
    for f in files:
        diffs += _check_file(system, f, objects, hashes)
    listed = {f["key"] for f in files}
    for key in sorted(set(objects) - listed):
        if not key.endswith("/manifest.json"):
            diffs.append(Difference("documents", system, key, "extra_in_bucket",
                                    "delete it from the staging prefix: it is not in the manifest"))
    if on_source is not None:
        in_manifest = {f["path"]: f["size"] for f in files}
        for path in sorted(on_source):
            if path not in in_manifest:
                diffs.append(Difference("documents", system, path, "not_staged", RESTAGE))
            elif on_source[path] != in_manifest[path]:
                diffs.append(Difference("documents", system, path, "changed_on_source_since_staging",
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
    for f in manifest.get("files", []):
        if f["path"] not in sizes:
            diffs.append(Difference("documents", system, f["path"], "missing_on_target_host", RESTORE))
        elif sizes[f["path"]] != f["size"]:
            diffs.append(Difference("documents", system, f["path"], "size_differs_on_target_host", RESTORE,
                                    detail=f"manifest {f['size']} bytes, target host {sizes[f['path']]} bytes"))
        elif hashes is not None and hashes.get(f["path"]) != f["sha256"]:
            diffs.append(Difference("documents", system, f["path"], "altered_on_target_host", RESTORE,
                                    detail="SHA-256 on the target host differs from the manifest"))
    section = Section("documents", system, "restored archive", "differs" if diffs else "ok",
                      {"where": where, "files": len(manifest.get("files", [])), "hashed": hashes is not None})
    return section, diffs


def _check_file(system: str, f: dict, objects: dict[str, int], hashes: dict[str, str] | None) -> list[Difference]:
    if f["key"] not in objects:
        return [Difference("documents", system, f["path"], "missing_in_bucket", RESTAGE)]
    if objects[f["key"]] != f["size"]:
        return [Difference("documents", system, f["path"], "size_differs", RESTAGE,
                           detail=f"manifest {f['size']} bytes, bucket {objects[f['key']]} bytes")]
    if hashes is not None and hashes.get(f["key"]) != f["sha256"]:
        return [Difference("documents", system, f["path"], "altered_in_bucket", RESTAGE,
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
    diffs, listed = [], {f["path"]: f for f in files}
    for path in sorted(set(on_source) - set(listed)):
        diffs.append(Difference("documents", system, path, "not_staged", RESYNC))
    for path in sorted(set(listed) - set(on_source)):
        diffs.append(Difference("documents", system, path, "gone_from_source_since_staging", RESYNC))
    for path in sorted(set(listed) & set(on_source)):
        f, s = listed[path], on_source[path]
        if (f["size"], f["mtime_ns"]) != (s["size"], s["mtime_ns"]):
            diffs.append(Difference("documents", system, path, "changed_on_source_since_staging", RESYNC))
        elif "sha256" in s and s["sha256"] != f["sha256"]:
            diffs.append(Difference("documents", system, path, "altered_on_source_since_staging", RESYNC,
                                    detail="same size and mtime, different SHA-256"))
    return diffs


def compare_restored_packed(system: str, manifest: dict, on_host: dict[str, dict], where: str,
                            hashed: bool) -> tuple[Section, list[Difference]]:
    """The target host's tree, listed and hashed there, against the manifest: missing, extra,
    altered (SHA-256), and a size, mode or mtime that differs, each named by path."""
    files, diffs = {f["path"]: f for f in manifest.get("files", [])}, []
    for path in sorted(set(files) - set(on_host)):
        diffs.append(Difference("documents", system, path, "missing_on_target_host", RESTORE))
    for path in sorted(set(on_host) - set(files)):
        diffs.append(Difference("documents", system, path, "extra_on_target_host",
                                "remove it from the target path, or stage the archive again if the source has it"))
    for path in sorted(set(files) & set(on_host)):
        f, h = files[path], on_host[path]
        if h["size"] != f["size"]:
            diffs.append(Difference("documents", system, path, "size_differs_on_target_host", RESTORE,
                                    detail=f"manifest {f['size']} bytes, target host {h['size']} bytes"))
        elif hashed and h.get("sha256") != f["sha256"]:
            diffs.append(Difference("documents", system, path, "altered_on_target_host", RESTORE,
                                    detail="SHA-256 on the target host differs from the manifest"))
        elif (h["mode"], h["mtime_ns"]) != (f["mode"], f["mtime_ns"]):
            diffs.append(Difference("documents", system, path, "metadata_differs_on_target_host", RESTORE,
                                    detail=f"mode {oct(h['mode'])} mtime {h['mtime_ns']} on the host,"
                                           f" {oct(f['mode'])} {f['mtime_ns']} in the manifest"))
    section = Section("documents", system, "restored archive", "differs" if diffs else "ok",
                      {"where": where, "files": len(files), "on_host": len(on_host), "hashed": hashed})
    return section, diffs
