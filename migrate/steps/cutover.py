"""The cutover: the way back, the target's health, the go/no-go gate, the entry point switch
and the checks after it.

Order in the wave (see `migrate.steps.PHASES`): after verification, the way back (target ->
source replication) is set up while the source is still frozen and before the target opens for
writes; then the target applications start (`configure`), their health pages must name the
target database, the gate waits for a human (or the spec's `automatic`), the front door and
DNS switch, and the checks through the front door must pass, else the run rolls back.
"""

from __future__ import annotations

import configparser
import time
from dataclasses import dataclass

from migrate.adapters import dns, http, replication, ssh
from migrate.engine.ops import Context, op
from migrate.errors import AwaitingApproval, StepFailed
from migrate.model.plan import Action, StepPlan
from migrate.steps.app import run_playbook
from migrate.steps.verify import read_only_undo

HEALTH_WAIT_SECONDS = 30.0


# --- operations -----------------------------------------------------------------------------

@op("replication.start")
def start_way_back(ctx: Context, **where) -> dict:
    return replication.start(ctx.inv, **where)


@op("replication.stop")
def stop_way_back(ctx: Context, **where) -> dict:
    return replication.stop(ctx.inv, **where)


@op("cutover.health")
def health(ctx: Context, *, checks: list[dict], wait: float = HEALTH_WAIT_SECONDS) -> dict:
    """Every page answers 200 and names the expected database (and upstream), within `wait`."""
    deadline = time.monotonic() + wait
    while True:
        problems = [p for c in checks if (p := _health_problem(ctx, c))]
        if not problems:
            return {"healthy": [c["what"] for c in checks]}
        if time.monotonic() > deadline:
            raise StepFailed(f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        time.sleep(0.5)


def _health_problem(ctx: Context, check: dict) -> str | None:
    reply = http.get(ctx.inv, check["url"], what=check["what"])
    if reply.status != 200:
        state = reply.body.get("status") or reply.error or "no answer"
        return f"{check['what']}: {check['url']} answered {reply.status or 'nothing'} ({state})"
    if check.get("databases") and reply.body.get("database") not in check["databases"]:
        return f"{check['what']}: serves database {reply.body.get('database')!r}, expected one of {check['databases']}"
    if check.get("servers") and reply.body.get("server") and reply.body["server"] not in check["servers"]:
        return f"{check['what']}: its database is on {reply.body['server']}, expected {check['servers']}"
    upstream = _header(reply.headers, "X-Upstream")
    if check.get("upstream") and upstream and upstream.rstrip("/") != check["upstream"].rstrip("/"):
        return f"{check['what']}: the front door sends it to {upstream}, expected {check['upstream']}"
    return None


def _header(headers: dict, name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


@op("cutover.approve")
def approve(ctx: Context) -> dict:
    wave = ctx.wave
    if ctx.approved_by:
        return {"approved_by": ctx.approved_by, "how": "--approve"}
    if ctx.inv.spec.waves[wave].automatic:
        return {"approved_by": None, "how": "automatic (spec)"}
    raise AwaitingApproval(f"go/no-go: {wave} is ready to switch its entry point; `migrate run {wave}"
                           f" --approve NAME` to go on, `migrate rollback {wave}` for no-go")


@op("front_door.set", checkable=True)
def set_front_door(ctx: Context, *, services: dict) -> dict:
    """Change only these services' upstreams (None removes one), keeping every other line as the
    file has it now: another wave's switch, made meanwhile, survives this one's undo."""
    entry = ctx.inv.spec.entry_point
    upstreams = _upstreams(ssh.read_text(ctx.inv, entry.proxy_host, entry.proxy_config_path))
    upstreams = {k: v for k, v in {**upstreams, **services}.items() if v}
    return run_playbook(ctx, playbook="front_door.yml", hosts=[entry.proxy_host],
                        vars={"config_path": entry.proxy_config_path, "template": entry.proxy_template,
                              "upstreams": upstreams})


@op("dns.set_cname")
def set_cname(ctx: Context, *, name: str, value: str | None, ttl: int) -> dict:
    return dns.set_cname(ctx.inv, name, value, ttl=ttl)


@op("cutover.dns_check")
def dns_check(ctx: Context, *, records: dict) -> dict:
    wrong = {n: v for n, want in records.items() if (v := dns.cname(ctx.inv, n)) != want}
    if wrong:
        name, value = next(iter(wrong.items()))
        raise StepFailed(f"DNS {name} points to {value}, expected {records[name]}")
    return {"records": len(records)}


# --- steps ----------------------------------------------------------------------------------

def _where(d) -> dict:
    return {"source": d.source.server, "source_db": d.source.dbname,
            "target": d.target.server, "target_db": d.target.dbname}


@dataclass(frozen=True)
class WayBack:
    """Logical replication target -> source for one database, so a rollback after cutover keeps
    every write made on the target."""

    system: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.system}/way-back:{self.name}"

    def plan(self, ctx: Context) -> StepPlan:
        d = ctx.inv.spec.systems[self.system].databases[self.name]
        where = _where(d)
        back = f"{d.target.server}/{d.target.dbname} -> {d.source.server}/{d.source.dbname}"
        stop = Action("replication.stop", where, f"fence {d.target.server}/{d.target.dbname}, wait until the source"
                                                 f" has every change ({back}), carry sequences, drop the replication")
        start = Action("replication.start", where, f"replicate {back} (publication + subscription, no copy)",
                       undo=stop)
        return StepPlan(self.id, self.system, f"way back for {self.name}: {back}", (start,))


def app_health_check(ctx: Context, system: str, base_url: str, *, upstream: str | None = None) -> dict:
    s = ctx.inv.spec.systems[system]
    servers = [ctx.inv.spec.db_servers[d.target.server] for d in s.databases.values()]
    return {"what": f"{system} ({s.app.service_name})", "url": base_url.rstrip("/") + s.app.health,
            "databases": [d.target.dbname for d in s.databases.values()],
            "servers": [f"{srv.host}:{srv.port}" for srv in servers], "upstream": upstream}


def target_url(ctx: Context, system: str) -> str:
    return str(ctx.inv.hosts[ctx.inv.spec.systems[system].app.target_host].vars["app_url"])


@dataclass(frozen=True)
class TargetHealth:
    """The started target applications answer, each on its target database."""

    systems: tuple[str, ...]
    id = "target-health"

    def plan(self, ctx: Context) -> StepPlan:
        checks = [app_health_check(ctx, s, target_url(ctx, s)) for s in self.systems]
        action = Action("cutover.health", {"checks": checks},
                        f"health pages of {', '.join(c['what'] for c in checks)} on the target",
                        undo=read_only_undo("health pages were"))
        return StepPlan(self.id, "+".join(self.systems), "target applications are healthy", (action,))


@dataclass(frozen=True)
class Gate:
    """Go/no-go before the entry point moves: `--approve NAME` (journalled) or the spec's
    `automatic`. Without either the run stops here (exit 4) and can be resumed or rolled back."""

    systems: tuple[str, ...]
    id = "go-no-go"

    def plan(self, ctx: Context) -> StepPlan:
        action = Action("cutover.approve", {}, "go/no-go: approval to switch the entry point",
                        undo=read_only_undo("an approval was"))
        return StepPlan(self.id, "+".join(self.systems), "go/no-go gate before the switch", (action,))


@dataclass(frozen=True)
class SwitchEntry:
    """The front door's upstreams and the DNS records move to the target applications.
    Both undos put back exactly what the plan read before the switch."""

    systems: tuple[str, ...]
    id = "switch-entry"

    def plan(self, ctx: Context) -> StepPlan:
        actions = []
        entry = ctx.inv.spec.entry_point
        if entry.proxy_host:
            actions.append(self._proxy(ctx, entry))
        for s in self.systems:
            record = ctx.inv.spec.systems[s].app.dns
            if record:
                before = dns.cname(ctx.inv, record.name)
                back = Action("dns.set_cname", {"name": record.name, "value": before, "ttl": entry.dns_ttl},
                              f"DNS {record.name} back to {before or '(no record)'}")
                actions.append(Action("dns.set_cname", {"name": record.name, "value": record.target,
                                                        "ttl": entry.dns_ttl},
                                      f"DNS {record.name} -> {record.target}", undo=back))
        return StepPlan(self.id, "+".join(self.systems), "switch the entry point to the target", tuple(actions))

    def _proxy(self, ctx: Context, entry) -> Action:
        before = _upstreams(ssh.read_text(ctx.inv, entry.proxy_host, entry.proxy_config_path))
        services = {ctx.inv.spec.systems[s].app.service_name: target_url(ctx, s) for s in self.systems}
        back = Action("front_door.set", {"services": {svc: before.get(svc) for svc in services}},
                      f"{entry.proxy_host}: front door back to " + _describe({svc: before.get(svc) for svc in services}))
        return Action("front_door.set", {"services": services},
                      f"{entry.proxy_host}: front door " + _describe(services), undo=back)


def _describe(services: dict) -> str:
    return ", ".join(f"{svc} -> {url or '(none)'}" for svc, url in sorted(services.items()))


def _upstreams(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    parser = configparser.ConfigParser()
    parser.read_string(text)
    return dict(parser["upstreams"]) if parser.has_section("upstreams") else {}


@dataclass(frozen=True)
class PostCutover:
    """Through the front door, each application answers from the target; DNS names the target.
    A failure here rolls the wave back at once (see `commands.run`)."""

    systems: tuple[str, ...]
    id = "post-cutover"

    def plan(self, ctx: Context) -> StepPlan:
        entry = ctx.inv.spec.entry_point
        checks = [app_health_check(ctx, s, entry.url, upstream=target_url(ctx, s) if entry.proxy_host else None)
                  for s in self.systems]
        actions = [Action("cutover.health", {"checks": checks, "wait": 10.0},
                          f"through {entry.url}: {', '.join(c['what'] for c in checks)} answer from the target",
                          undo=read_only_undo("the front door was"))]
        records = {dns.fqdn(r.name): dns.fqdn(r.target) for s in self.systems if (r := ctx.inv.spec.systems[s].app.dns)}
        if records:
            actions.append(Action("cutover.dns_check", {"records": records}, f"DNS names the target: {', '.join(records)}",
                                  undo=read_only_undo("DNS was")))
        return StepPlan(self.id, "+".join(self.systems), "checks after the switch", tuple(actions))
