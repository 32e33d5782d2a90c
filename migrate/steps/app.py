"""Application hosts: maintenance mode on the source, configuration on the target (Ansible)."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.errors import StepFailed
from migrate.facts.files import PathExists
from migrate.model import layout
from migrate.model.plan import Action, StepPlan
from migrate.steps.base import Run, Step

MAINTENANCE_DIR = "/var/lib/hr"


def maintenance_flag(service: str) -> str:
    return f"{MAINTENANCE_DIR}/{service}.maintenance"


def _playbook(playbook: str, host: str, summary: str, undo: Action | None = None, **vars) -> Action:
    return Action("ansible.playbook", {"playbook": playbook, "hosts": [host], "vars": vars}, summary, undo=undo)


@dataclass(frozen=True)
class Freeze(Step):
    """Put the source applications of one host in maintenance (the freeze), in one playbook
    run, then drain the collectors' buffers (late punches land in the source before the
    evidence digest and the copy); the undo takes out exactly the flags this wave put in."""

    host: str
    systems: tuple[str, ...]
    services: tuple[str, ...]
    drains: tuple[tuple[str, str], ...] = ()  # (service, path to POST on the app)

    @property
    def id(self) -> str:
        return layout.freeze_id(self.host)

    def needs(self, run: Run) -> tuple:
        return tuple(PathExists(self.host, maintenance_flag(s)) for s in self.services)

    def plan(self, run: Run, facts) -> StepPlan:
        title = f"maintenance on for {', '.join(self.services)} on {self.host}"
        system = "+".join(self.systems)
        todo = tuple(s for s in self.services if not facts[PathExists(self.host, maintenance_flag(s))])
        if not todo:
            return StepPlan(self.id, system, title, noop="already in maintenance before this wave")
        flags = ", ".join(maintenance_flag(s) for s in todo)
        off = _playbook("maintenance.yml", self.host, f"{self.host}: remove {flags}",
                        services=list(todo), state="off", wave=run.wave)
        drains = [{"service": svc, "path": path} for svc, path in self.drains if svc in todo]
        drained = f", drain {', '.join(d['service'] for d in drains)}" if drains else ""
        on = _playbook("maintenance.yml", self.host, f"{self.host}: create {flags}{drained}", undo=off,
                       services=list(todo), state="on", wave=run.wave, drains=drains)
        return StepPlan(self.id, system, title, actions=(on,))


@dataclass(frozen=True)
class TargetConfig:
    system: str
    template: str
    path: str
    service: str
    settings: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Configure(Step):
    """Render the target applications' configuration from templates onto one target host and
    start them; the undo stops them and removes the files. A warm wave renders only (`start`
    false), while the source is live, and starts them inside the freeze (`StartTargets`)."""

    host: str
    configs: tuple[TargetConfig, ...]
    start: bool = True

    @property
    def id(self) -> str:
        return layout.configure_id(self.host)

    def needs(self, run: Run) -> tuple:
        return tuple(PathExists(self.host, c.path) for c in self.configs)

    def plan(self, run: Run, facts) -> StepPlan:
        for c in self.configs:
            if facts[PathExists(self.host, c.path)]:
                raise StepFailed(f"{self.host}:{c.path} already exists; this wave would overwrite a"
                                 " configuration it did not create")
        paths, services = ", ".join(c.path for c in self.configs), _services(self.configs)
        remove = _playbook("app_config.yml", self.host, f"{self.host}: stop {services}, remove {paths}",
                           configs=_items(self.configs), state="absent")
        started = f", start {services}" if self.start else ""
        put = _playbook("app_config.yml", self.host, f"{self.host}: write {paths} (mode 0600){started}",
                        undo=remove, configs=_items(self.configs), state="present" if self.start else "rendered")
        title = f"render {paths} and start {services} on {self.host}" if self.start else f"render {paths} on {self.host}"
        return StepPlan(self.id, "+".join(c.system for c in self.configs), title, actions=(put,))


@dataclass(frozen=True)
class StartTargets(Step):
    """Start the target applications whose configuration a warm wave rendered before the freeze;
    the undo stops them (the configuration step's undo removes the files)."""

    host: str
    configs: tuple[TargetConfig, ...]

    @property
    def id(self) -> str:
        return layout.start_id(self.host)

    def plan(self, run: Run, facts) -> StepPlan:
        services = _services(self.configs)
        stop = _playbook("app_config.yml", self.host, f"{self.host}: stop {services}",
                         configs=_items(self.configs), state="stopped")
        start = _playbook("app_config.yml", self.host, f"{self.host}: start {services}", undo=stop,
                          configs=_items(self.configs), state="started")
        return StepPlan(self.id, "+".join(c.system for c in self.configs), f"start {services} on {self.host}",
                        actions=(start,))


def _items(configs) -> list[dict]:
    return [{"service": c.service, "dest": c.path, "template": c.template, "settings": dict(c.settings)}
            for c in configs]


def _services(configs) -> str:
    return ", ".join(c.service for c in configs)
