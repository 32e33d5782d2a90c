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
            "diff_tasks": [d["task"] for d in result.diff]}


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
class Maintenance:
    """Put the source application in maintenance (the freeze); the undo takes it out."""

    system: str
    host: str
    service: str

    @property
    def id(self) -> str:
        return f"{self.system}/maintenance-on"

    def plan(self, ctx: Context) -> StepPlan:
        title = f"maintenance on for {self.service} on {self.host}"
        flag = maintenance_flag(self.service)
        if _remote_exists(ctx, self.host, flag):
            return StepPlan(self.id, self.system, title, noop="already in maintenance before this wave")
        on = _playbook("maintenance.yml", self.host, f"{self.host}: create {flag}",
                       service=self.service, state="on", wave=ctx.wave)
        off = _playbook("maintenance.yml", self.host, f"{self.host}: remove {flag}",
                        service=self.service, state="off", wave=ctx.wave)
        return StepPlan(self.id, self.system, title, actions=(Action(**{**on.__dict__, "undo": off}),))


@dataclass(frozen=True)
class RenderConfig:
    """Render the target application's configuration from a template onto the target host."""

    system: str
    host: str
    template: str
    path: str
    service: str
    settings: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return f"{self.system}/target-config"

    def plan(self, ctx: Context) -> StepPlan:
        title = f"render {self.template} to {self.host}:{self.path}"
        if _remote_exists(ctx, self.host, self.path):
            raise StepFailed(f"{self.host}:{self.path} already exists; this wave would overwrite a"
                             " configuration it did not create")
        common = {"service": self.service, "dest": self.path, "template": self.template}
        put = _playbook("app_config.yml", self.host, f"{self.host}: write {self.path} (mode 0600)",
                        state="present", settings=dict(self.settings), **common)
        remove = _playbook("app_config.yml", self.host, f"{self.host}: remove {self.path}",
                           state="absent", settings={}, **common)
        return StepPlan(self.id, self.system, title, actions=(Action(**{**put.__dict__, "undo": remove}),))
