"""Writing an evidence pack: a directory, then a tar of it, then its digest in the journal.

Layout: manifest.json, results/*.json, journal.jsonl, report.html (rendered from the manifest
and results alone), keys/signing.pub.pem and attestations/<phase>.dsse.json when signed, and
SHA256SUMS over every other file. The pack's digest is the SHA-256 of its SHA256SUMS; the next
pack of the same inventory names it, so packs form a chain. The directory is written under a
temporary name and renamed when whole: a pack is there entirely or not at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

from migrate.config import Inventory
from migrate.evidence import collect, html, sign

RECORD = "evidence_pack"
SUMS = "SHA256SUMS"
PUBLIC_KEY = "keys/signing.pub.pem"
PHASES = {
    "preflight": ("results/preflight.json",),
    "plan": ("results/plan.json",),
    "transfer": ("results/transfer.json", "results/documents.json", "results/replication.json"),
    "verification": ("results/verification.json", "results/reconciliation.json", "results/legal_evidence.json"),
    "cutover": ("results/cutover.json", "manifest.json", "journal.jsonl", "report.html"),
    "rollback": ("results/rollback.json",),
}


def evidence_dir(inv: Inventory) -> Path:
    return inv.state_dir / "evidence"


def previous_pack(journal) -> dict | None:
    """The last pack this inventory wrote (any wave): the link of the chain."""
    found = [r for r in journal.records() if r.kind == RECORD]
    if not found:
        return None
    return {"sha256": found[-1].data["sha256"], "run_id": found[-1].run_id, "wave": found[-1].wave}


def _signing(inv: Inventory):
    field = inv.spec.evidence.signing_key
    if not field:
        return None, {"signed": False, "key_id": None, "algorithm": None,
                      "note": "not signed: no evidence.signing_key in the spec; the checksums prove integrity"
                              " only against accidents, not against someone who rewrites the whole pack"}
    key = sign.load_private(inv.path / field, "evidence.signing_key")
    return key, {"signed": True, "key_id": sign.key_id(sign.public_pem(key)), "algorithm": "ed25519",
                 "note": "each phase's attestation (in-toto Statement v1, DSSE) is signed; compare keys/signing.pub.pem"
                         " with the key the Comune published"}


def build(inv: Inventory, journal, wave: str, *, run_id: str | None = None, out: Path | None = None) -> dict:
    key, signing = _signing(inv)
    gathered = collect.gather(inv, journal, wave, run_id, previous=previous_pack(journal), signing=signing,
                              now=time.time())
    manifest = gathered.manifest
    final = out or evidence_dir(inv) / f"{wave}-{manifest['run_id']}-{manifest['generated_at'][:19].replace(':', '')}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    files = _contents(gathered, key)
    for name, body in files.items():
        _write(partial / name, body)
    sums = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files)).encode()
    _write(partial / SUMS, sums)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    tar = final.with_name(final.name + ".tar")
    tar.write_bytes(tar_of(final))
    digest = hashlib.sha256(sums).hexdigest()
    journal.append(manifest["run_id"], wave, RECORD, {"sha256": digest, "files": len(files) + 1,
                                                      "bytes": sum(map(len, files.values())) + len(sums),
                                                      "signed": signing["signed"], "path": str(final)})
    return {"path": str(final), "tar": str(tar), "sha256": digest, "files": len(files) + 1,
            "bytes": tar.stat().st_size, "signed": signing["signed"]}


def _contents(gathered: collect.Gathered, key) -> dict[str, bytes]:
    files = {f"results/{name}.json": _json(body) for name, body in gathered.results.items()}
    files["manifest.json"] = _json(gathered.manifest)
    files["journal.jsonl"] = b"".join(json.dumps(line, sort_keys=True).encode() + b"\n"
                                      for line in gathered.journal_lines)
    # From the bytes as written (keys sorted): `verify` renders the same page from the same files.
    results = {name: json.loads(files[f"results/{name}.json"]) for name in gathered.results}
    files["report.html"] = html.render(json.loads(files["manifest.json"]), results).encode()
    if key is not None:
        files[PUBLIC_KEY] = sign.public_pem(key)
        run = {"wave": gathered.manifest["wave"], "run_id": gathered.manifest["run_id"]}
        for phase, names in PHASES.items():
            subjects = {n: hashlib.sha256(files[n]).hexdigest() for n in names if n in files}
            if subjects:
                body = sign.statement(subjects, phase, run)
                files[f"attestations/{phase}.dsse.json"] = _json(sign.envelope(key, body))
    return files


def _json(data) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def tar_of(directory: Path) -> bytes:
    """The directory as one tar (sorted names, no owner, the pack's own mtime): the same pack
    gives the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f"{directory.name}/{path.relative_to(directory)}")
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, int(directory.stat().st_mtime)
            with path.open("rb") as f:
                tar.addfile(info, f)
    return buffer.getvalue()
