"""Where Actions go. The executor is the same for a real run and a dry run; only the sink
differs: the live sink performs operations, the dry-run sink runs the checkable ones in check
mode and lists the others."""

from __future__ import annotations

from migrate.engine.ops import CHECKABLE, Context, lookup
from migrate.model.plan import Action


class LiveSink:
    dry = False

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def execute(self, action: Action) -> dict:
        return lookup(action.op)(self.ctx, **action.args) or {}


class DryRunSink:
    dry = True

    def __init__(self, ctx: Context):
        self.ctx = ctx.with_check()
        self.listed: list[Action] = []

    def execute(self, action: Action) -> dict:
        self.listed.append(action)
        fn = lookup(action.op)
        if action.op in CHECKABLE:
            return fn(self.ctx, **action.args) or {}
        return {"dry_run": "listed, not performed"}
