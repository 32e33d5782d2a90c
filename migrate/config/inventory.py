"""Loading an inventory: the spec and the hosts it may touch, with every cross-check.

An inventory is a directory holding an Ansible inventory (`hosts.yml`) and the migration spec
(`migrate.yml`). Loading checks types, unknown keys and every cross reference, and reports one
line per problem naming the file and the field path. Nothing else in the package reads YAML,
and nothing here does I/O beyond reading those two files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import yaml
from pydantic import ValidationError

from migrate.config.network import Network, Resolver, address_refusal, is_literal, parse_networks
from migrate.config.spec import Spec, System, order_systems
from migrate.errors import ConfigError

SPEC_FILE = "migrate.yml"
HOSTS_FILE = "hosts.yml"


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

    def networks(self) -> list[Network]:
        return parse_networks(self.spec.allowed_networks)

    def limited(self, wave: str, system: str) -> "Inventory":
        """The same inventory with `wave` narrowed to one of its systems (`--limit`): every
        step, check and verification that reads the wave's systems sees only that one."""
        w = self.spec.waves[wave]
        if system not in w.systems:
            raise ConfigError(f"--limit: wave {wave} has no system '{system}' (it has {', '.join(w.systems)})")
        waves = {**self.spec.waves, wave: w.model_copy(update={"systems": [system]})}
        return replace(self, spec=self.spec.model_copy(update={"waves": waves}))


def load(inventory_dir: str | Path, *, resolve: Resolver | None = None) -> Inventory:
    """The inventory, checked. `resolve` (the CLI passes the guard's) lets the check of allowed
    networks cover host names too, before anything runs; without it only literal addresses are
    checked here, and names wait for the guard, which checks every address before connecting."""
    path = Path(inventory_dir).resolve()
    if not path.is_dir():
        raise ConfigError(f"{inventory_dir}: inventory directory not found")
    spec = _load_spec(path / SPEC_FILE)
    hosts = _load_hosts(path / HOSTS_FILE)
    inv = Inventory(path=path, spec=spec, hosts=hosts)
    problems = [f"{path / SPEC_FILE}: {p}" for p in _cross_check(inv) + _address_problems(inv, resolve)]
    if problems:
        raise ConfigError(problems[0], problems=problems)
    return inv


MAX_FILE_BYTES = 1024 * 1024  # a spec or hosts file is a few KB; anything near this is a mistake


class _UniqueKeys(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error (YAML says the last wins:
    a second `bucket:` would silently replace the first)."""


def _unique_mapping(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _read_yaml(file: Path) -> object:
    if not file.is_file():
        raise ConfigError(f"{file}: file not found")
    if file.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{file}: {file.stat().st_size} bytes, more than the {MAX_FILE_BYTES} a spec may have")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    loader = _UniqueKeys(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    finally:
        loader.dispose()


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
        _refuse_weakened_host_keys(file, name, hv)
        try:
            hv = {k: render.from_string(v).render(inventory_dir=str(file.parent)) if isinstance(v, str) else v
                  for k, v in hv.items()}
            hosts[name] = Host(name=name, address=str(hv.get("ansible_host", name)),
                               port=int(hv.get("ansible_port", 22)), user=str(hv.get("ansible_user", "root")),
                               vars=hv)
        except (jinja2.TemplateError, ValueError) as exc:
            raise ConfigError(f"{file}: hosts.{name}: {exc}") from None
    return hosts


WEAKENING = ("stricthostkeychecking=no", "stricthostkeychecking=off", "stricthostkeychecking=accept-new",
             "userknownhostsfile=/dev/null", "globalknownhostsfile=/dev/null")
SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args", "ansible_scp_extra_args",
                "ansible_sftp_extra_args")


def _refuse_weakened_host_keys(file: Path, name: str, hv: dict) -> None:
    """Host keys are always checked: a variable that would switch the check off for Ansible
    (ssh keeps the first value it is given, and the inventory's comes before ours) is refused."""
    if str(hv.get("ansible_host_key_checking", True)).strip().lower() in ("false", "no", "0", "off"):
        raise ConfigError(f"{file}: hosts.{name}.ansible_host_key_checking: host keys are always checked; remove it")
    for var in SSH_ARG_VARS:
        text = str(hv.get(var) or "").lower().replace(" ", "").replace('"', "").replace("'", "")
        bad = next((w for w in WEAKENING if w in text), None)
        if bad:
            raise ConfigError(f"{file}: hosts.{name}.{var}: '{bad}' would switch off the host key check; remove it")


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


def _address_problems(inv: Inventory, resolve: Resolver | None) -> list[str]:
    problems = []
    for where, address in _addresses(inv):
        if resolve is None and not is_literal(address):
            continue
        reason = address_refusal(address, inv.networks(), resolve)
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
