"""The verification report: JSON for machines, a readable summary for people, both written
next to the journal (write-temp-then-rename) and announced in the journal with their SHA-256.

Nothing in a report comes from the data except primary-key values and hashes: differences
carry object names, column names and counts (see model.Difference)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from migrate.config import Inventory
from migrate.errors import MigrateError
from migrate.verify.model import Difference, Report

RECORD_KIND = "verification"


def reports_dir(inv: Inventory) -> Path:
    return inv.state_dir / "reports"


def text(report: dict) -> str:
    """The readable summary of a report (as JSON data, so a stored report renders the same)."""
    lines = [_headline(report)]
    for database in sorted({t["database"] for t in report["tables"]}):
        lines.append(f"\ndatabase {database}")
        lines.append(f"  {'table':<36} {'status':<8} {'source rows':>12} {'target rows':>12} {'seconds':>8}")
        for t in (t for t in report["tables"] if t["database"] == database):
            lines.append(f"  {t['table']:<36} {t['status']:<8} {t['source_rows']:>12,} {t['target_rows']:>12,}"
                         f" {t['seconds']:>8.2f}")
    for s in report["sections"]:
        lines.append(f"{s['area']:<10} {s['database']} {s['name']}: {s['status']}{_facts(s)}")
    if report["differences"]:
        lines.append(f"\ndifferences ({len(report['differences'])}):")
        lines += [_difference(d) for d in report["differences"]]
    return "\n".join(lines) + "\n"


def _headline(report: dict) -> str:
    verdict = "PASSED" if report["status"] == "passed" else "FAILED"
    areas = ", ".join(f"{n} {a}" for a, n in sorted(report["summary"]["by_area"].items()))
    return (f"verification of {report['wave']} (run {report['run_id'] or '-'}, depth {report['depth']}):"
            f" {verdict}, {report['summary']['differences']} difference(s){' (' + areas + ')' if areas else ''},"
            f" {report['summary']['tables']} tables, {report['seconds']:.1f} s")


def _facts(section: dict) -> str:
    shown = {k: (v[:16] + "..." if isinstance(v, str) and len(v) == 64 else v) for k, v in section["facts"].items()}
    return " (" + ", ".join(f"{k} {v}" for k, v in shown.items()) + ")" if shown else ""


def _difference(d: dict) -> str:
    key = " ".join(f"{k}={v}" for k, v in d["key"].items())
    cols = f" columns {', '.join(d['columns'])}" if d["columns"] else ""
    detail = f" ({d['detail']})" if d["detail"] else ""
    return (f"  [{d['area']}] {d['database']} {d['object']}{' ' + key if key else ''}: {d['problem']}{cols}{detail}"
            f"\n      remedy: {d['remedy']}")


def write(inv: Inventory, report: Report) -> tuple[Path, str]:
    """Write the JSON and text files; return the JSON's path and SHA-256."""
    directory = reports_dir(inv)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{report.wave}-{report.started.replace(':', '')}-verify"
    data = report.to_json()
    body = json.dumps(data, indent=1, sort_keys=True).encode()
    _atomic(directory / f"{stem}.json", body)
    _atomic(directory / f"{stem}.txt", text(data).encode())
    return directory / f"{stem}.json", hashlib.sha256(body).hexdigest()


def _atomic(path: Path, body: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def record(inv: Inventory, journal, report: Report, run_id: str | None, step: str | None = None) -> Path:
    """Write the report and journal it (the engine's journal: anything with its `append`): status,
    counts, evidence digests, file and SHA-256."""
    path, sha = write(inv, report)
    evidence = {f"{s.database} {s.name}": {k: s.facts.get(k) for k in ("target_rows", "target_sha256", "source_sha256")}
                for s in report.sections if s.area == "evidence"}
    journal.append(run_id or f"{report.wave}-verify", report.wave, RECORD_KIND, {
        "status": "passed" if report.passed else "failed", "depth": report.depth,
        "differences": len(report.differences), "by_area": report.by_area(), "seconds": round(report.seconds, 3),
        "evidence": evidence, "report": str(path), "sha256": sha}, step=step)
    return path


def last(inv: Inventory, journal, wave: str) -> tuple[dict, dict]:
    """The last journalled verification of a wave and its report, checked against its hash."""
    found = [r for r in journal.records(wave=wave) if r.kind == RECORD_KIND]
    if not found:
        raise MigrateError(f"{wave}: no verification recorded yet; run `migrate verify {wave}`")
    entry = found[-1].data
    path = Path(entry["report"])
    if not path.is_file():
        raise MigrateError(f"{wave}: the last report {path} is gone")
    body = path.read_bytes()
    if hashlib.sha256(body).hexdigest() != entry["sha256"]:
        raise MigrateError(f"{wave}: report {path} was altered after it was journalled")
    return entry, json.loads(body)


def differences(data: dict) -> list[Difference]:
    return [Difference.from_json(d) for d in data["differences"]]
