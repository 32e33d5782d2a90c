"""The cutover: the way back, the target's health, the go/no-go gate, the entry point switch
and the checks after it.

Order in the wave (see `migrate.steps.wave.PHASES`): after verification the target
applications start (`configure`), their health pages must name the target database, the gate
waits for a human (or the spec's `automatic`); then the way back (target -> source replication)
starts, right before the front door and DNS switch, so that nothing written on the target at
the gate reaches the source; the checks through the front door must pass, else the run rolls
back at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.facts.cutover import FrontDoorUpstreams
from migrate.facts.dns import CnameValue
from migrate.model import layout
from migrate.model.plan import Action, StepPlan, reading
from migrate.steps.base import Run, Step, db_sides


@dataclass(frozen=True)
class WayBack(Step):
    """Logical replication target -> source for one database, so a rollback after cutover keeps
    every write made on the target."""

    system: str
    name: str

    @property
    def id(self) -> str:
        return layout.way_back_id(self.system, self.name)

    def plan(self, run: Run, facts) -> StepPlan:
        d = run.spec.systems[self.system].databases[self.name]
        where = db_sides(d)
        back = f"{d.target.server}/{d.target.dbname} -> {d.source.server}/{d.source.dbname}"
        stop = Action("replication.stop", where, f"fence {d.target.server}/{d.target.dbname}, wait until the source"
                                                 f" has every change ({back}), carry sequences, drop the replication")
        start = Action("replication.start", where, f"replicate {back} (publication + subscription, no copy)",
                       undo=stop)
        return StepPlan(self.id, self.system, f"way back for {self.name}: {back}", (start,))


def app_health_check(run: Run, system: str, base_url: str, *, upstream: str | None = None) -> dict:
    s = run.spec.systems[system]
    servers = [run.spec.db_servers[d.target.server] for d in s.databases.values()]
    return {"what": f"{system} ({s.app.service_name})", "url": base_url.rstrip("/") + s.app.health,
            "databases": [d.target.dbname for d in s.databases.values()],
            "servers": [f"{srv.host}:{srv.port}" for srv in servers], "upstream": upstream}


def target_url(run: Run, system: str) -> str:
    return str(run.inv.hosts[run.spec.systems[system].app.target_host].vars["app_url"])


@dataclass(frozen=True)
class TargetHealth(Step):
    """The started target applications answer, each on its target database."""

    systems: tuple[str, ...]
    id = layout.TARGET_HEALTH_ID

    def plan(self, run: Run, facts) -> StepPlan:
        checks = [app_health_check(run, s, target_url(run, s)) for s in self.systems]
        action = reading("cutover.health", {"checks": checks},
                         f"health pages of {', '.join(c['what'] for c in checks)} on the target")
        return StepPlan(self.id, "+".join(self.systems), "target applications are healthy", (action,))


@dataclass(frozen=True)
class Gate(Step):
    """Go/no-go before the entry point moves: `--approve NAME` or the spec's `automatic`, and the
    gate journals who decided. Without either the run stops here (exit 4) and can be resumed or
    rolled back."""

    systems: tuple[str, ...]
    id = layout.GATE_ID

    def plan(self, run: Run, facts) -> StepPlan:
        action = reading("cutover.approve", {}, "go/no-go: approval to switch the entry point")
        return StepPlan(self.id, "+".join(self.systems), "go/no-go gate before the switch", (action,))


@dataclass(frozen=True)
class SwitchEntry(Step):
    """The front door's upstreams and the DNS records move to the target applications.
    Both undos put back exactly what was there when the wave was planned."""

    systems: tuple[str, ...]
    id = layout.SWITCH_ID

    def _records(self, run: Run) -> list:
        return [r for s in self.systems if (r := run.spec.systems[s].app.dns)]

    def needs(self, run: Run) -> tuple:
        entry = run.spec.entry_point
        door = (FrontDoorUpstreams(entry.proxy_host, entry.proxy_config_path),) if entry.proxy_host else ()
        return door + tuple(CnameValue(r.name) for r in self._records(run))

    def plan(self, run: Run, facts) -> StepPlan:
        entry = run.spec.entry_point
        actions = [self._proxy(run, facts, entry)] if entry.proxy_host else []
        for record in self._records(run):
            before = facts[CnameValue(record.name)]
            back = Action("dns.set_cname", {"name": record.name, "value": before, "ttl": entry.dns_ttl},
                          f"DNS {record.name} back to {before or '(no record)'}")
            actions.append(Action("dns.set_cname", {"name": record.name, "value": record.target, "ttl": entry.dns_ttl},
                                  f"DNS {record.name} -> {record.target}", undo=back))
        return StepPlan(self.id, "+".join(self.systems), "switch the entry point to the target", tuple(actions))

    def _proxy(self, run: Run, facts, entry) -> Action:
        before = facts[FrontDoorUpstreams(entry.proxy_host, entry.proxy_config_path)]
        services = {run.spec.systems[s].app.service_name: target_url(run, s) for s in self.systems}
        previous = {svc: before.get(svc) for svc in services}
        back = Action("front_door.set", {"services": previous},
                      f"{entry.proxy_host}: front door back to " + _describe(previous))
        return Action("front_door.set", {"services": services},
                      f"{entry.proxy_host}: front door " + _describe(services), undo=back)


def _describe(services: dict) -> str:
    return ", ".join(f"{svc} -> {url or '(none)'}" for svc, url in sorted(services.items()))


@dataclass(frozen=True)
class PostCutover(Step):
    """Through the front door, each application answers from the target; DNS names the target.
    A failure here rolls the wave back at once: the target took the traffic and does not serve
    it right (the plan says so: `rollback_on_failure`)."""

    systems: tuple[str, ...]
    id = layout.POST_CUTOVER_ID

    def plan(self, run: Run, facts) -> StepPlan:
        entry = run.spec.entry_point
        checks = [app_health_check(run, s, entry.url, upstream=target_url(run, s) if entry.proxy_host else None)
                  for s in self.systems]
        actions = [reading("cutover.health", {"checks": checks, "wait": 10.0},
                           f"through {entry.url}: {', '.join(c['what'] for c in checks)} answer from the target")]
        records = {layout.fqdn(r.name): layout.fqdn(r.target) for s in self.systems if (r := run.spec.systems[s].app.dns)}
        if records:
            actions.append(reading("cutover.dns_check", {"records": records},
                                   f"DNS names the target: {', '.join(records)}"))
        return StepPlan(self.id, "+".join(self.systems), "checks after the switch", tuple(actions),
                        rollback_on_failure=True)
