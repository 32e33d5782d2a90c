"""The electronic personnel file: which documents each person's file holds, and the archive of
their PDFs on disk with its index rows (path, size, SHA-256) for `personnel_document`."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from datetime import date, timedelta
from pathlib import Path

from migrate.lab.data.dates import local_time, overlaps, rand_date
from migrate.lab.data.formats import make_pdf
from migrate.lab.data.model import Hr, Person, person_of
from migrate.lab.data.reference import COMUNE, DOC_KINDS

# Where the source application host keeps the archive (see CONTRACT.md).
ARCHIVE_URI_PREFIX = "file:///srv/personale/documents/"
DOCUMENT_COLUMNS = ["document_id", "employee_id", "family_member_id", "kind", "title",
                    "doc_date", "protocol_number", "rel_path", "size_bytes", "sha256",
                    "storage_uri", "mime_type", "created_at"]


def make_documents(rng: random.Random, hr: Hr) -> None:
    """What each personnel file holds; files are written later, once ids are known."""
    for person in hr.people:
        first = person.contracts[0]
        _doc(hr, person, "documento-identita", first.start, "Documento di identità")
        if rng.random() < 0.6:
            _doc(hr, person, "curriculum", first.start - timedelta(days=rng.randint(20, 90)),
                 "Curriculum vitae")
        for contract in person.contracts:
            _doc(hr, person, "contratto", contract.start,
                 f"Contratto individuale di lavoro ({contract.contract_type})")
            for year in range(max(contract.start.year, hr.start.year), hr.end.year):
                if overlaps(contract.start, contract.end, date(year, 12, 31), date(year, 12, 31)):
                    _doc(hr, person, "valutazione",
                         date(year + 1, 2, 15) + timedelta(days=rng.randint(0, 40)),
                         f"Scheda di valutazione della performance {year}")
            if rng.random() < 0.2:
                when = rand_date(rng, max(contract.start, hr.start),
                                 min(contract.end or hr.end, hr.end))
                _doc(hr, person, "giudizio-idoneita", when,
                     "Giudizio di idoneità alla mansione (medico competente)")
        for index, member in enumerate(person.family):
            if member[6]:                                   # disability flag
                _doc(hr, person, "verbale-104",
                     rand_date(rng, max(first.start, hr.start), hr.end),
                     "Verbale di accertamento L. 104/1992", member_index=index)
    for appointment in hr.appointments:
        _doc(hr, person_of(hr, appointment[0]), "atto-nomina", appointment[3], "Atto di nomina")
    for delegation in hr.delegations:
        _doc(hr, person_of(hr, delegation[0]), "delega-sindacale", delegation[3], "Delega sindacale")
    for record in hr.disciplinary:
        if record[4] is not None:
            _doc(hr, person_of(hr, record[0]), "provvedimento-disciplinare", record[4],
                 "Provvedimento disciplinare")


def _doc(hr: Hr, person: Person, kind: str, when: date, title: str,
         member_index: int | None = None) -> None:
    hr.documents.append({"person": person, "kind": kind, "date": min(when, hr.end),
                         "title": title, "member_index": member_index})


_DOC_PHRASES = [
    "Visto il d.lgs. 30 marzo 2001, n. 165 e successive modificazioni;",
    "Visto il CCNL Funzioni Locali 2019-2021 sottoscritto il 16 novembre 2022;",
    "Richiamato il regolamento sull'ordinamento degli uffici e dei servizi;",
    "Dato atto che il presente documento è conservato nel fascicolo personale elettronico;",
    "Accertata la regolarità della documentazione prodotta dall'interessato;",
    "Vista la dotazione organica approvata dalla Giunta comunale;",
    "Considerato che l'istruttoria si è conclusa senza rilievi;",
    "Il/la dipendente ha preso visione dell'informativa sul trattamento dei dati personali.",
    "Firmato digitalmente ai sensi del d.lgs. 82/2005 (Codice dell'amministrazione digitale).",
]


def _document_pdf(doc: dict, document_id: int, protocol: int, seed_value: int) -> bytes:
    rng = random.Random(f"doc:{seed_value}:{document_id}")
    person = doc["person"]
    lines = [f"{COMUNE} - Servizio Personale",
             f"Protocollo n. {protocol} del {doc['date']:%d/%m/%Y}",
             f"Dipendente: {person.surname} {person.given_name} (matricola {person.code})",
             f"Codice fiscale: {person.tax_code}", ""]
    lines += [rng.choice(_DOC_PHRASES) for _ in range(rng.randint(3, 45))]
    if doc["kind"] == "valutazione":
        lines.append(f"Punteggio complessivo: {rng.randint(60, 100)}/100")
    lines += ["", "Il Responsabile del Servizio Personale"]
    return make_pdf(doc["title"], lines, local_time(doc["date"], 43200))


def _empty_dir(path: Path) -> None:
    resolved = path.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise ValueError(f"refusing to empty {resolved}")
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def write_archive(hr: Hr, archive_dir: Path, seed_value: int) -> tuple[list[tuple], dict]:
    """Write every document as a PDF; return personnel_document rows and the totals."""
    _empty_dir(archive_dir)
    # Ids and protocol numbers follow the date order, as a protocol register would.
    ordered = sorted(hr.documents, key=lambda d: (d["date"], d["person"].employee_id,
                                                   DOC_KINDS.index(d["kind"]), d["title"]))
    rows, total_bytes = [], 0
    for document_id, doc in enumerate(ordered, start=1):
        person = doc["person"]
        protocol = 100000 + document_id
        blob = _document_pdf(doc, document_id, protocol, seed_value)
        rel_path = f"{doc['date'].year}/{person.code}/{doc['kind']}-{document_id}.pdf"
        target = archive_dir / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
        # A stable mtime: rsync-style comparisons see the same tree on every seed.
        stamp = local_time(doc["date"], 43200).timestamp()
        os.utime(target, (stamp, stamp))
        member = (hr.member_ids[(person.employee_id, doc["member_index"])]
                  if doc["member_index"] is not None else None)
        rows.append((document_id, person.employee_id, member, doc["kind"], doc["title"],
                     doc["date"], protocol, rel_path, len(blob),
                     hashlib.sha256(blob).hexdigest(), ARCHIVE_URI_PREFIX + rel_path,
                     "application/pdf", local_time(doc["date"], 39600 + document_id % 7200)))
        total_bytes += len(blob)
    return rows, {"files": len(rows), "bytes": total_bytes}
