"""The cutover's operations: the way back, health pages, the go/no-go gate, the front door, DNS."""

from __future__ import annotations

import time

from migrate.adapters import dns, http
from migrate.engine.context import Context
from migrate.engine.registry import operation
from migrate.errors import AwaitingApproval, StepFailed
from migrate.facts.cutover import FrontDoorUpstreams
from migrate.model import layout
from migrate.ops.app import run_playbook
from migrate.transfer import way_back

HEALTH_WAIT_SECONDS = 30.0


@operation("replication.start")
def start_way_back(ctx: Context, **where) -> dict:
    return way_back.start(ctx.inv, **where)


@operation("replication.stop")
def stop_way_back(ctx: Context, **where) -> dict:
    return way_back.stop(ctx.inv, **where)


@operation("replication.end")
def end_way_back(ctx: Context, **where) -> dict:
    return way_back.end(ctx.inv, **where)


@operation("cutover.health")
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


@operation("cutover.approve")
def approve(ctx: Context) -> dict:
    """Passes with `--approve NAME` or the spec's `automatic`, and journals who decided (the
    gate's own record); otherwise the run stops here, waiting for a human."""
    if ctx.approved_by:
        decision = {"approved_by": ctx.approved_by, "how": "--approve"}
    elif ctx.inv.spec.waves[ctx.wave].automatic:
        decision = {"approved_by": None, "how": "automatic (spec)"}
    else:
        raise AwaitingApproval(f"go/no-go: {ctx.wave} is ready to switch its entry point; `migrate run {ctx.wave}"
                               f" --approve NAME` to go on, `migrate rollback {ctx.wave}` for no-go")
    ctx.record("approval", decision, step=layout.GATE_ID)
    return decision


@operation("front_door.set", checkable=True)
def set_front_door(ctx: Context, *, services: dict) -> dict:
    """Change only these services' upstreams (None removes one), keeping every other line as the
    file has it now: another wave's switch, made meanwhile, survives this one's undo."""
    entry = ctx.inv.spec.entry_point
    upstreams = FrontDoorUpstreams(entry.proxy_host, entry.proxy_config_path).collect(ctx.inv)
    upstreams = {k: v for k, v in {**upstreams, **services}.items() if v}
    return run_playbook(ctx, playbook="front_door.yml", hosts=[entry.proxy_host],
                        vars={"config_path": entry.proxy_config_path, "template": entry.proxy_template,
                              "upstreams": upstreams})


@operation("dns.set_cname")
def set_cname(ctx: Context, *, name: str, value: str | None, ttl: int) -> dict:
    return dns.set_cname(ctx.inv, name, value, ttl=ttl)


@operation("cutover.dns_check")
def dns_check(ctx: Context, *, records: dict) -> dict:
    wrong = {n: v for n, want in records.items() if (v := dns.cname(ctx.inv, n)) != want}
    if wrong:
        name, value = next(iter(wrong.items()))
        raise StepFailed(f"DNS {name} points to {value}, expected {records[name]}")
    return {"records": len(records)}
