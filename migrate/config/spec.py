"""The wave spec's models (pydantic): types, unknown keys and names are checked here; cross
references between sections are checked by `load`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from migrate.errors import ConfigError

NAME = r"^[a-z][a-z0-9_-]{0,62}$"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DbServer(Strict):
    """A PostgreSQL server. The secret comes from a libpq passfile or an environment variable."""

    host: str
    port: int = Field(5432, ge=1, le=65535)
    user: str
    passfile: str | None = None
    password_env: str | None = None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    # A libpq passfile on THIS server's host, readable by its postgres OS user: the subscription
    # that carries target writes back to this server (the way back after cutover) authenticates
    # with it, so no password is stored in the subscription's catalog. Relative paths resolve
    # against the inventory directory, which only makes sense when the server shares the
    # orchestrator's machine (the lab).
    replication_passfile: str | None = None


class DbRef(Strict):
    server: str
    dbname: str


class Database(Strict):
    source: DbRef
    target: DbRef
    # Legal-evidence tables (punches, time sheets): an order-independent digest of all their
    # rows is taken on the source before the copy and on the target after.
    evidence_tables: list[str] = []
    # "Horizontal" checks: name -> SQL run on both sides, results compared.
    business_checks: dict[str, str] = {}
    # Owners and grants on the target: source role -> target role. Absent: not copied (the
    # target's connecting role owns every object, no grants). A source role the map does not
    # name (owner, grantee, grantor, policy or default-privilege role) fails the plan, or keeps
    # its name with unmapped_roles: create. Target roles missing on the target are created
    # NOLOGIN, without a password, and dropped again by the rollback.
    roles: dict[str, str] | None = None
    unmapped_roles: Literal["create", "fail"] = "fail"

    @model_validator(mode="after")
    def _role_names(self) -> "Database":
        for role in [r for pair in (self.roles or {}).items() for r in pair]:
            if not 0 < len(role.encode()) <= 63 or role.startswith("pg_") or role.lower() == "public":
                raise ValueError(f"roles: '{role}' cannot be mapped (a role name of 1-63 bytes, not PUBLIC or pg_*)")
        return self


class DnsRecord(Strict):
    """The name users reach an application by, and what it points to before and after cutover."""

    name: str
    source: str
    target: str


class AppHosts(Strict):
    source_host: str
    target_host: str
    config_template: str
    config_path: str = Field(description="absolute path of the rendered config on the target host")
    service_name: str
    # Relative to the host's `app_url` variable; default /<service_name>/health. The page must
    # answer only when the application's database answers, and name that database.
    health_path: str | None = None
    # POSTed on the source host during the freeze, after maintenance is on: the collector loads
    # its buffer of late punches before the evidence digest and the copy.
    drain_path: str | None = None
    dns: DnsRecord | None = None

    @property
    def health(self) -> str:
        return self.health_path or f"/{self.service_name}/health"


class Archive(Strict):
    host: str
    path: str
    # packed: many documents per object (tar packs with a per-file manifest), fast for many small
    # files; objects: one object per document, for a bucket that is the documents' final home.
    layout: Literal["packed", "objects"] = "packed"
    pack_mb: int = Field(32, ge=1, le=4096)
    # Owner and group names on the source -> the names to give on the target host (default: the same).
    owners: dict[str, str] = {}
    # Where the staged documents are restored on the system's app.target_host (absolute path;
    # SHA-256 checked while streaming, mode and mtime kept). Absent: staged in the bucket only.
    target_path: str | None = Field(None, pattern=r"^/")


class System(Strict):
    description: str = ""
    classification: Literal["ordinary", "critical", "strategic"]
    depends_on: list[str] = []
    databases: dict[str, Database] = {}
    app: AppHosts | None = None
    archive: Archive | None = None


class Slot(Strict):
    days: list[Literal[DAYS]]  # type: ignore[valid-type]
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-4]):[0-5]\d$")

    @model_validator(mode="after")
    def _ordered(self) -> "Slot":
        if self.end <= self.start:  # HH:MM compares as text
            raise ValueError(f"end {self.end} is not after start {self.start}")
        return self


class Window(Strict):
    timezone: str = "Europe/Rome"
    slots: list[Slot]
    blackout: list[date] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. Europe/Rome)") from None
        return value


class RehearsalRule(Strict):
    """A production cutover needs a rehearsal (run + rollback) recorded in the journal of
    `inventory` (relative to this one, e.g. ../staging), no older than max_age_days."""

    inventory: str = "."
    max_age_days: int = Field(30, ge=1, le=3650)


class Wave(Strict):
    description: str = ""
    systems: list[str] = Field(min_length=1)
    window: Window
    # The go/no-go gate before the entry point switches: `run --approve NAME`, or automatic.
    automatic: bool = False
    require_rehearsal: RehearsalRule | None = None


class Storage(Strict):
    endpoint_url: str | None = None
    region: str
    bucket: str
    prefix: str = "waves"
    addressing: Literal["path", "virtual", "auto"] = "auto"
    checksum_mode: Literal["when_supported", "when_required"] = "when_supported"
    encryption: Literal["AES256", "aws:kms"] = "AES256"
    kms_key_id: str | None = None
    credentials_file: str | None = None
    profile: str = "default"


class Transfer(Strict):
    """How data moves: parallelism, chunking, memory and the staged copies' lifetime."""

    workers: int | None = Field(None, ge=1, le=64, description="default: the machine's cores")
    chunk_mb: int = Field(64, ge=1, le=4096)
    buffer_mb: int = Field(256, ge=16, le=65536)
    compression_level: int = Field(1, ge=-7, le=22)
    staging_expiry_days: int = Field(7, ge=1, le=365)


class Target(Strict):
    provider: str
    region: str
    service_level: Literal["ordinary", "critical", "strategic"]


class EntryPoint(Strict):
    """Where users come in: the front door URL, its proxy host, and the DNS zone switched at
    cutover (Route53 API; `dns_endpoint_url` only for an S3/Route53-compatible lab)."""

    url: str
    proxy_host: str | None = None
    proxy_config_path: str = "/etc/front/upstreams.conf"
    proxy_template: str = "front_upstreams.conf.j2"
    dns_zone: str | None = None
    dns_endpoint_url: str | None = None
    dns_ttl: int = Field(60, ge=1, le=86400)


class Evidence(Strict):
    # An ed25519 private key (PEM, unencrypted, relative to the inventory directory) that signs
    # each pack's attestations; absent: packs are unsigned and say so on their first page.
    signing_key: str | None = None
    # Days after go-live before `migrate finalize` may end the way back and delete the staging.
    confirmation_days: int = Field(14, ge=0, le=365)


class Spec(Strict):
    version: Literal[1]
    allowed_networks: list[str] = Field(min_length=1)
    target: Target

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network)
            except ValueError:
                raise ValueError(f"{network!r} is not a network (e.g. 127.0.0.0/8)") from None
        return value

    db_servers: dict[str, DbServer]
    storage: Storage
    transfer: Transfer = Transfer()
    entry_point: EntryPoint | None = None
    evidence: Evidence = Evidence()
    systems: dict[str, System]
    waves: dict[str, Wave]

    @model_validator(mode="after")
    def _names(self) -> "Spec":
        for kind, names in (("systems", self.systems), ("waves", self.waves),
                            ("db_servers", self.db_servers)):
            for name in names:
                if not re.match(NAME, name):
                    raise ValueError(f"{kind}.{name}: name must match {NAME}")
        return self


def order_systems(spec: Spec, names: list[str]) -> list[str]:
    """Systems in dependency order; ties keep the order the wave lists them in."""
    done: list[str] = []
    pending = list(names)
    while pending:
        ready = [s for s in pending if all(d in done or d not in names for d in spec.systems[s].depends_on)]
        if not ready:
            raise ConfigError(f"systems: dependency cycle among {', '.join(sorted(pending))}")
        done.append(ready[0])
        pending.remove(ready[0])
    return done
