"""Application hosts: maintenance mode on the source, configuration on the target (Ansible)."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import ansible, ssh
from migrate.engine.ops import Context, op
from migrate.errors import StepFailed
from migrate.model.plan import Action, StepPlan

MAINTENANCE_DIR = "/var/lib/hr"


@op("ansible.playbook", checkable=True)
def run_playbook(ctx: Context, *, playbook: str, hosts: list[str], vars: dict) -> dict:
    result = ansible.run_playbook(ctx.inv, playbook, hosts, vars, check=ctx.check)
    if not result.ok:
        raise StepFailed(f"playbook {playbook} failed on {', '.join(result.failed) or ', '.join(hosts)}"
                         f" (status {result.status}, rc {result.rc}); see {result.artifacts}")
    return {"changed": result.changed, "check": ctx.check, "artifacts": result.artifacts,
            "changed_tasks": result.changed_tasks}


def maintenance_flag(service: str) -> str:
    return f"{MAINTENANCE_DIR}/{service}.maintenance"


def _remote_exists(ctx: Context, host: str, path: str) -> bool:
    with ssh.connect(ctx.inv, host) as client, client.open_sftp() as sftp:
        try:
            sftp.stat(ssh.host_path(ssh.host(ctx.inv, host), path))
            return True
        except FileNotFoundError:
            return False


def _playbook(playbook: str, host: str, summary: str, **vars) -> Action:
    return Action("ansible.playbook", {"playbook": playbook, "hosts": [host], "vars": vars}, summary)


@dataclass(frozen=True)
class Freeze:
    """Put the source applications of one host in maintenance (the freeze), in one playbook
    run, then drain the collectors' buffers (late punches land in the source before the
    evidence digest and the copy); the undo takes out exactly the flags this wave put in."""

    host: str
    systems: tuple[str, ...]
    services: tuple[str, ...]
    drains: tuple[tuple[str, str], ...] = ()  # (service, path to POST on the app)

    @property
    def id(self) -> str:
        return f"freeze:{self.host}"

    def plan(self, ctx: Context) -> StepPlan:
        title = f"maintenance on for {', '.join(self.services)} on {self.host}"
        system = "+".join(self.systems)
        todo = tuple(s for s in self.services if not _remote_exists(ctx, self.host, maintenance_flag(s)))
        if not todo:
            return StepPlan(self.id, system, title, noop="already in maintenance before this wave")
        flags = ", ".join(maintenance_flag(s) for s in todo)
        off = _playbook("maintenance.yml", self.host, f"{self.host}: remove {flags}",
                        services=list(todo), state="off", wave=ctx.wave)
        drains = [{"service": svc, "path": path} for svc, path in self.drains if svc in todo]
        drained = f", drain {', '.join(d['service'] for d in drains)}" if drains else ""
        on = _playbook("maintenance.yml", self.host, f"{self.host}: create {flags}{drained}",
                       services=list(todo), state="on", wave=ctx.wave, drains=drains)
        return StepPlan(self.id, system, title, actions=(Action(**{**on.__dict__, "undo": off}),))


@dataclass(frozen=True)
class TargetConfig:
    system: str
    template: str
    path: str
    service: str
    settings: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Configure:
    """Render the target applications' configuration from templates onto one target host and
    start them; the undo stops them and removes the files."""

    host: str
    configs: tuple[TargetConfig, ...]

    @property
    def id(self) -> str:
        return f"configure:{self.host}"

    def plan(self, ctx: Context) -> StepPlan:
        paths = ", ".join(c.path for c in self.configs)
        for c in self.configs:
            if _remote_exists(ctx, self.host, c.path):
                raise StepFailed(f"{self.host}:{c.path} already exists; this wave would overwrite a"
                                 " configuration it did not create")
        items = [{"service": c.service, "dest": c.path, "template": c.template, "settings": dict(c.settings)}
                 for c in self.configs]
        services = ", ".join(c.service for c in self.configs)
        put = _playbook("app_config.yml", self.host, f"{self.host}: write {paths} (mode 0600), start {services}",
                        configs=items, state="present")
        remove = _playbook("app_config.yml", self.host, f"{self.host}: stop {services}, remove {paths}",
                           configs=items, state="absent")
        return StepPlan(self.id, "+".join(c.system for c in self.configs),
                        f"render {paths} and start {services} on {self.host}",
                        actions=(Action(**{**put.__dict__, "undo": remove}),))
