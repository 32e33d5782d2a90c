"""Shared helpers for the integration tests: a test lab, its inventory, and independent checks
of what is in the databases, the bucket and on the hosts."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
# The test lab: its own directory and the default ports + 2000, so a developer's running lab is
# left alone. Two test sessions at once need distinct values of both variables.
LAB_DIR = Path(os.environ.get("MIGRATE_TEST_LAB", ROOT / ".lab-test")).resolve()
INVENTORY = LAB_DIR / "inventory"
DEFAULT_PORTS = {"pg_source": 15432, "pg_target": 15433, "ssh_src_app": 12201, "ssh_tgt_app": 12202, "s3": 15900,
                 "ssh_front": 12203, "http_src_app": 12281, "http_tgt_app": 12282, "http_front": 12280}
OFFSET = int(os.environ.get("MIGRATE_TEST_PORT_OFFSET", "2000"))
PORTS = {name: port + OFFSET for name, port in DEFAULT_PORTS.items()}
DATABASES = ("personale", "presenze")


def write_inventory() -> Path:
    """The lab inventory from git, pointed at the test lab: the same files, other ports/paths."""
    from migrate.lab.inventory import write_lab_inventory
    from migrate.lab.api import LabPorts
    return write_lab_inventory(LAB_DIR, LabPorts(**PORTS), INVENTORY)


def migrate(*args: str, timeout: float = 300, extra_env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATE_")} | (extra_env or {})
    return subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(INVENTORY), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


def dsn(side: str, dbname: str) -> str:
    port = PORTS["pg_source" if side == "source" else "pg_target"]
    return f"host=127.0.0.1 port={port} dbname={dbname} user=migrate passfile={LAB_DIR}/secrets/pgpass"


def databases(side: str) -> set[str]:
    with psycopg.connect(dsn(side, "postgres")) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")} - {"postgres"}


# Values are compared as values: both sides render them under the same session settings, so a
# database-level default (the source's Europe/Rome time zone) cannot hide or fake a difference.
SESSION = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c IntervalStyle=postgres -c bytea_output=hex"


def table_digests(side: str, dbname: str) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent digest of every row, for every user table."""
    result = {}
    with psycopg.connect(dsn(side, dbname), options=SESSION) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            query = sql.SQL("SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '')"
                            " FROM {}.{} t").format(sql.Identifier(schema), sql.Identifier(table))
            result[f"{schema}.{table}"] = tuple(conn.execute(query).fetchone())
    return result


def object_digests(side: str, dbname: str) -> dict[str, list]:
    """Views, triggers, indexes and sequence values: what a plain row comparison misses."""
    with psycopg.connect(dsn(side, dbname)) as conn:
        def names(q):
            return sorted(r[0] for r in conn.execute(q))
        sequences = names("SELECT schemaname || '.' || sequencename || '=' || coalesce(last_value, 0) FROM pg_sequences")
        return {
            "database_settings": names("SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d"
                                       " ON d.oid = s.setdatabase WHERE d.datname = current_database() AND s.setrole = 0"),
            "views": names("SELECT schemaname || '.' || viewname FROM pg_views WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"),
            "triggers": names("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"),
            "indexes": names("SELECT schemaname || '.' || indexname FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog')"),
            "sequences": sequences,
        }


def publications(side: str, dbname: str) -> list[str]:
    """A sync's publication on the source (the target's way back has one by design)."""
    with psycopg.connect(dsn(side, dbname)) as conn:
        return sorted(r[0] for r in conn.execute("SELECT pubname FROM pg_publication"))


def host_root(host: str) -> Path:
    return LAB_DIR / "hosts" / host / "root"


def tree(path: Path) -> dict[str, str]:
    """Every file under path with its SHA-256 and mode."""
    return {str(p.relative_to(path)): f"{hashlib.sha256(p.read_bytes()).hexdigest()} {oct(p.stat().st_mode)}"
            for p in sorted(path.rglob("*")) if p.is_file()}


def aws_client(service: str = "s3"):
    import configparser

    import boto3
    ini = configparser.ConfigParser()
    ini.read(LAB_DIR / "secrets" / "s3.ini")
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{PORTS['s3']}", region_name="eu-south-1",
                        aws_access_key_id=ini["lab"]["aws_access_key_id"],
                        aws_secret_access_key=ini["lab"]["aws_secret_access_key"])


def s3_client():
    return aws_client("s3")


DNS_ZONE = "comune.lab."


def dns_record_sets() -> list[dict]:
    """Every record set of the lab zone but its SOA and NS, as Route53 lists them."""
    r53 = aws_client("route53")
    zones = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == DNS_ZONE]
    assert len(zones) == 1, f"expected one zone {DNS_ZONE}, found {len(zones)}"
    sets = r53.list_resource_record_sets(HostedZoneId=zones[0]["Id"])["ResourceRecordSets"]
    return [rs for rs in sets if not (rs["Name"] == DNS_ZONE and rs["Type"] in ("SOA", "NS"))]


def dns_records() -> dict[str, str]:
    """name -> value (several values comma-joined) of every record of the lab zone."""
    return {rs["Name"]: ",".join(sorted(r["Value"] for r in rs.get("ResourceRecords", [])))
            for rs in dns_record_sets()}


def drain_spool() -> int:
    """Load the attendance collector's late punches on src-app into the source now (what a
    freeze does first), so that a wave's before/after comparison starts from an empty buffer."""
    import json
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://127.0.0.1:{PORTS['http_src_app']}/presenze/drain", data=b"",
                                     method="POST")
    with opener.open(request, timeout=30) as reply:
        return json.loads(reply.read())["drained"]


BUCKET = "comune-migration-staging"


ANCHORS = "journal-anchors/"  # the journal's second anchor: evidence, kept after a rollback


def bucket_versions() -> list[tuple[str, str]]:
    """Every version and delete marker in the bucket but the journal's anchors."""
    s3, found = s3_client(), []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        found += [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
                  if not v["Key"].startswith(ANCHORS)]
    return sorted(found)


def reset() -> None:
    """Back to the lab's state right after its seed: source and target databases, replication,
    bucket, every host's tree, DNS (migrate.lab.api.reset), and no orchestrator state."""
    from migrate.lab import api as lab_api
    lab_api.reset(LAB_DIR)
    shutil.rmtree(INVENTORY / ".state", ignore_errors=True)


def multipart_uploads() -> list[tuple[str, str]]:
    uploads = s3_client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return sorted((u["Key"], u["UploadId"]) for u in uploads)


def lifecycle_rules() -> list[dict]:
    try:
        return s3_client().get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    except Exception as exc:  # botocore's NoSuchLifecycleConfiguration: no rule at all
        if "NoSuchLifecycleConfiguration" in str(exc):
            return []
        raise


def server_state(side: str) -> dict:
    """Cluster-wide things a wave may leave behind: who may connect to each database and its
    limits, roles, replication slots and subscriptions."""
    with psycopg.connect(dsn(side, "postgres")) as conn:
        def rows(q):
            return sorted(tuple(str(c) for c in r) for r in conn.execute(q))
        return {
            # Who holds which privilege (not how the ACL is spelled: a default ACL made explicit is the same)
            "privileges": rows("SELECT d.datname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type FROM pg_database d"
                               " CROSS JOIN aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
                               " LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE NOT d.datistemplate"),
            "databases": rows("SELECT datname, datconnlimit, datallowconn FROM pg_database WHERE NOT datistemplate"),
            "roles": rows("SELECT rolname, rolcanlogin, rolreplication FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'"),
            "slots": rows("SELECT slot_name, database FROM pg_replication_slots"),
            "subscriptions": rows("SELECT subname, subenabled FROM pg_subscription"),
        }


def snapshot() -> dict:
    """Everything a wave may touch, for before/after comparisons."""
    return {
        "source": {db: table_digests("source", db) for db in DATABASES},
        "source_objects": {db: object_digests("source", db) for db in DATABASES},
        "source_publications": {db: publications("source", db) for db in DATABASES},
        "target_databases": databases("target"),
        "servers": {side: server_state(side) for side in ("source", "target")},
        "bucket": bucket_versions(),
        "uploads": multipart_uploads(),
        "lifecycle": lifecycle_rules(),
        "src-app": tree(host_root("src-app")),
        "tgt-app": tree(host_root("tgt-app")),
        "front": tree(host_root("front")),
        "dns": sorted(dns_record_sets(), key=lambda rs: (rs["Name"], rs["Type"])),
        "front_door": front_door(),
    }


SERVICES = ("personale", "presenze")


def front_door() -> dict[str, str]:
    """Which app server the running front door sends each service to (its answer, not its file)."""
    import urllib.request
    opener, found = urllib.request.build_opener(urllib.request.ProxyHandler({})), {}
    for service in SERVICES:
        try:
            with opener.open(f"http://127.0.0.1:{PORTS['http_front']}/{service}/health", timeout=10) as reply:
                found[service] = reply.headers.get("X-Upstream", "").rstrip("/")
        except urllib.error.HTTPError as exc:
            found[service] = f"{exc.headers.get('X-Upstream', '').rstrip('/')} {exc.code}"
        except OSError as exc:
            found[service] = f"unreachable: {type(exc).__name__}"
    return found
