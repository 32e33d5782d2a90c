"""Checking an evidence pack offline, with nothing but this package: every checksum (and no file
the sums do not list), the manifest against its JSON Schema, the journal's hash chain from its
first record, the attestations' signatures and subjects, the page against a new rendering of
the manifest and results, and the link to the previous pack when it is given. The first failure
is reported naming its file."""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path

import jsonschema

from migrate.engine.journal import GENESIS, record_hash
from migrate.errors import MigrateError
from migrate.evidence import html, sign
from migrate.evidence.pack import PUBLIC_KEY, SUMS

SCHEMA = Path(__file__).with_name("manifest.schema.json")


class PackInvalid(MigrateError):
    """One line: the file and what is wrong with it (exit 1)."""


@contextmanager
def opened(where: Path):
    """The pack's directory: as given, or a tar unpacked (the data filter: no links, no paths out)."""
    if where.is_dir():
        yield where
        return
    if not tarfile.is_tarfile(where):
        raise PackInvalid(f"{where}: neither a pack directory nor a tar of one")
    with tempfile.TemporaryDirectory(prefix="migrate-evidence-") as tmp, tarfile.open(where) as tar:
        tar.extractall(tmp, filter="data")
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise PackInvalid(f"{where}: a pack's tar holds one directory")
        yield tops[0]


def check(where: Path, *, previous: Path | None = None, public_key: Path | None = None) -> dict:
    with opened(where) as top:
        digest = _sums(top)
        manifest = _load(top, "manifest.json")
        try:
            jsonschema.validate(manifest, json.loads(SCHEMA.read_text()))
        except jsonschema.ValidationError as exc:
            raise PackInvalid(f"manifest.json: does not match its schema at {'/'.join(map(str, exc.path)) or 'top'}:"
                              f" {exc.message[:200]}") from None
        _journal(top, manifest)
        signed = _attestations(top, manifest, public_key)
        results = {name[len("results/"):-len(".json")]: _load(top, name) for name in manifest["files"]}
        page = _page(top, manifest, results)
        if previous is not None:
            _previous(manifest, previous)
    return {"pack": str(where), "sha256": digest, "run_id": manifest["run_id"], "wave": manifest["wave"],
            "signed": signed, "journal_records": manifest["journal"]["records"], "page": page}


def _page(top: Path, manifest: dict, results: dict) -> str:
    """The page must be the one its JSON gives: rendered again and compared, when this tool has
    the template the pack was made with (another version words it otherwise)."""
    if manifest["tool"].get("page_template_sha256") != html.template_sha256():
        return "made with another page template: not rendered again (its checksum and signature still hold)"
    if (top / "report.html").read_text() != html.render(manifest, results):
        raise PackInvalid("report.html: differs from the page the manifest and results give")
    return "rendered again from manifest.json and results/: identical"


def _sums(top: Path) -> str:
    path = top / SUMS
    if not path.is_file():
        raise PackInvalid(f"{SUMS}: missing")
    body = path.read_bytes()
    listed = {}
    for number, line in enumerate(body.decode(errors="replace").splitlines(), 1):
        sha, sep, name = line.partition("  ")
        if not sep or len(sha) != 64:
            raise PackInvalid(f"{SUMS}: line {number} is not '<sha256>  <file>'")
        listed[name] = sha
    for name, sha in sorted(listed.items()):
        file = top / name
        if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != sha:
            wrong = f"listed in {SUMS}, missing" if not file.is_file() else f"SHA-256 differs from {SUMS}"
            raise PackInvalid(f"{name}: {wrong}")
    extra = sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file()
                   and str(p.relative_to(top)) not in listed and p.name != SUMS)
    if extra:
        raise PackInvalid(f"{extra[0]}: not listed in {SUMS}")
    return hashlib.sha256(body).hexdigest()


def _load(top: Path, name: str) -> dict:
    try:
        return json.loads((top / name).read_text())
    except (OSError, ValueError) as exc:
        raise PackInvalid(f"{name}: not readable JSON ({type(exc).__name__})") from None


def _journal(top: Path, manifest: dict) -> None:
    """From the first record: each links to the one before; the run's own are hashed again."""
    prev, seq, own = GENESIS, 0, 0
    for number, text in enumerate((top / "journal.jsonl").read_text().splitlines(), 1):
        where = f"journal.jsonl: line {number}"
        try:
            line = json.loads(text)
        except ValueError:
            raise PackInvalid(f"{where}: not JSON") from None
        seq += 1
        if line.get("seq") != seq or line.get("prev_hash") != prev:
            raise PackInvalid(f"{where}: the chain breaks (record {seq} missing or out of order)")
        if not line.get("elided"):
            own += 1
            if record_hash(prev, seq, line["run_id"], line["wave"], line["step"], line["kind"], line["body"],
                           line["at"]) != line["hash"] or line["run_id"] != manifest["run_id"]:
                raise PackInvalid(f"{where}: record {seq} was altered")
        prev = line["hash"]
    facts = manifest["journal"]
    if prev != facts["head_hash"] or own != facts["records"] or seq != facts["last_seq"]:
        raise PackInvalid("journal.jsonl: does not end where manifest.json says (records cut or added)")


def _attestations(top: Path, manifest: dict, public_key: Path | None) -> bool:
    envelopes = sorted((top / "attestations").glob("*.dsse.json")) if (top / "attestations").is_dir() else []
    if not manifest["signing"]["signed"]:
        if envelopes:
            raise PackInvalid(f"attestations/{envelopes[0].name}: the manifest says the pack is not signed")
        return False
    if not envelopes:
        raise PackInvalid("attestations/: the manifest says the pack is signed, and there is no attestation")
    public = (public_key or top / PUBLIC_KEY).read_bytes()
    if sign.key_id(public) != manifest["signing"]["key_id"]:
        raise PackInvalid(f"{PUBLIC_KEY if public_key is None else public_key}: not the key the manifest names")
    for path in envelopes:
        name = f"attestations/{path.name}"
        try:
            statement = sign.open_envelope(_load(top, name), public)
        except ValueError as exc:
            raise PackInvalid(f"{name}: {exc}") from None
        for subject in statement["subject"]:
            file = top / subject["name"]
            if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != subject["digest"]["sha256"]:
                raise PackInvalid(f"{subject['name']}: differs from what {name} attests")
    return True


def _previous(manifest: dict, previous: Path) -> None:
    with opened(previous) as top:
        digest = hashlib.sha256((top / SUMS).read_bytes()).hexdigest() if (top / SUMS).is_file() else None
    link = manifest["previous_pack"]
    if link is None or link["sha256"] != digest:
        raise PackInvalid(f"manifest.json: previous_pack does not name {previous} (its digest is {digest})")
