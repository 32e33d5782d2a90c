"""The DNS entry point through the Route53 API (boto3). The lab answers with moto; the
credentials are the storage ones (one cloud account), read from the file the spec names."""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from migrate.adapters import cloud, guard
from migrate.config import Inventory
from migrate.errors import StepFailed
from migrate.model.layout import fqdn


def client(inv: Inventory):
    entry = inv.spec.entry_point
    if entry.dns_endpoint_url:
        guard.check(inv, urlsplit(entry.dns_endpoint_url).hostname or "", "entry_point.dns_endpoint_url")
    key_id, secret = cloud._credentials(inv)
    cfg = Config(region_name=inv.spec.storage.region, retries={"max_attempts": 5, "mode": "standard"},
                 connect_timeout=10, read_timeout=30)
    return boto3.session.Session().client("route53", endpoint_url=entry.dns_endpoint_url,
                                          aws_access_key_id=key_id, aws_secret_access_key=secret, config=cfg)


def _call(what: str, fn, **kwargs) -> dict:
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise StepFailed(f"DNS {what}: {cloud._code(exc)}") from None


def zone_id(r53, zone: str) -> str:
    found = _call(f"zone {zone}", r53.list_hosted_zones_by_name, DNSName=fqdn(zone), MaxItems="1")
    for z in found.get("HostedZones", []):
        if z["Name"] == fqdn(zone):
            return z["Id"].split("/")[-1]
    raise StepFailed(f"DNS zone {zone}: not found")


def _rrset(r53, zid: str, name: str) -> dict | None:
    found = _call(f"record {name}", r53.list_resource_record_sets, HostedZoneId=zid,
                  StartRecordName=fqdn(name), StartRecordType="CNAME", MaxItems="1")
    for rr in found.get("ResourceRecordSets", []):
        if rr["Name"] == fqdn(name) and rr["Type"] == "CNAME":
            return rr
    return None


def cname(inv: Inventory, name: str) -> str | None:
    """The CNAME value of `name` in the spec's zone, or None when there is no such record."""
    r53 = client(inv)
    rr = _rrset(r53, zone_id(r53, inv.spec.entry_point.dns_zone), name)
    return fqdn(rr["ResourceRecords"][0]["Value"]) if rr else None


def set_cname(inv: Inventory, name: str, value: str | None, *, ttl: int) -> dict:
    """Point `name` at `value` (None: delete the record). Idempotent, so it serves as an undo."""
    r53 = client(inv)
    zid = zone_id(r53, inv.spec.entry_point.dns_zone)
    rr = _rrset(r53, zid, name)
    current = fqdn(rr["ResourceRecords"][0]["Value"]) if rr else None
    if current == (value and fqdn(value)):
        return {"record": fqdn(name), "value": current, "changed": False}
    if value is None:
        change = {"Action": "DELETE", "ResourceRecordSet": rr}  # Route53 deletes exact matches only
    else:
        change = {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": fqdn(name), "Type": "CNAME", "TTL": ttl, "ResourceRecords": [{"Value": fqdn(value)}]}}
    _call(f"record {name}", r53.change_resource_record_sets, HostedZoneId=zid,
          ChangeBatch={"Comment": "migrate cutover", "Changes": [change]})
    return {"record": fqdn(name), "value": value and fqdn(value), "previous": current, "changed": True}
