"""A made-up but schema-valid evidence pack (manifest and results) of a cold wave of two systems,
for the HTML page's tests, in the shapes migrate.evidence.collect writes. Counts, keys and
hashes only, as in a real pack: no personal value.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

WAVE = "hr-core"
RUN_ID = "hr-core-20250308T170002Z-3f9c1a"
START = datetime(2025, 3, 8, 17, 0, 2, tzinfo=UTC)

# (step, title, system, seconds from START to start, seconds long, in freeze); None: not timed
PHASES = [
    ("staging:comune-hr-migration-production", "Prepare the staging bucket", None, 0, 4, False),
    ("freeze:hr-app-01", "Freeze the source application", None, 6, 21, True),
    ("personnel/evidence:personale", "Legal-evidence digests (before)", "personnel", 30, 95, True),
    ("attendance/evidence:presenze", "Legal-evidence digests (before)", "attendance", 30, 410, True),
    ("personnel/stage-db:personale", "Stage database personale", "personnel", 130, 312, True),
    ("attendance/stage-db:presenze", "Stage database presenze", "attendance", 445, 1380, True),
    ("personnel/create-db:personale", "Create database personale on the target", "personnel", 450, 12, True),
    ("personnel/restore-db:personale", "Restore database personale", "personnel", 465, 540, True),
    ("attendance/create-db:presenze", "Create database presenze on the target", "attendance", 1830, 11, True),
    ("attendance/restore-db:presenze", "Restore database presenze", "attendance", 1845, 2210, True),
    ("personnel/stage-archive", "Stage the personnel file archive", "personnel", 130, 2900, True),
    ("personnel/restore-archive", "Restore the personnel file archive", "personnel", 3040, 1650, True),
    ("verify", "Verify databases, documents and business totals", None, 4700, 1310, True),
    ("target-health", "Target applications answer", None, 6015, 48, True),
    ("go-no-go", "Go/no-go decision", None, 6070, 420, True),
    ("switch-entry", "Switch the entry point to the cloud", None, 6495, 35, True),
    ("post-cutover", "Post-cutover checks", None, 6535, 190, False),
    ("personnel/way-back:personale", "Way back (target to source replication)", "personnel", None, None, False),
]


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def at(offset: float | None) -> str | None:
    return None if offset is None else iso(START + timedelta(seconds=offset))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def phase(step, title, system, offset, seconds, in_freeze) -> dict:
    timed = offset is not None
    return {"step": step, "title": title, "system": system, "state": "done" if timed else "pending",
            "started": at(offset), "ended": at(offset + seconds) if timed else None,
            "seconds": float(seconds) if timed else None, "in_freeze": in_freeze}


def systems() -> list[dict]:
    return [
        {"name": "personnel", "description": "Personnel management (gestione giuridica del personale)",
         "classification": "critical", "components": [
             {"kind": "database", "name": "personale", "source": "onprem-pg/personale", "target": "cloud-pg/personale"},
             {"kind": "application", "name": "personale", "source": "hr-app-01", "target": "hr-cloud-app-01"},
             {"kind": "documents", "name": "personnel file", "source": "hr-app-01:/srv/personale/documents",
              "target": "hr-cloud-app-01:/srv/personale/documents"}]},
        {"name": "attendance", "description": "Staff attendance (rilevazione presenze)",
         "classification": "critical", "components": [
             {"kind": "database", "name": "presenze", "source": "onprem-pg/presenze", "target": "cloud-pg/presenze"},
             {"kind": "application", "name": "presenze", "source": "hr-app-01", "target": None}]},
    ]


def services() -> list[dict]:
    common = {"cloud_destination": "qualified-cloud eu-south-1 (critical)", "migration_mode": "cold (freeze and copy)",
              "started": at(0), "completed": at(6530), "go_live": at(6530)}
    return [
        {"service": "Gestione giuridica del personale / Personnel management", "source_system": "personnel",
         **common, "completeness": "complete",
         "justification": "verification at depth checksums: 5 table(s), 15,506 row(s) equal on source and target;"
                          " no difference"},
        {"service": "Rilevazione presenze / Staff attendance", "source_system": "attendance", **common,
         "completeness": "complete",
         "justification": "verification at depth checksums: 4 table(s), 4,102,997 row(s) equal on source and"
                          " target; no difference"},
    ]


def manifest(*, signed: bool = False, rolled_back: bool = False) -> dict:
    return {
        "schema_version": "1", "kind": "migrate-evidence-pack", "generated_at": at(6800),
        "tool": {"name": "migrate", "version": "0.1.0", "commit": "bdce2c6f0a1e"},
        "inventory": {"name": "production", "spec_sha256": sha("spec")},
        "wave": WAVE, "run_id": RUN_ID, "status": "rolled_back" if rolled_back else "completed", "operator": "sysadmin@hr-ops-01", "mode": "cold",
        "systems": systems(), "services": services(),
        "phases": [phase(*p) for p in PHASES],
        "freeze": {"started": at(6), "ended": at(6530), "seconds": 6524.0},
        "gate": {"decision": "go", "approver": "Responsabile ICT (A. Bianchi)", "operator": "sysadmin@hr-ops-01",
                 "at": at(6490)},
        "rehearsals": [{"run_id": "hr-core-20250301T160011Z-77a0be", "at": "2025-03-01T18:12:40.512301Z",
                        "operator": "sysadmin@hr-ops-01", "run_seconds": 6301.2, "rollback_seconds": 412.9,
                        "result": "rolled_back"}],
        "rollback": ({"rolled_back": True, "at": undone()[-1]["at"], "effects_undone": len(undone())} if rolled_back
                     else {"rolled_back": False, "at": None, "effects_undone": 0}),
        "totals": totals(),
        "verification": {"status": "passed", "depth": "checksums", "at": at(6010), "report_sha256": sha("report")},
        "journal": {"records": 212, "first_seq": 1041, "last_seq": 1252, "head_hash": sha("head")},
        "previous_pack": {"sha256": sha("previous pack"), "run_id": "hr-core-20250301T160011Z-77a0be",
                          "wave": WAVE},
        "signing": signing(signed),
        "timestamp": {"taken": False,
                      "note": "no RFC 3161 timestamp authority is configured: no timestamp was taken"},
        "files": sorted(f"results/{name}.json" for name in results(rollback=rolled_back)),
    }


def totals() -> dict:
    units = [unit(*u) for u in UNITS]
    return {"tables": len(units), "source_rows": sum(u["source"] for u in units),
            "target_rows": sum(u["target"] for u in units), "documents": 1834, "document_bytes": 912_337_408,
            "differences": 0}


def signing(signed: bool) -> dict:
    if signed:
        return {"signed": True, "key_id": sha("key")[:16], "algorithm": "ed25519",
                "note": "each phase's attestation (in-toto Statement v1, DSSE) is signed; compare keys/signing.pub.pem"
                        " with the key the Comune published"}
    return {"signed": False, "key_id": None, "algorithm": None,
            "note": "not signed: no evidence.signing_key in the spec; the checksums prove integrity only against"
                    " accidents, not against someone who rewrites the whole pack"}


# (unit table, system, database, source rows, duplicates removed, failed)
UNITS = [
    ("public.employee", "personnel", "personale", 684, 0, 0),
    ("public.family_member", "personnel", "personale", 1_203, 0, 0),
    ("public.employment_contract", "personnel", "personale", 1_911, 0, 0),
    ("public.career_event", "personnel", "personale", 9_874, 0, 0),
    ("public.personnel_document", "personnel", "personale", 1_834, 0, 0),
    ("public.punch", "attendance", "presenze", 3_712_408, 0, 0),
    ("public.daily_balance", "attendance", "presenze", 341_220, 0, 0),
    ("public.justification", "attendance", "presenze", 48_113, 0, 0),
    ("public.monthly_timesheet", "attendance", "presenze", 1_256, 0, 0),
]


def unit(table, system, database, source, duplicates, failed) -> dict:
    target = source - duplicates + failed
    return {"unit": f"{system}/{database} {table}", "system": system, "database": f"{system}/{database}",
            "table": table, "method": "checksums", "source": source, "target": target,
            "duplicates_removed": duplicates, "failed": failed, "status": "ok",
            "holds": source == target + duplicates - failed}


def business() -> list[dict]:
    checks = [("attendance/presenze", "punches per month", 12), ("attendance/presenze", "absence minutes per category", 9),
              ("attendance/presenze", "overtime minutes per month", 12), ("personnel/personale", "staff per area", 4)]
    return [{"area": "business", "database": db, "name": name, "status": "ok",
             "facts": {"source_rows": n, "target_rows": n}} for db, name, n in checks]


def chunk(i: int) -> dict:
    system, database = ("attendance", "presenze") if i % 3 else ("personnel", "personale")
    return {"scope": f"{system}/{database}", "table": "public.punch", "chunk": f"public.punch:{i:05d}",
            "range": f"[{i * 100_000}, {(i + 1) * 100_000})", "rows": 100_000, "bytes": 7_340_032,
            "stored": 1_835_008, "sha256": sha(f"chunk {i}"), "key": f"waves/{WAVE}/{RUN_ID}/db/{database}/{i:05d}.zst",
            "step": f"{system}/stage-db:{database}", "loaded": True}


def document_packs() -> list[dict]:
    sizes = [(500, 251_658_240), (500, 248_512_512), (500, 250_609_664), (334, 161_556_992)]
    return [{"scope": "personnel", "key": f"waves/{WAVE}/{RUN_ID}/docs/personnel/pack-{i:04d}.tar", "files_count": n,
             "bytes": b, "size": b + 512 * n, "sha256": sha(f"pack {i}"), "step": "personnel/stage-archive"}
            for i, (n, b) in enumerate(sizes)]


def undone() -> list[dict]:
    steps = ["switch-entry", "personnel/restore-archive", "attendance/restore-db:presenze",
             "attendance/create-db:presenze", "personnel/restore-db:personale", "personnel/create-db:personale",
             "freeze:hr-app-01"]
    return [{"step": s, "effect": f"{s.split('/')[-1].split(':')[0]}#{i}", "at": at(7000 + 10 * i)}
            for i, s in enumerate(steps)]


def results(*, chunk_count: int = 24, rollback: bool = False) -> dict:
    out = {
        "preflight": {"findings": [
            {"check": "target region", "subject": "qualified-cloud", "status": "pass", "reason": "eu-south-1 is in the EU"},
            {"check": "service level", "subject": "qualified-cloud", "status": "pass",
             "reason": "critical covers the systems' classification (critical)"},
            {"check": "ssh host key", "subject": "hr-cloud-app-01", "status": "pass", "reason": "known and matching"},
            {"check": "disk space", "subject": "cloud-pg", "status": "warn", "reason": "38% free after the copy (estimate)"},
            {"check": "document owners", "subject": "hr-cloud-app-01", "status": "pass",
             "reason": "the restoring user can give the owners"}]},
        "reconciliation": {"units": [unit(*u) for u in UNITS]},
        "verification": {"status": "passed", "sections": business() + [
            {"area": "documents", "database": "personnel", "name": "archive", "status": "ok",
             "facts": {"files": 1834, "bytes": 912_337_408}}]},
        "legal_evidence": {"digests": [
            {"database": "attendance/presenze", "table": "public.punch", "before": sha("punch"), "after": sha("punch"),
             "rows": 3_712_408, "source_taken": at(30), "equal": True},
            {"database": "attendance/presenze", "table": "public.monthly_timesheet", "before": sha("timesheet"),
             "after": sha("timesheet"), "rows": 1_256, "source_taken": at(30), "equal": True}]},
        "documents": {"archives": [
            {"system": "personnel", "layout": "packed", "files": 1834, "bytes": 912_337_408, "packs": 4,
             "manifest_sha256": sha("documents manifest"), "status": "ok"}]},
        "transfer": {"chunks": [chunk(i) for i in range(chunk_count)], "document_packs": document_packs()},
        "replication": {"positions": []},
    }
    if rollback:
        out["rollback"] = {"undone": undone(), "at": undone()[-1]["at"]}
    return out
