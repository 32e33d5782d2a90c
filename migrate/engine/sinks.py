"""Where Actions go. The executor is the same for a real run and a dry run; only the sink
differs: the live sink performs operations, the dry-run sink runs the checkable ones in check
mode and lists the others."""

from __future__ import annotations

from migrate.engine.context import Context
from migrate.engine.registry import Registry
from migrate.model.plan import Action


class LiveSink:
    dry = False

    def __init__(self, ctx: Context, registry: Registry):
        self.ctx, self.registry = ctx, registry

    def execute(self, action: Action) -> dict:
        return self.registry.lookup(action.op).fn(self.ctx, **action.args) or {}


class DryRunSink:
    dry = True

    def __init__(self, ctx: Context, registry: Registry):
        self.ctx, self.registry = ctx.with_check(), registry
        self.listed: list[Action] = []

    def execute(self, action: Action) -> dict:
        self.listed.append(action)
        found = self.registry.lookup(action.op)
        if found.checkable:
            return found.fn(self.ctx, **action.args) or {}
        return {"dry_run": "listed, not performed"}
