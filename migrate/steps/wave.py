"""The wave graph: which steps a wave has, in which order.

Phases run one after another (freeze, evidence, stage, restore, verify, start the target, its
health, the go/no-go gate, the way back, the switch, the checks after it); inside a phase, systems
come in dependency order; steps on one application host are batched into one playbook run (each
costs seconds). Adding a kind of step means adding it to PHASES, not an `if` elsewhere. Pure:
the graph is built from the spec alone.
"""

from __future__ import annotations

import dataclasses

from migrate.config import order_systems
from migrate.steps.app import Configure, Freeze, StartTargets, TargetConfig
from migrate.steps.archive import ArchiveDelta, RestoreArchive, StageArchive
from migrate.steps.checks import EvidenceDigest, VerifyWave
from migrate.steps.cutover import Gate, PostCutover, SwitchEntry, TargetHealth, WayBack
from migrate.steps.database import CreateDatabase, OpenStaging, RestoreDatabase, StageDatabase
from migrate.steps.sync import CutoverCheck, FenceDatabase, Synced, SyncDatabase


def _by_host(pairs):
    grouped: dict[str, list] = {}
    for host, item in pairs:
        grouped.setdefault(host, []).append(item)
    return grouped.items()


def _freeze(spec, systems):
    apps = [(s.app.source_host, (name, s.app)) for name, s in systems if s.app]
    for host, items in _by_host(apps):
        yield Freeze(host, tuple(n for n, _ in items), tuple(a.service_name for _, a in items),
                     tuple((a.service_name, a.drain_path) for _, a in items if a.drain_path))


def _evidence(spec, systems):
    # After the freeze (nothing writes any more), before anything is copied.
    for name, system in systems:
        for db, d in system.databases.items():
            if d.evidence_tables:
                yield EvidenceDigest(name, db, d.source.server, d.source.dbname, tuple(d.evidence_tables))


def _open_staging(spec, systems):
    if any(s.databases or s.archive for _, s in systems):
        yield OpenStaging(spec.storage.bucket)


def _stage_databases(spec, systems):
    for name, system in systems:
        for db, d in system.databases.items():
            yield StageDatabase(name, db, d.source.server, d.source.dbname)


def _archives(systems, layouts=("packed", "objects")):
    return [(name, system) for name, system in systems if system.archive and system.archive.layout in layouts]


def _target_host(system):
    return system.app.target_host if system.app else None  # None: the plan names the spec field


def _stage_archive(spec, systems, *, live=False, layouts=("packed", "objects")):
    for name, system in _archives(systems, layouts):
        yield StageArchive(name, system.archive.host, system.archive.path, live=live)


def _restore_archive(spec, systems, layouts=("packed", "objects")):
    # Onto the target application host when the spec asks.
    for name, system in _archives(systems, layouts):
        if system.archive.target_path:
            yield RestoreArchive(name, _target_host(system), system.archive.target_path)


# The warm wave: packed archives are staged and restored while the source is live, and only
# their delta moves inside the freeze; an archive of one object per document moves in the freeze.
def _stage_archive_live(spec, systems):
    yield from _stage_archive(spec, systems, live=True, layouts=("packed",))


def _restore_archive_live(spec, systems):
    yield from _restore_archive(spec, systems, layouts=("packed",))


def _archive_delta(spec, systems):
    for name, system in _archives(systems, ("packed",)):
        a = system.archive
        yield ArchiveDelta(name, a.host, a.path, _target_host(system), a.target_path)


def _stage_archive_frozen(spec, systems):
    yield from _stage_archive(spec, systems, layouts=("objects",))


def _restore_archive_frozen(spec, systems):
    yield from _restore_archive(spec, systems, layouts=("objects",))


def _create_databases(spec, systems):
    for name, system in systems:
        for db, d in system.databases.items():
            yield CreateDatabase(name, db, d.target.server, d.target.dbname)


def _restore_databases(spec, systems):
    for name, system in systems:
        for db, d in system.databases.items():
            yield RestoreDatabase(name, db, d.source.server, d.source.dbname, d.target.server, d.target.dbname)


def _verify(spec, systems):
    yield VerifyWave(tuple(name for name, _ in systems))


def _evidence_since(spec, systems):
    # A warm wave: after the fence, from the baseline cutover-check took.
    for step in _evidence(spec, systems):
        yield dataclasses.replace(step, incremental=True)


def _verify_since(spec, systems):
    yield VerifyWave(tuple(name for name, _ in systems), incremental=True)


def _way_back(spec, systems):
    # After the gate, right before the switch: until the entry point moves nothing written on
    # the target (a smoke test at the gate) reaches the source, and a no-go leaves it as it was.
    # Only where an application will write on the target.
    if spec.entry_point:
        yield from _way_backs(systems)


def _way_back_unswitched(spec, systems):
    # No entry point to switch: the target applications write from their start on.
    if not spec.entry_point:
        yield from _way_backs(systems)


def _way_backs(systems):
    for name, system in systems:
        if system.app:
            for db in system.databases:
                yield WayBack(name, db)


def _configure(spec, systems):
    for host, items in _configs(spec, systems):
        yield Configure(host, tuple(items))


def _render(spec, systems):
    # A warm wave: rendered (and checked by a dry run) while the source is live.
    for host, items in _configs(spec, systems):
        yield Configure(host, tuple(items), start=False)


def _start(spec, systems):
    for host, items in _configs(spec, systems):
        yield StartTargets(host, tuple(items))


def _configs(spec, systems):
    return _by_host([(s.app.target_host, _target_config(spec, name, s)) for name, s in systems if s.app])


def _target_config(spec, name, system) -> TargetConfig:
    settings = {"bucket": spec.storage.bucket, "service": system.app.service_name}
    for db, d in system.databases.items():
        server = spec.db_servers[d.target.server]
        settings[f"db_{db}"] = f"host={server.host} port={server.port} dbname={d.target.dbname} user={server.user}"
    return TargetConfig(name, system.app.config_template, system.app.config_path, system.app.service_name,
                        tuple(sorted(settings.items())))


def _apps(systems) -> tuple[str, ...]:
    return tuple(name for name, s in systems if s.app)


def _health(spec, systems):
    if _apps(systems):
        yield TargetHealth(_apps(systems))


def _gate(spec, systems):
    if spec.entry_point and _apps(systems):
        yield Gate(_apps(systems))


def _switch(spec, systems):
    if spec.entry_point and _apps(systems):
        yield SwitchEntry(_apps(systems))
        yield PostCutover(_apps(systems))


def _databases(systems) -> list[tuple[str, str]]:
    return [(name, db) for name, s in systems for db in s.databases]


def _sync_databases(spec, systems):
    for name, db in _databases(systems):
        yield SyncDatabase(name, db)


def _synced(spec, systems):
    if _databases(systems):
        yield Synced(tuple(_databases(systems)))


def _cutover_check(spec, systems):
    if _databases(systems):
        yield CutoverCheck(tuple(_databases(systems)))


def _fence(spec, systems):
    for name, db in _databases(systems):
        yield FenceDatabase(name, db)


PHASES = (_freeze, _evidence, _open_staging, _stage_databases, _stage_archive, _restore_archive,
          _create_databases, _restore_databases, _verify, _way_back_unswitched, _configure, _health, _gate,
          _way_back, _switch)

# `migrate sync`, then `migrate run`: the source stays live until `cutover-check` (the target
# configuration is rendered before); the freeze (maintenance, then the fence) holds only the
# catch-up, the documents, verification, the start of the target and the switch.
WARM_PHASES = (_open_staging, _stage_databases, _create_databases, _sync_databases, _stage_archive_live,
               _restore_archive_live, _render, _synced, _cutover_check, _freeze, _fence, _evidence_since,
               _archive_delta, _stage_archive_frozen, _restore_archive_frozen, _verify_since,
               _way_back_unswitched, _start, _health, _gate, _way_back, _switch)


def build(spec, wave: str, *, warm: bool = False) -> list:
    """The steps of `wave`, in order; `warm`: the plan of `migrate sync`."""
    names = order_systems(spec, spec.waves[wave].systems)
    systems = [(name, spec.systems[name]) for name in names]
    return [step for phase in (WARM_PHASES if warm else PHASES) for step in phase(spec, systems)]
