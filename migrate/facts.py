"""Small read-only probes used before planning: can we reach what the wave needs?"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import cloud, db, ssh
from migrate.config import Inventory
from migrate.errors import MigrateError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _probe(name: str, fn) -> Check:
    try:
        return Check(name, True, fn() or "ok")
    except MigrateError as exc:
        return Check(name, False, str(exc))


def _ssh(inv: Inventory, host: str) -> str:
    with ssh.connect(inv, host) as client:
        _, out, _ = client.exec_command("true", timeout=10)
        out.channel.recv_exit_status()
    return "host key verified"


def connectivity(inv: Inventory, wave: str) -> list[Check]:
    spec = inv.spec
    systems = [spec.systems[s] for s in spec.waves[wave].systems]
    hosts = sorted({h for s in systems for h in _hosts(s)})
    servers = sorted({(getattr(d, side).server) for s in systems for d in s.databases.values()
                      for side in ("source", "target")})
    checks = [_probe(f"ssh {h}", lambda h=h: _ssh(inv, h)) for h in hosts]
    checks += [_probe(f"postgres {s}", lambda s=s: f"server version {db.server_version(inv, s)}") for s in servers]
    checks.append(_probe(f"bucket {spec.storage.bucket}", lambda: cloud.head_bucket(inv, cloud.client(inv))))
    return checks


def _hosts(system) -> list[str]:
    found = []
    if system.app:
        found += [system.app.source_host, system.app.target_host]
    if system.archive:
        found.append(system.archive.host)
    return found
