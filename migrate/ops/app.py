"""Application hosts through Ansible: maintenance flags, target configuration and services."""

from __future__ import annotations

from migrate.adapters import ansible
from migrate.engine.context import Context
from migrate.engine.registry import operation
from migrate.errors import StepFailed


@operation("ansible.playbook", checkable=True)
def run_playbook(ctx: Context, *, playbook: str, hosts: list[str], vars: dict) -> dict:
    result = ansible.run_playbook(ctx.inv, playbook, hosts, vars, check=ctx.check)
    if not result.ok:
        raise StepFailed(f"playbook {playbook} failed on {', '.join(result.failed) or ', '.join(hosts)}"
                         f" (status {result.status}, rc {result.rc}); see {result.artifacts}")
    return {"changed": result.changed, "check": ctx.check, "artifacts": result.artifacts,
            "changed_tasks": result.changed_tasks}
