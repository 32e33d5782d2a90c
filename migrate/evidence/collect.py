"""What goes into an evidence pack, gathered from the journal and the run's verification report:
the manifest (see manifest.schema.json) and the results, as plain data. Counts, keys, hashes and
category totals only: the journal and the report hold no personal value, and nothing here adds
one (document paths, which can name people, are never taken: only the manifests' digests)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import migrate
from migrate.adapters import environ
from migrate.config import SPEC_FILE, Inventory
from migrate.engine import state
from migrate.evidence import html
from migrate.errors import MigrateError
from migrate.model.layout import GATE_ID, SWITCH_ID

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class Gathered:
    manifest: dict
    results: dict[str, dict]
    journal_lines: list[dict]


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def gather(inv: Inventory, journal, wave: str, run_id: str | None, *, previous: dict | None,
           signing: dict, now: float) -> Gathered:
    view = _view(journal, wave, run_id)
    records = journal.records(run_id=view.run_id)
    report = _report(records)
    results = {"preflight": _preflight(journal, view, records), "plan": view.plan.to_json(),
               "transfer": _transfer(records), "reconciliation": _reconciliation(report),
               "legal_evidence": _legal_evidence(report), "documents": _documents(records, report),
               "replication": {"positions": [r.data for r in records if r.kind == "sync_caught_up"]},
               "cutover": _cutover(view), "verification": report or {}}
    rollback = _rollback(records)
    if rollback["undone"]:
        results["rollback"] = rollback
    lines, journal_facts = _journal_lines(journal, view.run_id)
    manifest = {
        "schema_version": SCHEMA_VERSION, "kind": "migrate-evidence-pack", "generated_at": iso(now),
        "tool": {"name": "migrate", "version": migrate.__version__, "commit": _commit(),
                 "page_template_sha256": html.template_sha256()},
        "inventory": {"name": inv.path.name, "spec_sha256": hashlib.sha256((inv.path / SPEC_FILE).read_bytes()).hexdigest()},
        "wave": wave, "run_id": view.run_id, "status": view.status, "operator": view.operator,
        "mode": "warm" if any(s.id == "synced" for s in view.plan.steps) else "cold",
        "systems": _systems(inv, view), "services": _services(inv, view, report),
        "phases": _phases(view), "freeze": _freeze(view), "gate": _gate(view), "rehearsals": _rehearsals(journal, wave),
        "rollback": {"rolled_back": bool(rollback["undone"]), "at": rollback["at"],
                     "effects_undone": len(rollback["undone"])},
        "totals": _totals(report, results["documents"]),
        "verification": _verification(records, report),
        "journal": journal_facts, "previous_pack": previous, "signing": signing,
        "timestamp": {"taken": False, "note": "no RFC 3161 timestamp authority is configured: no timestamp was taken"},
        "files": sorted(f"results/{name}.json" for name in results)}
    return Gathered(manifest, results, lines)


def _view(journal, wave: str, run_id: str | None) -> state.RunView:
    views = [v for v in state.runs(journal.records(wave=wave)) if run_id in (None, v.run_id)]
    if not views:
        raise MigrateError(f"{wave}: no run {run_id} in the journal" if run_id else f"{wave}: no run in the journal")
    return views[-1]


def _report(records) -> dict | None:
    """The run's last verification report, checked against the SHA-256 the journal holds."""
    found = [r.data for r in records if r.kind == "verification"]
    if not found:
        return None
    path = Path(found[-1]["report"])
    body = path.read_bytes() if path.is_file() else b""
    if hashlib.sha256(body).hexdigest() != found[-1]["sha256"]:
        raise MigrateError(f"{path}: the verification report is missing or differs from the SHA-256 in the journal")
    return json.loads(body)


def _preflight(journal, view: state.RunView, records) -> dict:
    own = [r.data for r in records if r.kind == "preflight"]
    if not own:  # taken before the run had an id: the wave's last one before it started
        own = [r.data for r in journal.records(wave=view.wave) if r.kind == "preflight" and r.at <= view.started]
    return {"findings": own[-1].get("findings", []) if own else []}


CHUNK_FIELDS = ("scope", "table", "chunk", "range", "rows", "bytes", "stored", "sha256", "key")
PACK_FIELDS = ("scope", "key", "files_count", "bytes", "size", "sha256")


def _transfer(records) -> dict:
    loaded = {(r.data.get("scope"), r.data.get("chunk")) for r in records if r.kind == "chunk_loaded"}
    chunks = [{**{k: r.data.get(k) for k in CHUNK_FIELDS}, "step": r.step,
               "loaded": (r.data.get("scope"), r.data.get("chunk")) in loaded}
              for r in records if r.kind == "chunk_staged"]
    packs = [{**{k: r.data.get(k) for k in PACK_FIELDS}, "step": r.step} for r in records if r.kind == "archive_pack"]
    return {"chunks": chunks, "document_packs": packs}


def _reconciliation(report: dict | None) -> dict:
    """Per unit of migration (a table), AgID's form: source = target + duplicates removed -
    failed. This tool removes no duplicates; failed counts the rows a difference names."""
    if not report:
        return {"units": []}
    failed: dict[tuple, int] = {}
    for d in report["differences"]:
        if d["area"] == "rows":
            failed[(d["database"], d["object"])] = failed.get((d["database"], d["object"]), 0) + 1
    units = []
    for t in report["tables"]:
        bad = failed.get((t["database"], t["table"]), 0)
        units.append({"unit": f"{t['database']} {t['table']}", "system": t["database"].split("/")[0],
                      "database": t["database"], "table": t["table"], "method": t["method"],
                      "source": t["source_rows"], "target": t["target_rows"], "duplicates_removed": 0, "failed": bad,
                      "status": t["status"], "holds": t["source_rows"] == t["target_rows"] + 0 - bad})
    return {"units": units}


def _legal_evidence(report: dict | None) -> dict:
    sections = [s for s in (report or {}).get("sections", []) if s["area"] == "evidence"]
    return {"digests": [{"database": s["database"], "table": s["name"], "before": s["facts"].get("source_sha256"),
                         "after": s["facts"].get("target_sha256"), "rows": s["facts"].get("target_rows"),
                         "source_taken": s["facts"].get("source_taken"), "equal": s["status"] == "ok"}
                        for s in sections]}


def _documents(records, report: dict | None) -> dict:
    staged = {}
    for r in records:
        if r.kind == "effect_done" and r.step and (r.step.endswith("/stage-archive") or r.step.endswith("/archive-delta")):
            result = r.data.get("result") or {}
            if "manifest_sha256" in result or "files" in result:
                staged[r.step.split("/")[0]] = result
    sections = {s["database"]: s for s in (report or {}).get("sections", [])
                if s["area"] == "documents" and s["name"] == "archive"}
    archives = []
    for system, result in sorted(staged.items()):
        facts = sections.get(system, {}).get("facts", {})
        archives.append({"system": system, "layout": facts.get("layout", "objects"), "files": result.get("files"),
                         "bytes": result.get("bytes"), "packs": facts.get("packs"),
                         "manifest_sha256": result.get("manifest_sha256"),
                         "status": sections.get(system, {}).get("status", "not verified")})
    return {"archives": archives}


def _cutover(view: state.RunView) -> dict:
    return {"freeze": _freeze(view), "gate": _gate(view), "phases": _phases(view)}


def _rollback(records) -> dict:
    undone = [{"step": r.step, "effect": r.data.get("effect"), "at": iso(r.at)} for r in records if r.kind == "undone"]
    return {"undone": undone, "at": undone[-1]["at"] if undone else None}


def _journal_lines(journal, run_id: str) -> tuple[list[dict], dict]:
    """Every record up to the run's last, in order: the run's own in full (the stored body, as
    hashed), every other one as its hashes only, so the chain can be followed from the first
    record without showing other runs."""
    lines, last = [], None
    for seq, rid, wave, step, kind, body, at, prev_hash, digest in journal.rows():
        if rid == run_id:
            lines.append({"seq": seq, "run_id": rid, "wave": wave, "step": step, "kind": kind, "body": body,
                          "at": at, "prev_hash": prev_hash, "hash": digest})
            last = len(lines)
        else:
            lines.append({"seq": seq, "elided": True, "prev_hash": prev_hash, "hash": digest})
    lines = lines[:last]
    own = [line for line in lines if not line.get("elided")]
    return lines, {"records": len(own), "first_seq": own[0]["seq"], "last_seq": own[-1]["seq"],
                   "head_hash": lines[-1]["hash"]}


def _systems(inv: Inventory, view: state.RunView) -> list[dict]:
    return [{"name": name, "description": inv.spec.systems[name].description,
             "classification": inv.spec.systems[name].classification, "components": _components(inv, name)}
            for name in _wave_systems(view, inv.spec.systems)]


def _wave_systems(view: state.RunView, systems: dict) -> list[str]:
    """The run's systems in plan order (a step of several names them joined by '+')."""
    names = (name for s in view.plan.steps if s.system for name in s.system.split("+"))
    return [name for name in dict.fromkeys(names) if name in systems]


def _components(inv: Inventory, name: str) -> list[dict]:
    system, found = inv.spec.systems[name], []
    for db, d in system.databases.items():
        found.append({"kind": "database", "name": db, "source": f"{d.source.server}/{d.source.dbname}",
                      "target": f"{d.target.server}/{d.target.dbname or d.source.dbname}"})
    if system.app:
        found.append({"kind": "application", "name": name, "source": system.app.source_host,
                      "target": system.app.target_host})
    if system.archive:
        a = system.archive
        found.append({"kind": "documents", "name": name, "source": f"{a.host}:{a.path}",
                      "target": f"{system.app.target_host}:{a.target_path}" if a.target_path and system.app else None})
    return found


def _services(inv: Inventory, view: state.RunView, report: dict | None) -> list[dict]:
    target = inv.spec.target
    mode = ("warm: copied while the source stayed live (logical replication), then a short freeze"
            if any(s.id == "synced" for s in view.plan.steps) else "cold: copied inside the freeze")
    switched = view.steps.get(SWITCH_ID)
    go_live = iso(switched.ended) if switched and switched.state in ("done", "undone") else None
    out = []
    for name in _wave_systems(view, inv.spec.systems):
        steps = [s for s in view.steps.values() if s.id.startswith(f"{name}/")]
        started = min((s.started for s in steps if s.started), default=None)
        completed = max((s.ended for s in steps if s.ended and s.state == "done"), default=None)
        complete, why = _completeness(name, report, view)
        out.append({"service": name, "source_system": ", ".join(c["source"] for c in _components(inv, name)),
                    "cloud_destination": f"{target.provider} {target.region} (service level {target.service_level})",
                    "migration_mode": mode, "started": iso(started), "completed": iso(completed),
                    "go_live": go_live, "completeness": complete, "justification": why})
    return out


def _completeness(system: str, report: dict | None, view: state.RunView) -> tuple[str, str]:
    if not report:
        return "not verified", "no verification of this run is recorded"
    mine = [d for d in report["differences"] if d["database"].split("/")[0] == system]
    tables = [t for t in report["tables"] if t["database"].split("/")[0] == system]
    if mine:
        return "incomplete", f"{len(mine)} difference(s) found by the verification (depth {report['depth']})"
    rows = sum(t["source_rows"] for t in tables)
    return "complete", (f"verification at depth {report['depth']}: {len(tables)} table(s), {rows:,} row(s) equal on"
                        " source and target; no difference")


def _phases(view: state.RunView) -> list[dict]:
    span = state.freeze_span(view)
    return [{"step": s.id, "title": s.title, "system": s.system or None, "state": view.steps[s.id].state,
             "started": iso(view.steps[s.id].started), "ended": iso(view.steps[s.id].ended),
             "seconds": _seconds(view.steps[s.id]), "in_freeze": _inside(span, view.steps[s.id].started)}
            for s in view.plan.steps]


def _inside(span: tuple | None, at: float | None) -> bool:
    return bool(span and at and span[0] <= at <= (span[1] or float("inf")))


def _seconds(step) -> float | None:
    return round(step.ended - step.started, 3) if step.started and step.ended else None


def _freeze(view: state.RunView) -> dict | None:
    span = state.freeze_span(view)
    if span is None:
        return None
    start, end = span
    return {"started": iso(start), "ended": iso(end), "seconds": round(end - start, 3) if end else None}


def _gate(view: state.RunView) -> dict:
    gate = view.steps.get(GATE_ID)
    if gate is None:
        return {"decision": "none", "approver": None, "operator": view.operator, "at": None}
    if view.approval:
        return {"decision": "go", "approver": view.approval.get("approved_by") or view.approval.get("how"),
                "operator": view.operator, "at": iso(gate.ended)}
    decision = "no-go" if view.status in ("rolled_back", "rolling_back") else "pending"
    return {"decision": decision, "approver": None, "operator": view.operator, "at": None}


def _rehearsals(journal, wave: str) -> list[dict]:
    return [{**r.data, "at": iso(r.at), "run_id": r.run_id} for r in journal.records(wave=wave) if r.kind == "rehearsal"]


def _totals(report: dict | None, documents: dict) -> dict:
    tables = (report or {}).get("tables", [])
    return {"tables": len(tables), "source_rows": sum(t["source_rows"] for t in tables),
            "target_rows": sum(t["target_rows"] for t in tables),
            "documents": sum(a["files"] or 0 for a in documents["archives"]),
            "document_bytes": sum(a["bytes"] or 0 for a in documents["archives"]),
            "differences": len((report or {}).get("differences", []))}


def _verification(records, report: dict | None) -> dict:
    found = [r for r in records if r.kind == "verification"]
    if not found or not report:
        return {"status": "none", "depth": None, "at": None, "report_sha256": None}
    return {"status": found[-1].data["status"], "depth": found[-1].data["depth"], "at": iso(found[-1].at),
            "report_sha256": found[-1].data["sha256"]}


def _commit() -> str | None:
    return environ.checkout_commit(Path(migrate.__file__).resolve().parent.parent)
