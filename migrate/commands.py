"""One function per verb. They carry the logic; the CLI only parses and prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from migrate import config, facts, steps
from migrate.engine import lock, state
from migrate.engine.events import Bus
from migrate.engine.executor import Executor, NullJournal
from migrate.engine.journal import Journal, new_run_id, operator
from migrate.engine.ops import Context
from migrate.engine.sinks import DryRunSink, LiveSink
from migrate.errors import ConfigError, MigrateError, PreflightFailed
from migrate.model.plan import WavePlan

Confirm = Callable[[str], bool]


@dataclass
class Outcome:
    """What a verb did, for the CLI to print."""

    wave: str
    status: str
    message: str
    plan: WavePlan | None = None
    run_id: str | None = None


def journal(inv: config.Inventory) -> Journal:
    return Journal(inv.state_dir / "journal.sqlite")


def _wave(inv: config.Inventory, wave: str) -> None:
    if wave not in inv.spec.waves:
        known = ", ".join(sorted(inv.spec.waves))
        raise ConfigError(f"{inv.path / config.SPEC_FILE}: waves: no wave '{wave}' (known: {known})")


def preflight(inv: config.Inventory, wave: str) -> list[facts.Check]:
    checks = facts.connectivity(inv, wave)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise PreflightFailed("; ".join(f"{c.name}: {c.detail}" for c in failed))
    return checks


def make_plan(inv: config.Inventory, wave: str, run_id: str) -> WavePlan:
    ctx = Context(inv=inv, run_id=run_id, wave=wave)
    return WavePlan(wave, run_id, tuple(step.plan(ctx) for step in steps.build(inv, wave)))


def plan(inv: config.Inventory, wave: str, *, bus: Bus) -> Outcome:
    """The dry run: facts read, every step planned, checkable actions run in check mode."""
    _wave(inv, wave)
    preflight(inv, wave)
    wave_plan = make_plan(inv, wave, run_id=f"{wave}-dry-run")
    ctx = Context(inv=inv, run_id=wave_plan.run_id, wave=wave)
    Executor(NullJournal(), DryRunSink(ctx), bus).apply(wave_plan)
    return Outcome(wave, "planned", f"dry run of {wave}: nothing was changed", plan=wave_plan)


def run(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm, dry_run: bool = False) -> Outcome:
    if dry_run:
        return plan(inv, wave, bus=bus)
    _wave(inv, wave)
    j = journal(inv)
    with lock.wave_lock(inv.state_dir, wave, "run") as stale:
        view = state.latest(j.records(wave=wave))
        if view and view.status == "completed":
            return Outcome(wave, "completed", f"{wave} already completed in run {view.run_id}; nothing to do",
                           run_id=view.run_id)
        if view and view.status in ("rolling_back",):
            raise MigrateError(f"{wave}: run {view.run_id} is half rolled back; finish with `migrate rollback {wave}`")
        preflight(inv, wave)
        resuming = view is not None and view.status in ("failed", "interrupted")
        if resuming:
            wave_plan = view.plan
            j.append(view.run_id, wave, "run_resumed", {"operator": operator()})
        else:
            wave_plan = make_plan(inv, wave, new_run_id(wave))
            if not confirm(_describe(wave_plan)):
                return Outcome(wave, "cancelled", "cancelled; nothing was changed", plan=wave_plan)
            j.append(wave_plan.run_id, wave, "run_started", {"plan": wave_plan.to_json(), "operator": operator()})
        if stale:
            j.append(wave_plan.run_id, wave, "takeover", {"previous": stale})
        ctx = Context(inv=inv, run_id=wave_plan.run_id, wave=wave)
        Executor(j, LiveSink(ctx), bus).apply(wave_plan, view if resuming else None)
        j.append(wave_plan.run_id, wave, "run_finished", {"operator": operator()})
    verb = "resumed and completed" if resuming else "completed"
    return Outcome(wave, "completed", f"{wave} {verb} (run {wave_plan.run_id})", plan=wave_plan,
                   run_id=wave_plan.run_id)


def _describe(wave_plan: WavePlan) -> str:
    lines = [f"wave {wave_plan.wave}, run {wave_plan.run_id}:"]
    for step in wave_plan.steps:
        lines.append(f"  {step.id}: {step.noop or step.title}")
    return "\n".join(lines)


def rollback(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm) -> Outcome:
    _wave(inv, wave)
    j = journal(inv)
    with lock.wave_lock(inv.state_dir, wave, "rollback") as stale:
        view = state.latest(j.records(wave=wave))
        if view is None or view.status == "rolled_back":
            return Outcome(wave, "nothing", f"{wave}: nothing to roll back")
        effects = view.pending_undo()
        text = "\n".join([f"roll back {wave}, run {view.run_id} ({len(effects)} effects to undo, newest first):"]
                         + [f"  {step}: {a.undo.summary if a.undo else 'IRREVERSIBLE: ' + str(a.irreversible)}"
                            for _, step, a in effects])
        if not confirm(text):
            return Outcome(wave, "cancelled", "cancelled; nothing was changed")
        if stale:
            j.append(view.run_id, wave, "takeover", {"previous": stale})
        j.append(view.run_id, wave, "rollback_started", {"operator": operator(), "effects": len(effects)})
        ctx = Context(inv=inv, run_id=view.run_id, wave=wave)
        Executor(j, LiveSink(ctx), bus).undo(view.plan, effects)
        j.append(view.run_id, wave, "rollback_finished", {"operator": operator()})
    return Outcome(wave, "rolled_back", f"{wave} rolled back (run {view.run_id}, {len(effects)} effects undone)",
                   run_id=view.run_id)


def status(inv: config.Inventory, wave: str | None = None) -> dict:
    if wave:
        _wave(inv, wave)
    j = journal(inv)
    waves = [wave] if wave else sorted(set(inv.spec.waves) | set(j.waves()))
    result = {"journal": str(j.path), "chain": j.verify_chain() or "intact", "waves": {}}
    for name in waves:
        view = state.latest(j.records(wave=name))
        holder = lock.holder(inv.state_dir, name)
        result["waves"][name] = _wave_status(view, holder)
    return result


def _wave_status(view: state.RunView | None, holder: dict | None) -> dict:
    if view is None:
        return {"status": "not started", "lock": holder}
    status = "running" if holder and view.status in ("interrupted", "failed") else view.status
    return {"status": status, "run_id": view.run_id, "operator": view.operator, "started": view.started,
            "ended": view.ended, "lock": holder,
            "steps": [{"id": s.id, "state": s.state, "started": s.started, "ended": s.ended,
                       "seconds": round(s.ended - s.started, 3) if s.started and s.ended else None,
                       "error": s.error, "noop": s.noop} for s in view.steps.values()]}


def unlock(inv: config.Inventory, wave: str, *, force: bool = False) -> str:
    _wave(inv, wave)
    return lock.unlock(inv.state_dir, wave, force=force)
