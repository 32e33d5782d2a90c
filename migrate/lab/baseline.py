"""The lab's initial state: seeding it, taking the baseline, and going back to it.

Right after a seed the lab is in its initial state: the source applications run on src-app
against the source databases, the collector holds a few late punches, the front door and DNS
send users to src-app, tgt-app is installed but empty. `make_baseline` writes that state and
keeps what `restore` needs to bring it back fast: template copies of the source databases and
a copy of every host's tree.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
from datetime import timedelta
from pathlib import Path

from migrate.lab.cloud import empty_bucket, reset_dns
from migrate.lab.databases import (drop_replication, make_source_templates, reset_target_cluster,
                                   restore_source)
from migrate.lab.errors import LabError
from migrate.lab.files import clear_tree, sync_tree, write_file
from migrate.lab.layout import (APP_SERVICES, HOST, HOST_TREES, PACKAGE_ROOT, PG_ROLE, LabPaths,
                                LabPorts, dsn)

log = logging.getLogger(__name__)

ARCHIVE_DIR = "srv/personale/documents"  # on src-app; written by the seed, not by us
BULK_HOST = "src-app"                     # where the historical files go: inside ARCHIVE_DIR
BULK_RECORD = "bulk-archive.json"         # in the baseline: which historical files to rewrite
SPOOLED_PUNCHES = 3

SOURCE_CONFIGS = {
    "personale": """\
# Personnel management (gestione giuridica del personale): personale
# On-premises installation (lab source host).
[database]
dsn = {dsn}

[documents]
root = /srv/personale/documents
""",
    "presenze": """\
# Staff attendance (rilevazione presenze): presenze
# On-premises installation (lab source host).
[database]
dsn = {dsn}

[collector]
# Terminals upload late punches: the collector drains its buffer before a freeze.
spool = /var/spool/hr/presenze
buffer_drain_seconds = 60
""",
}

# The front door's file is rendered from the template the cutover renders it from (with
# Ansible's template settings), so a rollback puts back the very same bytes.
FRONT_TEMPLATE = PACKAGE_ROOT / "templates" / "front_upstreams.conf.j2"

# Three active employees who have punched before, each with the badge they hold and their
# home terminal; the late punch is the one that follows their last punch, an hour later.
SPOOL_QUERY = """
SELECT s.employee_id, b.badge_id, s.home_terminal_id, last.punched_at, last.direction
FROM staff s
LEFT JOIN LATERAL (SELECT badge_id FROM badge
                   WHERE employee_id = s.employee_id AND valid_to IS NULL AND NOT lost
                   ORDER BY badge_id DESC LIMIT 1) b ON true
JOIN LATERAL (SELECT punched_at, direction FROM punch
              WHERE employee_id = s.employee_id
              ORDER BY punched_at DESC, punch_id DESC LIMIT 1) last ON true
WHERE s.active
ORDER BY s.employee_id
LIMIT %s"""


def seed_lab(paths: LabPaths, ports: LabPorts, *, employees: int, years: int, seed: int,
             documents: int = 0) -> dict:
    """Seed the source and take the baseline; `documents` historical files are added to the
    archive (see migrate.lab.data.bulk_archive) and counted as result["bulk_archive"]."""
    data = _data_package("seed the source")
    archive = paths.host_root(BULK_HOST) / ARCHIVE_DIR
    previous = _recorded_bulk(paths)
    # The seed empties the archive: historical files that the new ones may reuse wait beside it.
    aside = _set_aside(archive / data.BULK_DIR) if documents and previous else None
    result = data.seed(admin_dsn=dsn(paths, ports.pg_source, "postgres"), archive_dir=archive,
                       employees=employees, years=years, seed=seed)
    bulk = None
    if documents:
        if aside is not None:
            os.rename(aside, archive / data.BULK_DIR)
        written = data.write_bulk_archive(archive / data.BULK_DIR, count=documents, seed=seed,
                                          previous=previous.get("fingerprint") if aside else None)
        bulk = {"host": BULK_HOST, "path": f"{ARCHIVE_DIR}/{data.BULK_DIR}", "count": documents,
                "seed": seed, "fingerprint": written.pop("fingerprint")}
        result["bulk_archive"] = written
    make_baseline(paths, ports, bulk=bulk)
    return {"employees": employees, "years": years, "seed": seed, "documents": documents,
            "result": result, "baseline": True}


def _set_aside(root: Path) -> Path | None:
    """Move `root` next to the archive (a rename: instant); None if there is nothing there. A
    copy left there by an interrupted seed is dropped by the next baseline (clear_tree)."""
    aside = root.parent.parent / f".{root.name}.reseed"
    if aside.exists():
        shutil.rmtree(aside)
    if not root.is_dir() or root.is_symlink():
        return None
    os.rename(root, aside)
    return aside


def _data_package(purpose: str):
    # Looked up at call time through the import system, so tests can swap in a stub module.
    try:
        return importlib.import_module("migrate.lab.data")
    except ModuleNotFoundError as exc:
        raise LabError(f"cannot {purpose}: {exc}") from None


def make_baseline(paths: LabPaths, ports: LabPorts, *, bulk: dict | None = None) -> None:
    """Write the post-seed state and keep what `reset` restores it from. `bulk` (host, path,
    count, seed, fingerprint) names the historical files: recorded, not copied (they are
    rewritten from their seed)."""
    _write_initial_hosts(paths, ports, _spooled_punches(paths, ports))
    make_source_templates(paths, ports.pg_source)
    for host in HOST_TREES:
        saved = paths.baseline / "hosts" / host
        if saved.exists():
            shutil.rmtree(saved)
        shutil.copytree(paths.host_root(host), saved, symlinks=True,
                        ignore=_leaving_out(_bulk_root(paths, bulk, host)))
    _record_bulk(paths, bulk)
    reset_dns(paths, ports.s3)


def restore(paths: LabPaths, ports: LabPorts) -> None:
    """Back to the state right after the last seed: replication dropped on both clusters, the
    source databases recreated from their templates, the target cluster, the bucket, every
    host's tree and the DNS records as initially."""
    import psycopg

    try:
        drop_replication(paths, [ports.pg_source, ports.pg_target])
        restore_source(paths, ports.pg_source)
    except psycopg.Error as exc:
        raise LabError(f"could not reset the source databases: {exc}") from None
    reset_target_cluster(paths, ports.pg_target)
    empty_bucket(paths, ports.s3)
    _restore_hosts(paths, _recorded_bulk(paths))
    reset_dns(paths, ports.s3)


def _front_upstreams(upstreams: dict[str, str]) -> str:
    import jinja2
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.from_string(FRONT_TEMPLATE.read_text()).render(upstreams=upstreams)


def _source_dsn(ports: LabPorts, dbname: str) -> str:
    # No passfile and no password: the application brings its own credentials.
    return f"host={HOST} port={ports.pg_source} dbname={dbname} user={PG_ROLE}"


def _app_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def _spooled_punches(paths: LabPaths, ports: LabPorts) -> list[dict]:
    """The collector's late punches, derived from the seeded data (so deterministic)."""
    from zoneinfo import ZoneInfo

    import psycopg

    rome = ZoneInfo("Europe/Rome")
    try:
        with psycopg.connect(dsn(paths, ports.pg_source, "presenze")) as conn:
            rows = conn.execute(SPOOL_QUERY, (SPOOLED_PUNCHES,)).fetchall()
    except psycopg.errors.UndefinedTable:
        # A stub seed (tests of the infrastructure) has no attendance tables: no buffer.
        log.info("presenze has no attendance tables: no late punches spooled")
        return []
    return [{"employee_id": employee_id, "badge_id": badge_id, "terminal_id": terminal_id,
             "direction": "OUT" if direction == "IN" else "IN",
             "punched_at": (punched_at + timedelta(hours=1)).astimezone(rome).isoformat()}
            for employee_id, badge_id, terminal_id, punched_at, direction in rows]


def _write_initial_hosts(paths: LabPaths, ports: LabPorts, spool: list[dict]) -> None:
    """Every host's tree as right after a seed (src-app's document archive is the seed's)."""
    clear_tree(paths.host_root("src-app"), keep=ARCHIVE_DIR)
    clear_tree(paths.host_root("tgt-app"))
    clear_tree(paths.host_root("front"))
    for host, trees in HOST_TREES.items():
        for tree in trees:
            (paths.host_root(host) / tree).mkdir(parents=True, exist_ok=True)
    src = paths.host_root("src-app")
    for service in APP_SERVICES:
        write_file(src / "etc/hr" / f"{service}.conf",
                   SOURCE_CONFIGS[service].format(dsn=_source_dsn(ports, service)), 0o600)
        # The lab's service manager: a service runs while its flag file exists.
        write_file(src / "run/hr" / f"{service}.running", "started by the lab\n")
    for number, punch in enumerate(spool, start=1):
        write_file(src / "var/spool/hr/presenze" / f"punch-{number:04d}.json",
                   json.dumps(punch, sort_keys=True) + "\n")
    write_file(paths.host_root("front") / "etc/front/upstreams.conf",
               _front_upstreams({service: _app_url(ports.http_src_app) for service in APP_SERVICES}))


def _restore_hosts(paths: LabPaths, bulk: dict | None) -> None:
    for host in HOST_TREES:
        saved = paths.baseline / "hosts" / host
        if not saved.is_dir():
            raise LabError(f"{saved} is missing; run `migrate lab seed`")
        sync_tree(saved, paths.host_root(host), keep=_bulk_root(paths, bulk, host))
    if bulk:
        _restore_bulk(paths, bulk)


def _restore_bulk(paths: LabPaths, bulk: dict) -> None:
    data = _data_package("restore the historical archive")
    try:
        data.restore_bulk_archive(_bulk_root(paths, bulk, bulk["host"]), count=bulk["count"],
                                  seed=bulk["seed"], expected=bulk.get("fingerprint"))
    except ValueError as exc:
        raise LabError(f"{exc}; run `migrate lab seed --documents {bulk['count']}`") from None


# --- the historical files: a record in the baseline instead of a copy -------------------------


def _bulk_root(paths: LabPaths, bulk: dict | None, host: str) -> Path | None:
    return paths.host_root(host) / bulk["path"] if bulk and bulk["host"] == host else None


def _leaving_out(skipped: Path | None):
    """A copytree `ignore` that leaves out exactly `skipped` (nothing if None)."""
    def ignore(directory: str, names: list[str]) -> list[str]:
        if skipped is not None and Path(directory) == skipped.parent and skipped.name in names:
            return [skipped.name]
        return []
    return ignore


def _record_bulk(paths: LabPaths, bulk: dict | None) -> None:
    record = paths.baseline / BULK_RECORD
    if bulk:
        write_file(record, json.dumps(bulk, sort_keys=True) + "\n")
    else:
        record.unlink(missing_ok=True)


def _recorded_bulk(paths: LabPaths) -> dict | None:
    record = paths.baseline / BULK_RECORD
    return json.loads(record.read_text()) if record.exists() else None
