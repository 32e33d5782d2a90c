"""The lab's cloud: one moto server for S3 (the staging bucket) and Route53 (the Comune's
public zone), and the random S3 credentials in secrets/s3.ini."""

from __future__ import annotations

import configparser
import functools
import os
import secrets
import sys
import time
from pathlib import Path

from migrate.lab.errors import LabError
from migrate.lab.files import write_private
from migrate.lab.layout import APP_SERVICES, HOST, LabPaths
from migrate.lab.processes import spawn

BUCKET = "comune-migration-staging"
REGION = "eu-south-1"

# The users' entry points: CNAMEs in a public zone of moto's Route53.
DNS_ZONE = "comune.lab."
DNS_RECORDS = tuple(f"{service}.{DNS_ZONE}" for service in APP_SERVICES)
DNS_SOURCE = f"src-app.{DNS_ZONE}"
DNS_TTL = 60


def endpoint_errors(fn):
    """The endpoint not answering (refused, reset, timed out) is a LabError of one line naming
    it, not botocore's exception: `up` restarts an endpoint that stops answering."""
    @functools.wraps(fn)
    def call(paths: LabPaths, port: int, *args, **kwargs):
        from botocore.exceptions import ConnectionError, HTTPClientError
        try:
            return fn(paths, port, *args, **kwargs)
        except (ConnectionError, HTTPClientError) as exc:
            raise LabError(f"the S3 endpoint http://{HOST}:{port} does not answer ({type(exc).__name__});"
                           f" `migrate lab up` restarts it (log: {paths.s3_dir / 'moto.log'})") from None
    return call


def moto_binary() -> Path:
    # Next to the interpreter that runs us (the venv's bin/), not resolved through symlinks:
    # resolving would land in the system Python's bin/, where moto is not installed.
    return Path(sys.executable).parent / "moto_server"


def start_moto(paths: LabPaths, port: int) -> tuple[int, Path]:
    log_file = paths.s3_dir / "moto.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    argv = [str(moto_binary()), "-H", HOST, "-p", str(port)]
    return spawn(argv, log_file, env), log_file


def ensure_s3_credentials(paths: LabPaths) -> None:
    if paths.s3_ini.exists():
        return
    config = configparser.ConfigParser()
    config["lab"] = {
        "aws_access_key_id": "LAB" + secrets.token_hex(8).upper(),
        "aws_secret_access_key": secrets.token_urlsafe(30),
    }
    lines = ["[lab]"] + [f"{key} = {value}" for key, value in config["lab"].items()]
    write_private(paths.s3_ini, "\n".join(lines) + "\n")


def _s3_credentials(paths: LabPaths) -> tuple[str, str]:
    config = configparser.ConfigParser()
    if not config.read(paths.s3_ini):
        raise LabError(f"{paths.s3_ini} is missing")
    section = config["lab"]
    return section["aws_access_key_id"], section["aws_secret_access_key"]


def _aws_client(paths: LabPaths, port: int, service: str):
    import boto3
    from botocore.config import Config

    key_id, secret = _s3_credentials(paths)
    config = Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    return boto3.client(service, endpoint_url=f"http://{HOST}:{port}", region_name=REGION,
                        aws_access_key_id=key_id, aws_secret_access_key=secret, config=config)


# --- S3 ------------------------------------------------------------------------------------

def _s3_client(paths: LabPaths, port: int):
    return _aws_client(paths, port, "s3")


@endpoint_errors
def ensure_bucket(paths: LabPaths, port: int) -> None:
    # moto keeps everything in memory: after a restart the bucket is gone, so (re)create it.
    client = _s3_client(paths, port)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if BUCKET in existing:
        return
    client.create_bucket(Bucket=BUCKET,
                         CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET,
                                 VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    client.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True})


@endpoint_errors
def empty_bucket(paths: LabPaths, port: int) -> None:
    client = _s3_client(paths, port)
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=BUCKET):
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                  for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if doomed:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": doomed, "Quiet": True})


# --- DNS (moto's Route53) ------------------------------------------------------------------

def _find_zone(client) -> str | None:
    zones = client.list_hosted_zones_by_name(DNSName=DNS_ZONE).get("HostedZones", [])
    return next((zone["Id"] for zone in zones if zone["Name"] == DNS_ZONE), None)


def _record_sets(client, zone_id: str) -> list[dict]:
    """Every record set of the zone but the apex SOA and NS, which belong to the zone."""
    found = []
    for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
        found += [rs for rs in page["ResourceRecordSets"]
                  if not (rs["Name"] == DNS_ZONE and rs["Type"] in ("SOA", "NS"))]
    return found


def _initial_changes(client, zone_id: str) -> list[dict]:
    """Changes that leave exactly the initial records: the services' CNAMEs to src-app."""
    changes = [{"Action": "DELETE", "ResourceRecordSet": rs}
               for rs in _record_sets(client, zone_id)
               if not (rs["Name"] in DNS_RECORDS and rs["Type"] == "CNAME")]
    changes += [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": name, "Type": "CNAME", "TTL": DNS_TTL,
        "ResourceRecords": [{"Value": DNS_SOURCE}]}} for name in DNS_RECORDS]
    return changes


@endpoint_errors
def reset_dns(paths: LabPaths, port: int, *, only_if_new: bool = False) -> None:
    """The zone with its initial records; with only_if_new, leave an existing zone alone.

    `up` uses only_if_new: a cutover's DNS change must survive a later `up`. moto keeps the
    zone in memory, so after a moto restart it is created again.
    """
    client = _aws_client(paths, port, "route53")
    zone_id = _find_zone(client)
    if zone_id is not None and only_if_new:
        return
    if zone_id is None:
        zone_id = client.create_hosted_zone(
            Name=DNS_ZONE, CallerReference=f"migrate-lab-{time.time_ns()}",
            HostedZoneConfig={"Comment": "migrate lab: the Comune's public names",
                              "PrivateZone": False})["HostedZone"]["Id"]
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
        "Comment": "lab initial state", "Changes": _initial_changes(client, zone_id)})


@endpoint_errors
def dns_status(paths: LabPaths, port: int, s3_up: bool) -> dict:
    result = {"zone": DNS_ZONE, "zone_id": None, "records": {}}
    if not s3_up:
        return result
    client = _aws_client(paths, port, "route53")
    zone_id = _find_zone(client)
    if zone_id is None:
        return result
    result["zone_id"] = zone_id
    for rs in _record_sets(client, zone_id):
        values = [r["Value"] for r in rs.get("ResourceRecords", [])]
        if "AliasTarget" in rs:
            values.append(rs["AliasTarget"]["DNSName"])
        result["records"][rs["Name"]] = ",".join(values)
    return result
