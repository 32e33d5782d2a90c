"""Running preflight: gather each check's facts (through `migrate.facts`, hence the adapters)
and hand them to the pure judgements of `judge`. A check whose facts cannot be read fails
with the reason; it never stops the other checks."""

from __future__ import annotations

import time
from datetime import datetime

from migrate.config import Inventory
from migrate.errors import MigrateError, StepFailed
from migrate.facts.archive import ArchiveOwners
from migrate.facts.bucket import BucketSettings
from migrate.facts.dns import CnameValue
from migrate.facts.host import HostKey, HostState
from migrate.facts.replication import OurSlots
from migrate.facts.server import SourceServer, TargetServer
from migrate.model.layout import fqdn, journal_path
from migrate.preflight.judge import (
    Finding,
    Pace,
    failed,
    judge_archive_owners,
    judge_bucket,
    judge_database,
    judge_dns,
    judge_duration,
    judge_host,
    judge_host_key,
    judge_rehearsal,
    judge_service_level,
    judge_slots,
    judge_target_region,
    judge_window,
)

MIN_FREE_BYTES = 256 * 1024 * 1024


def _guarded(check: str, subject: str, fn) -> list[Finding]:
    try:
        result = fn()
    except MigrateError as exc:
        return [failed(check, subject, str(exc))]
    return result if isinstance(result, list) else [result]


def probe_host_key(inv: Inventory, name: str) -> Finding:
    try:
        offered, known = HostKey(name).collect(inv)
    except StepFailed as exc:  # unreachable; a refused address or unknown host goes up to the caller
        return failed("ssh host key", name, str(exc))
    return judge_host_key(name, offered, known)


def probe_host(inv: Inventory, name: str, need: int) -> list[Finding]:
    key = probe_host_key(inv, name)
    if key.status == "fail":
        return [key]
    return [key, *judge_host(name, HostState(name).collect(inv), need)]


def probe_databases(inv: Inventory, wave: str) -> list[Finding]:
    found = []
    for sname in inv.spec.waves[wave].systems:
        back = inv.spec.systems[sname].app is not None
        for name, d in inv.spec.systems[sname].databases.items():
            found += _guarded("postgres", name, lambda d=d, name=name: judge_database(
                name, d, SourceServer(d.source.server, d.source.dbname).collect(inv),
                TargetServer(d.target.server).collect(inv), back))
    return found


def probe_slots(inv: Inventory, wave: str, owned: set[str]) -> list[Finding]:
    servers = sorted({side.server for name in inv.spec.waves[wave].systems
                      for d in inv.spec.systems[name].databases.values() for side in (d.source, d.target)})
    return [f for server in servers for f in _guarded("replication slots", server, lambda server=server: judge_slots(
        server, OurSlots(server).collect(inv), owned))]


def probe_archives(inv: Inventory, wave: str) -> list[Finding]:
    """Packed archives restored onto a host: our program runs on both hosts (their python3),
    and the target's user can give the documents their owners."""
    found = []
    for name in inv.spec.waves[wave].systems:
        s = inv.spec.systems[name]
        a = s.archive
        if a and a.layout == "packed" and a.target_path and s.app:
            found += _guarded("archive owners", name, lambda a=a, s=s, name=name: judge_archive_owners(
                name, ArchiveOwners(a.host, a.path).collect(inv), ArchiveOwners(s.app.target_host, a.target_path)
                .collect(inv), a.owners))
    return found


def probe_dns(inv: Inventory, wave: str, own_switch: bool = False) -> list[Finding]:
    found = []
    for sname in inv.spec.waves[wave].systems:
        app = inv.spec.systems[sname].app
        if app and app.dns:
            r = app.dns
            found += _guarded("dns", r.name, lambda r=r: [
                judge_dns(r.name, CnameValue(r.name).collect(inv), fqdn(r.source), fqdn(r.target), own_switch)])
    return found


def probe_rehearsal(inv: Inventory, wave: str) -> list[Finding]:
    from migrate.engine.journal import Journal
    rule = inv.spec.waves[wave].require_rehearsal
    if rule is None:
        return []
    where = journal_path(inv.resolve(rule.inventory) / ".state")
    if not where.is_file():
        return [failed("rehearsal", wave, f"no journal at {where}")]
    journal = Journal(where)
    try:
        records = [{**r.data, "at": r.at} for r in journal.records(wave=wave) if r.kind == "rehearsal"]
    finally:
        journal.close()
    return [judge_rehearsal(wave, records, rule.max_age_days, time.time(), str(where))]


def probe_bucket(inv: Inventory) -> list[Finding]:
    st = inv.spec.storage
    return judge_bucket(st.bucket, BucketSettings().collect(inv), st.region)


def _need(inv: Inventory, host: str) -> int:
    """Free space a host must keep: its `min_free_mb` inventory variable, else a small floor."""
    mb = inv.hosts[host].vars.get("min_free_mb")
    return int(mb) * 1024 * 1024 if mb is not None else MIN_FREE_BYTES


def wave_hosts(inv: Inventory, wave: str) -> list[str]:
    hosts = set()
    for name in inv.spec.waves[wave].systems:
        s = inv.spec.systems[name]
        if s.app:
            hosts |= {s.app.source_host, s.app.target_host}
        if s.archive:
            hosts.add(s.archive.host)
    entry = inv.spec.entry_point
    if entry and entry.proxy_host and hosts:
        hosts.add(entry.proxy_host)
    return sorted(hosts)


def run_checks(inv: Inventory, wave: str, *, now: datetime | None = None, pace: Pace | None = None,
               total_bytes: int = 0, owned_slots: set[str] = frozenset(), own_switch: bool = False) -> list[Finding]:
    """`owned_slots`: the replication slots live waves of this inventory own (from its journal);
    `own_switch`: the run being resumed has begun its switch (the entry point on the target is its own)."""
    spec = inv.spec
    found = [f for h in wave_hosts(inv, wave) for f in _guarded("ssh", h, lambda h=h: probe_host(inv, h, _need(inv, h)))]
    found += probe_databases(inv, wave)
    found += probe_slots(inv, wave, owned_slots)
    found += probe_archives(inv, wave)
    found += _guarded("bucket", spec.storage.bucket, lambda: probe_bucket(inv))
    if spec.entry_point and spec.entry_point.dns_zone:
        found += probe_dns(inv, wave, own_switch)
    found += probe_rehearsal(inv, wave)
    found += judge_target_region(spec.storage.bucket, spec.storage.region, spec.target.region)
    found += judge_service_level(spec.target.service_level,
                                 {n: spec.systems[n].classification for n in spec.waves[wave].systems})
    found.append(judge_window(wave, spec.waves[wave].window, now or datetime.now().astimezone()))
    found.append(judge_duration(wave, total_bytes, pace))
    return found
