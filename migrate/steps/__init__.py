"""The wave graph: which steps a wave has, in which order.

Phases run one after another (freeze, stage, restore, configure); inside a phase, systems come
in dependency order. Adding a kind of step means adding it to PHASES, not an `if` elsewhere.
"""

from __future__ import annotations

from migrate.config import Inventory, order_systems
from migrate.steps.app import Maintenance, RenderConfig
from migrate.steps.database import RestoreDatabase, StageDatabase
from migrate.steps.files import StageArchive


def _freeze(inv, name, system):
    if system.app:
        yield Maintenance(name, system.app.source_host, system.app.service_name)


def _stage_databases(inv, name, system):
    for db, d in system.databases.items():
        yield StageDatabase(name, db, d.source.server, d.source.dbname)


def _stage_archive(inv, name, system):
    if system.archive:
        yield StageArchive(name, system.archive.host, system.archive.path)


def _restore_databases(inv, name, system):
    for db, d in system.databases.items():
        yield RestoreDatabase(name, db, d.target.server, d.target.dbname)


def _configure(inv, name, system):
    if not system.app:
        return
    settings = {"bucket": inv.spec.storage.bucket, "service": system.app.service_name}
    for db, d in system.databases.items():
        server = inv.spec.db_servers[d.target.server]
        settings[f"db_{db}"] = f"host={server.host} port={server.port} dbname={d.target.dbname} user={server.user}"
    yield RenderConfig(name, system.app.target_host, system.app.config_template, system.app.config_path,
                       system.app.service_name, tuple(sorted(settings.items())))


PHASES = (_freeze, _stage_databases, _stage_archive, _restore_databases, _configure)


def build(inv: Inventory, wave: str) -> list:
    systems = order_systems(inv.spec, inv.spec.waves[wave].systems)
    return [step for phase in PHASES for name in systems
            for step in phase(inv, name, inv.spec.systems[name])]
