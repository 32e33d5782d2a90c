"""The validated wave spec and the inventory view.

An inventory is a directory holding an Ansible inventory (`hosts.yml`) and the migration spec
(`migrate.yml`). Loading checks types, unknown keys and every cross reference, and reports one
line per problem naming the file and the field path. Nothing else in the package reads YAML.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from migrate.errors import ConfigError

SPEC_FILE = "migrate.yml"
HOSTS_FILE = "hosts.yml"
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


class Window(Strict):
    timezone: str = "Europe/Rome"
    slots: list[Slot]
    blackout: list[date] = []


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


class Spec(Strict):
    version: Literal[1]
    allowed_networks: list[str] = Field(min_length=1)
    target: Target
    db_servers: dict[str, DbServer]
    storage: Storage
    transfer: Transfer = Transfer()
    entry_point: EntryPoint | None = None
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


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int
    user: str
    vars: dict


@dataclass(frozen=True)
class Inventory:
    """A loaded, validated inventory: the spec plus the hosts it may touch."""

    path: Path
    spec: Spec
    hosts: dict[str, Host]

    @property
    def state_dir(self) -> Path:
        return self.path / ".state"

    def resolve(self, relative: str) -> Path:
        """A path from the spec, relative to the inventory directory."""
        return (self.path / relative).resolve()

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n) for n in self.spec.allowed_networks]

    def limited(self, wave: str, system: str) -> "Inventory":
        """The same inventory with `wave` narrowed to one of its systems (`--limit`): every
        step, check and verification that reads the wave's systems sees only that one."""
        w = self.spec.waves[wave]
        if system not in w.systems:
            raise ConfigError(f"--limit: wave {wave} has no system '{system}' (it has {', '.join(w.systems)})")
        waves = {**self.spec.waves, wave: w.model_copy(update={"systems": [system]})}
        return replace(self, spec=self.spec.model_copy(update={"waves": waves}))


def load(inventory_dir: str | Path) -> Inventory:
    path = Path(inventory_dir).resolve()
    if not path.is_dir():
        raise ConfigError(f"{inventory_dir}: inventory directory not found")
    spec = _load_spec(path / SPEC_FILE)
    hosts = _load_hosts(path / HOSTS_FILE)
    inv = Inventory(path=path, spec=spec, hosts=hosts)
    problems = [f"{path / SPEC_FILE}: {p}" for p in _cross_check(inv)]
    if problems:
        raise ConfigError(problems[0], problems=problems)
    return inv


def _read_yaml(file: Path) -> object:
    if not file.is_file():
        raise ConfigError(f"{file}: file not found")
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None


def _load_spec(file: Path) -> Spec:
    data = _read_yaml(file)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        problems = [f"{file}: {_field_path(e['loc'])}: {_plain(e)}" for e in exc.errors()]
        raise ConfigError(problems[0], problems=problems) from None


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("function-", "literal["))]
    return ".".join(parts) or "(top level)"


def _plain(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return error["msg"].removeprefix("Value error, ")


def _load_hosts(file: Path) -> dict[str, Host]:
    """Hosts of an Ansible YAML inventory: `all` with `hosts` and nested `children`."""
    data = _read_yaml(file)
    if not isinstance(data, dict) or not isinstance(data.get("all"), dict):
        raise ConfigError(f"{file}: all: an Ansible YAML inventory with a top-level 'all' group is required")
    found: dict[str, dict] = {}
    _collect_hosts(data["all"], {}, found, file, "all")
    render = jinja2.Environment(undefined=jinja2.StrictUndefined)
    hosts = {}
    for name, hv in found.items():
        try:
            hv = {k: render.from_string(v).render(inventory_dir=str(file.parent)) if isinstance(v, str) else v
                  for k, v in hv.items()}
            hosts[name] = Host(name=name, address=str(hv.get("ansible_host", name)),
                               port=int(hv.get("ansible_port", 22)), user=str(hv.get("ansible_user", "root")),
                               vars=hv)
        except (jinja2.TemplateError, ValueError) as exc:
            raise ConfigError(f"{file}: hosts.{name}: {exc}") from None
    return hosts


def _collect_hosts(group: dict, inherited: dict, found: dict, file: Path, where: str) -> None:
    if not isinstance(group, dict):
        raise ConfigError(f"{file}: {where}: a group must be a mapping")
    merged = {**inherited, **(group.get("vars") or {})}
    for name, hv in (group.get("hosts") or {}).items():
        found[name] = {**found.get(name, {}), **merged, **(hv or {})}
    for child, sub in (group.get("children") or {}).items():
        _collect_hosts(sub or {}, merged, found, file, f"{where}.children.{child}")


def _cross_check(inv: Inventory) -> list[str]:
    spec, problems = inv.spec, []
    for name, system in spec.systems.items():
        where = f"systems.{name}"
        problems += [f"{where}.depends_on: unknown system '{d}'" for d in system.depends_on if d not in spec.systems]
        for db, d in system.databases.items():
            for side in ("source", "target"):
                server = getattr(d, side).server
                if server not in spec.db_servers:
                    problems.append(f"{where}.databases.{db}.{side}.server: unknown db server '{server}'")
        for field, host in _host_refs(system):
            if host not in inv.hosts:
                problems.append(f"{where}.{field}: host '{host}' is not in {HOSTS_FILE}")
    problems += _cycle_problems(spec)
    for name, wave in spec.waves.items():
        problems += [f"waves.{name}.systems: unknown system '{s}'" for s in wave.systems if s not in spec.systems]
        for s in wave.systems:
            missing = [d for d in spec.systems.get(s, System(classification="ordinary")).depends_on
                       if d not in wave.systems and d in spec.systems]
            problems += [f"waves.{name}.systems: '{s}' depends on '{d}', which this wave does not migrate"
                         for d in missing]
    for name, server in spec.db_servers.items():
        if bool(server.passfile) == bool(server.password_env):
            problems.append(f"db_servers.{name}: give exactly one of passfile or password_env")
    problems += _cutover_problems(inv)
    problems += _address_problems(inv)
    return problems


def _cutover_problems(inv: Inventory) -> list[str]:
    """What the cutover and its way back need: a target app URL to check health, a passfile for
    the reverse subscription, a proxy host that exists, DNS records only with a zone."""
    spec, problems = inv.spec, []
    entry = spec.entry_point
    if entry and entry.proxy_host and entry.proxy_host not in inv.hosts:
        problems.append(f"entry_point.proxy_host: host '{entry.proxy_host}' is not in {HOSTS_FILE}")
    for name, system in spec.systems.items():
        if not system.app:
            continue
        host = inv.hosts.get(system.app.target_host)
        if host and not host.vars.get("app_url"):
            problems.append(f"{HOSTS_FILE}: hosts.{host.name}.app_url: required (health checks of"
                            f" system {name} after its start)")
        if system.app.dns and not (entry and entry.dns_zone):
            problems.append(f"systems.{name}.app.dns: needs entry_point.dns_zone")
        for db, d in system.databases.items():
            server = spec.db_servers.get(d.source.server)
            if server and not server.replication_passfile:
                problems.append(f"db_servers.{d.source.server}.replication_passfile: required: the way back"
                                f" after cutover replicates {name}/{db} from the target to this server")
    return problems


def _host_refs(system: System) -> list[tuple[str, str]]:
    refs = []
    if system.app:
        refs += [("app.source_host", system.app.source_host), ("app.target_host", system.app.target_host)]
    if system.archive:
        refs.append(("archive.host", system.archive.host))
    return refs


def _cycle_problems(spec: Spec) -> list[str]:
    try:
        order_systems(spec, list(spec.systems))
    except ConfigError as exc:
        return [str(exc)]
    return []


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


def _address_problems(inv: Inventory) -> list[str]:
    problems = []
    for where, address in _addresses(inv):
        reason = address_refusal(address, inv.networks())
        if reason:
            problems.append(f"{where}: {reason}")
    return problems


def _addresses(inv: Inventory) -> list[tuple[str, str]]:
    spec = inv.spec
    found = [(f"db_servers.{n}.host", s.host) for n, s in spec.db_servers.items()]
    found += [(f"{HOSTS_FILE}: hosts.{h.name}.ansible_host", h.address) for h in inv.hosts.values()]
    if spec.storage.endpoint_url:
        found.append(("storage.endpoint_url", urlsplit(spec.storage.endpoint_url).hostname or ""))
    if spec.entry_point:
        found.append(("entry_point.url", urlsplit(spec.entry_point.url).hostname or ""))
        if spec.entry_point.dns_endpoint_url:
            found.append(("entry_point.dns_endpoint_url", urlsplit(spec.entry_point.dns_endpoint_url).hostname or ""))
    found += [(f"{HOSTS_FILE}: hosts.{h.name}.app_url", urlsplit(str(h.vars["app_url"])).hostname or "")
              for h in inv.hosts.values() if h.vars.get("app_url")]
    return found


def address_refusal(address: str, networks: list) -> str | None:
    """Why an address may not be contacted, or None. A name must resolve, and every address
    it resolves to must be inside the allowed networks: unresolvable fails closed."""
    try:
        ips = [ipaddress.ip_address(address)]
    except ValueError:
        try:
            ips = {ipaddress.ip_address(ai[4][0]) for ai in socket.getaddrinfo(address, None)}
        except (socket.gaierror, UnicodeError):
            return f"'{address}' does not resolve; refused"
    outside = sorted(str(ip) for ip in ips if not any(ip in n for n in networks))
    if outside:
        return f"address {address} ({', '.join(outside)}) is outside the allowed networks {_nets(networks)}"
    return None


def _nets(networks: list) -> str:
    return ", ".join(str(n) for n in networks)
