"""One verification of a wave: every database of its systems (schema, sequences, rows,
business totals, legal evidence), then every document archive, into one Report.

`bus` is the engine's event bus (anything with `emit`), `journal` the engine's journal
(anything with `records`): verification reads them and imports nothing of the engine."""

from __future__ import annotations

import functools
import hashlib
import time

from migrate.adapters import cloud
from migrate.config import Database, Inventory, order_systems
from migrate.errors import MigrateError
from migrate.model import layout
from migrate.transfer import catalog
from migrate.transfer.pool import Pool, worker_count
from migrate.verify import business, documents, evidence, incremental, probes, rows, schema
from migrate.verify.model import Difference, Report, Section


def source_digests(journal, run_id: str | None) -> dict[str, dict]:
    """Digests the wave's evidence operations journalled before the copy: {"system/db table": digest}."""
    if journal is None or run_id is None:
        return {}
    records = journal.records(run_id=run_id)
    digested = {r.seq: r.data["action"]["args"] for r in records
                if r.kind == "effect" and r.data.get("action", {}).get("op") == layout.EVIDENCE_OP}
    found = {}
    for r in records:
        args = digested.get(r.data.get("effect")) if r.kind == "effect_done" else None
        if args is not None:
            for table, digest in (r.data.get("result") or {}).get("digests", {}).items():
                found[f"{args['system']}/{args['database']} {table}"] = digest
    return found


def verify(inv: Inventory, wave: str, *, run_id: str | None, depth: str, bus, journal=None,
           baselines: dict | None = None) -> Report:
    """`baselines`: {"system/database": incremental.baseline(...)} taken during a warm wave's sync;
    a database that has one has its rows compared incrementally (see verify.incremental)."""
    started = time.monotonic()
    report = Report(wave, run_id, depth, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    before = source_digests(journal, run_id)
    run = layout.RunLayout(inv.spec.storage.prefix, wave, run_id) if run_id is not None else None
    s3 = functools.cache(lambda: cloud.client(inv))  # one client per verification, made if an archive needs it
    for name in order_systems(inv.spec, inv.spec.waves[wave].systems):
        system = inv.spec.systems[name]
        for dbname, d in system.databases.items():
            verify_database(inv, f"{name}/{dbname}", d, depth, bus, report, before,
                            (baselines or {}).get(f"{name}/{dbname}"))
        if system.archive:
            verify_archive(inv, s3, run, name, depth, report)
    report.seconds = time.monotonic() - started
    return report


# --- databases -------------------------------------------------------------------------------

def verify_database(inv: Inventory, label: str, d: Database, depth: str, bus, report: Report,
                    before: dict, baseline: dict | None = None) -> None:
    if baseline is not None:
        incremental.check_baseline(baseline, d)
    try:
        pair = probes.open_pair(inv, d)
    except MigrateError as exc:
        report.add([Difference("database", label, d.target.dbname, "unreachable",
                               "check that the wave restored this database and that the server is up",
                               detail=str(exc).split(":")[0])])
        return
    try:
        src_tables, tgt_tables = (probes.by_name(catalog.tables(found)) for found in pair.both(catalog.TABLES_SQL))
        report.add(compare_schema(pair, label))
        report.add(schema.compare_privileges(label, *pair.both(schema.PRIVILEGES), schema.role_map(d)))
        evidence_tables = [] if depth == "counts" else [evidence.qualified(t) for t in d.evidence_tables]
        report.add(missing_evidence_tables(label, evidence_tables, src_tables, tgt_tables))
        common = [(src_tables[t], tgt_tables[t], t in evidence_tables) for t in src_tables if t in tgt_tables]
        results, checks = compare_tables(inv, d, label, common, depth, bus, baseline)
        for result, digests in results:
            report.tables.append(result)
            report.add(result.differences)
            if digests:
                add_evidence(report, label, result.table, digests, before.get(f"{label} {result.table}"))
        for section, diffs in checks:
            report.sections.append(section)
            report.add(diffs)
    finally:
        pair.close()


def missing_evidence_tables(label: str, names: list[str], src_tables: dict, tgt_tables: dict) -> list[Difference]:
    return [Difference("evidence", label, t, "table_missing",
                       "fix evidence_tables in the spec, or restore the table on the target")
            for t in names if t not in src_tables or t not in tgt_tables]


def add_evidence(report: Report, label: str, table: str, digests: tuple[dict, dict], recorded: dict | None) -> None:
    """Target now against the source before the copy; the source now against it too (a source
    that changed since means the freeze did not hold)."""
    source_now, target_now = digests
    if recorded is None:
        recorded, taken = source_now, "during this verification (no pre-copy digest in the journal)"
    else:
        taken = "before the copy"
    diffs = evidence.compare(label, table, recorded, target_now, taken)
    if source_now["sha256"] != recorded["sha256"]:
        diffs.append(Difference("evidence", label, table, "source_changed_since_digest",
                                "the source changed during the freeze: find the writer, then run the wave again"))
    report.sections.append(Section("evidence", label, table, "differs" if diffs else "ok", {
        "source_rows": recorded["rows"], "source_sha256": recorded["sha256"], "source_taken": taken,
        "target_rows": target_now["rows"], "target_sha256": target_now["sha256"]}))
    report.add(diffs)


def compare_schema(pair: probes.Pair, label: str) -> list[Difference]:
    source, target = {}, {}
    for kind, query in schema.SNAPSHOT.items():
        src, tgt = pair.both(query)
        source.update({f"{kind} {n}": v or "" for n, v in src})
        target.update({f"{kind} {n}": v or "" for n, v in tgt})
    diffs = schema.compare(label, source, target)
    src_list, tgt_list = pair.both(schema.SEQUENCES)
    src_query, tgt_query = schema.next_values_query(src_list), schema.next_values_query(tgt_list)
    if src_query is None or tgt_query is None:
        return diffs
    src_next, tgt_next = pair.both(src_query, tgt_query)
    return diffs + schema.compare_sequences(label, dict(src_next), dict(tgt_next))


def compare_tables(inv: Inventory, d: Database, label: str, tables: list, depth: str, bus,
                   baseline: dict | None = None) -> tuple[list, list]:
    """(TableResult, evidence digests or None) per table, and (Section, differences) per business
    check of the spec, in the same pool: each worker on its own source+target session pair;
    with a baseline, tables incrementally. Business checks (whole-table aggregates) go first,
    then the tables largest first, so the long poles start at once and the rest fill the gaps."""
    tables = sorted(tables, key=lambda t: -t[0].estimated_rows)
    checks = list(d.business_checks.items())

    def one(pair: probes.Pair, item):
        if isinstance(item[0], str):  # a business check: (name, query)
            return business.run_check(pair, label, *item)
        src, tgt, is_evidence = item
        s = rows.shape(src, tgt)
        digests = None
        if depth == "counts":
            result = rows.compare_counts(pair, s, label)
        elif baseline is not None:
            result, digests = incremental.compare_table(pair, s, label, baseline["tables"].get(src.qualified),
                                                        is_evidence)
        elif is_evidence:
            result, *digests = evidence.compare_table(pair, s, label)
        else:
            result = rows.compare_checksums(pair, s, label)
        bus.emit("verify_table", database=label, table=result.table, status=result.status,
                 source_rows=result.source_rows, target_rows=result.target_rows, seconds=round(result.seconds, 3))
        return result, digests

    items = checks + tables
    with Pool(worker_count(inv.spec.transfer.workers), lambda: probes.open_pair(inv, d), name="verify") as pairs:
        done = dict(pairs.map(lambda pair, i: (i, one(pair, items[i])), range(len(items))))
    found = [done[i] for i in range(len(items))]  # in the order given (map's is completion order)
    return sorted(found[len(checks):], key=lambda r: r[0].table), found[:len(checks)]


def source_evidence(inv: Inventory, d: Database, base: dict | None = None) -> dict[str, dict]:
    """The digests of the evidence tables on the source: what the wave journals before copying.
    With `base` (a warm wave's baseline, see verify.incremental), the same digests, recomputed
    only where the source changed since."""
    if base is not None:
        incremental.check_baseline(base, d)
    session = probes.Session(inv, d.source.server, d.source.dbname)
    try:
        tables = probes.tables(session)
        found = {}
        for table in map(evidence.qualified, d.evidence_tables):
            if table not in tables:
                raise MigrateError(f"evidence table {table} is not in {d.source.server}/{d.source.dbname}")
            t = tables[table]
            found[table] = (evidence.digest(session, t, t.columns) if base is None else
                            incremental.source_digest(session, rows.shape(t, t), base["tables"].get(table)))
        return found
    finally:
        session.close()


# --- documents -------------------------------------------------------------------------------

def verify_archive(inv: Inventory, s3, run: layout.RunLayout | None, system: str, depth: str,
                   report: Report) -> None:
    """`s3()` gives the verification's S3 client; `run` is None when the wave has no run."""
    if run is None:
        report.sections.append(Section("documents", system, "archive", "skipped",
                                       {"reason": "no run of this wave in the journal: nothing was staged"}))
        return
    prefix, bucket = run.documents(system), inv.spec.storage.bucket
    key = layout.manifest_key(prefix)
    objects = cloud.object_sizes(s3(), bucket, prefix + "/")
    if f"{prefix}/manifest-delta.json" in objects:
        key = f"{prefix}/manifest-delta.json"  # the warm wave's second pass: the archive as it is now
    if key not in objects:
        section, diffs = documents.missing_manifest(system, key)
        report.sections.append(section)
        report.add(diffs)
        return
    body = b"".join(cloud.iter_object(s3(), bucket, key))
    manifest = documents.parse_manifest(body)
    first = len(report.sections)
    check = _verify_packed if manifest.get("layout") == "packed" else _verify_objects
    section, diffs = check(inv, s3, system, depth, manifest, objects, report)
    report.sections.append(section)
    report.add(diffs)
    for s in report.sections[first:]:  # differences name documents by their index in it: --show-paths reads it
        s.facts.update({"manifest": key, "manifest_sha256": hashlib.sha256(body).hexdigest()})


def _verify_objects(inv: Inventory, s3, system: str, depth: str, manifest: dict, objects: dict,
                    report: Report) -> tuple[Section, list]:
    """One object per document: each object by size (and its SHA-256 at full depth), the source
    listed on its host, the target tree walked and (at full depth) hashed on its host."""
    present = [f["key"] for f in manifest.get("files", []) if f["key"] in objects]
    hashes = None if depth != "full" else probes.objects_sha256(s3(), inv.spec.storage.bucket, present)
    archive, app = inv.spec.systems[system].archive, inv.spec.systems[system].app
    on_source = probes.archive_listing(inv, archive.host, archive.path)
    section, diffs = documents.compare(system, manifest, objects, hashes, on_source)
    if not (archive.target_path and app):
        return section, diffs
    report.sections.append(section)
    report.add(diffs)
    paths = [f["path"] for f in manifest.get("files", [])] if depth == "full" else None
    sizes, on_host = probes.restored_archive(inv, app.target_host, archive.target_path, paths)
    return documents.compare_restored(system, manifest, sizes, on_host if paths else None,
                                      f"{app.target_host}:{archive.target_path}")


def _verify_packed(inv: Inventory, s3, system: str, depth: str, manifest: dict, objects: dict,
                   report: Report) -> tuple[Section, list]:
    """By the manifest: packs by size (and their SHA-256 at full depth), the source listed (and
    hashed at full depth) on its host, the target tree listed and hashed on its host."""
    archive, app = inv.spec.systems[system].archive, inv.spec.systems[system].app
    full = depth == "full"
    packs = [p["key"] for p in manifest["packs"] if p["key"] in objects]
    pack_hashes = probes.objects_sha256(s3(), inv.spec.storage.bucket, packs) if full else None
    on_source = probes.archive_scan(inv, archive.host, archive.path, with_hash=full)
    section, diffs = documents.compare_packed(system, manifest, objects, pack_hashes, on_source)
    if not (archive.target_path and app):
        return section, diffs
    report.sections.append(section)
    report.add(diffs)
    hashed = depth != "counts"
    on_host = probes.archive_scan(inv, app.target_host, archive.target_path, with_hash=hashed)
    return documents.compare_restored_packed(system, manifest, on_host, f"{app.target_host}:{archive.target_path}",
                                             hashed)
