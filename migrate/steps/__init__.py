"""The wave graph: which steps a wave has, in which order.

Phases run one after another (freeze, evidence, stage, restore, verify, way back, start the
target, its health, the go/no-go gate, the switch, the checks after it); inside a phase, systems
come in dependency order; steps on one application host are batched into one playbook run (each
costs seconds). Adding a kind of step means adding it to PHASES, not an `if` elsewhere.
"""

from __future__ import annotations

from migrate.config import Inventory, order_systems
from migrate.steps.app import Configure, Freeze, TargetConfig
from migrate.steps.cutover import Gate, PostCutover, SwitchEntry, TargetHealth, WayBack
from migrate.steps.database import CreateDatabase, OpenStaging, RestoreDatabase, StageDatabase
from migrate.steps.files import OpenArchiveRestore, RestoreArchive, StageArchive
from migrate.steps.verify import EvidenceDigest, VerifyWave


def _by_host(pairs):
    grouped: dict[str, list] = {}
    for host, item in pairs:
        grouped.setdefault(host, []).append(item)
    return grouped.items()


def _freeze(inv, systems):
    apps = [(s.app.source_host, (name, s.app)) for name, s in systems if s.app]
    for host, items in _by_host(apps):
        yield Freeze(host, tuple(n for n, _ in items), tuple(a.service_name for _, a in items),
                     tuple((a.service_name, a.drain_path) for _, a in items if a.drain_path))


def _stage_databases(inv, systems):
    for name, system in systems:
        for db, d in system.databases.items():
            yield StageDatabase(name, db, d.source.server, d.source.dbname)


def _stage_archive(inv, systems):
    for name, system in systems:
        if system.archive:
            yield StageArchive(name, system.archive.host, system.archive.path)


def _restore_archive(inv, systems):
    # Onto the target application host when the spec asks. The open step holds the undo of the
    # restored files, so a resume after a kill keeps what was already restored.
    for name, system in systems:
        if system.archive and system.archive.target_path:
            host = system.app.target_host if system.app else None  # None: the plan names the spec field
            yield OpenArchiveRestore(name, host, system.archive.target_path)
            yield RestoreArchive(name, host, system.archive.target_path)


def _open_staging(inv, systems):
    if any(s.databases or s.archive for _, s in systems):
        yield OpenStaging(inv.spec.storage.bucket)


def _create_databases(inv, systems):
    for name, system in systems:
        for db, d in system.databases.items():
            yield CreateDatabase(name, db, d.target.server, d.target.dbname)


def _restore_databases(inv, systems):
    for name, system in systems:
        for db, d in system.databases.items():
            yield RestoreDatabase(name, db, d.source.server, d.source.dbname, d.target.server, d.target.dbname)


def _configure(inv, systems):
    configs = [(s.app.target_host, _target_config(inv, name, s)) for name, s in systems if s.app]
    for host, items in _by_host(configs):
        yield Configure(host, tuple(items))


def _target_config(inv, name, system) -> TargetConfig:
    settings = {"bucket": inv.spec.storage.bucket, "service": system.app.service_name}
    for db, d in system.databases.items():
        server = inv.spec.db_servers[d.target.server]
        settings[f"db_{db}"] = f"host={server.host} port={server.port} dbname={d.target.dbname} user={server.user}"
    return TargetConfig(name, system.app.config_template, system.app.config_path, system.app.service_name,
                        tuple(sorted(settings.items())))


def _evidence(inv, systems):
    # After the freeze (nothing writes any more), before anything is copied.
    for name, system in systems:
        for db, d in system.databases.items():
            if d.evidence_tables:
                yield EvidenceDigest(name, db, d.source.server, d.source.dbname, tuple(d.evidence_tables))


def _verify(inv, systems):
    yield VerifyWave(tuple(name for name, _ in systems))


def _way_back(inv, systems):
    # Only where an application will write on the target after its start.
    for name, system in systems:
        if system.app:
            for db in system.databases:
                yield WayBack(name, db)


def _apps(systems) -> tuple[str, ...]:
    return tuple(name for name, s in systems if s.app)


def _health(inv, systems):
    if _apps(systems):
        yield TargetHealth(_apps(systems))


def _switch(inv, systems):
    if inv.spec.entry_point and _apps(systems):
        yield Gate(_apps(systems))
        yield SwitchEntry(_apps(systems))
        yield PostCutover(_apps(systems))


PHASES = (_freeze, _evidence, _open_staging, _stage_databases, _stage_archive, _restore_archive,
          _create_databases, _restore_databases, _verify, _way_back, _configure, _health, _switch)


def build(inv: Inventory, wave: str) -> list:
    names = order_systems(inv.spec, inv.spec.waves[wave].systems)
    systems = [(name, inv.spec.systems[name]) for name in names]
    return [step for phase in PHASES for step in phase(inv, systems)]
