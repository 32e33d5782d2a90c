"""One function per verb. They carry the logic; the CLI only parses and prints."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from migrate import config, preflight as checks, steps
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


def preflight(inv: config.Inventory, wave: str, *, bus: Bus, run_id: str | None = None) -> list[checks.Finding]:
    """Every check, journalled as evidence under the run it guards (or a run id of its own)."""
    _wave(inv, wave)
    j = journal(inv)
    findings = checks.run_checks(inv, wave, throughput=_throughput(j, wave), total_bytes=_wave_bytes(inv, wave))
    j.append(run_id or f"{wave}-preflight-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}", wave, "preflight",
             {"findings": [f.to_json() for f in findings], "operator": operator()})
    for f in findings:
        bus.emit("check", **f.to_json())
    return findings


def _require(findings: list[checks.Finding], accept_warnings: bool) -> None:
    failed = [f for f in findings if f.status == "fail"]
    warned = [f for f in findings if f.status == "warn"]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more failed check(s))" if len(failed) > 1 else ""
        raise PreflightFailed(f"preflight: {first.check} {first.subject}: {first.reason}{more}")
    if warned and not accept_warnings:
        first = warned[0]
        raise PreflightFailed(f"preflight: {len(warned)} warning(s), first {first.check} {first.subject}:"
                              f" {first.reason}; rerun with --accept-warnings to go on")


def _wave_bytes(inv: config.Inventory, wave: str) -> int:
    from migrate.adapters import db
    total = 0
    for name in inv.spec.waves[wave].systems:
        for d in inv.spec.systems[name].databases.values():
            try:
                total += db.database_size(inv, d.source.server, d.source.dbname)
            except MigrateError:
                pass  # unreachable: the postgres checks report it
    return total


def _throughput(j: Journal, wave: str) -> float | None:
    """Bytes per second of the last completed run of any wave, as it recorded at its end."""
    for r in reversed(j.records()):
        if r.kind == "run_finished" and r.data.get("seconds") and r.data.get("bytes"):
            return r.data["bytes"] / r.data["seconds"]
    return None


def make_plan(inv: config.Inventory, wave: str, run_id: str) -> WavePlan:
    ctx = Context(inv=inv, run_id=run_id, wave=wave)
    return WavePlan(wave, run_id, tuple(step.plan(ctx) for step in steps.build(inv, wave)))


def plan(inv: config.Inventory, wave: str, *, bus: Bus) -> Outcome:
    """The dry run: checks, facts read, every step planned, checkable actions run in check mode.
    A failed check does not stop a dry run (rehearse outside the window); it is reported."""
    _wave(inv, wave)
    preflight(inv, wave, bus=bus, run_id=f"{wave}-dry-run")
    wave_plan = make_plan(inv, wave, run_id=f"{wave}-dry-run")
    ctx = Context(inv=inv, run_id=wave_plan.run_id, wave=wave, bus=bus)
    Executor(NullJournal(), DryRunSink(ctx), bus).apply(wave_plan)
    return Outcome(wave, "planned", f"dry run of {wave}: nothing was changed", plan=wave_plan)


def run(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm, dry_run: bool = False,
        accept_warnings: bool = False) -> Outcome:
    if dry_run:
        return plan(inv, wave, bus=bus)
    _wave(inv, wave)
    j = journal(inv)
    with lock.wave_lock(inv.state_dir, wave, "run") as stale:
        view = state.latest(j.records(wave=wave))
        if view and view.status == "completed":
            return Outcome(wave, "unchanged", f"{wave} already completed in run {view.run_id}; nothing to do",
                           run_id=view.run_id)
        if view and view.status in ("rolling_back",):
            raise MigrateError(f"{wave}: run {view.run_id} is half rolled back; finish with `migrate rollback {wave}`")
        resuming = view is not None and view.status in ("failed", "interrupted")
        run_id = view.run_id if resuming else new_run_id(wave)
        _require(preflight(inv, wave, bus=bus, run_id=run_id), accept_warnings)
        started = time.monotonic()
        if resuming:
            wave_plan = view.plan
            j.append(view.run_id, wave, "run_resumed", {"operator": operator()})
        else:
            wave_plan = make_plan(inv, wave, run_id)
            if not confirm(_describe(wave_plan)):
                return Outcome(wave, "cancelled", "cancelled; nothing was changed", plan=wave_plan)
            j.append(wave_plan.run_id, wave, "run_started", {"plan": wave_plan.to_json(), "operator": operator()})
        if stale:
            j.append(wave_plan.run_id, wave, "takeover", {"previous": stale})
        ctx = Context(inv=inv, run_id=wave_plan.run_id, wave=wave, bus=bus)
        Executor(j, LiveSink(ctx), bus).apply(wave_plan, view if resuming else None)
        j.append(wave_plan.run_id, wave, "run_finished", {
            "operator": operator(), "seconds": round(time.monotonic() - started, 3),
            "bytes": sum(s.volume.get("database_bytes", 0) + s.volume.get("bytes", 0) for s in wave_plan.steps)})
    verb = "resumed and completed" if resuming else "completed"
    return Outcome(wave, "completed", f"{wave} {verb} (run {wave_plan.run_id})", plan=wave_plan,
                   run_id=wave_plan.run_id)


def rehearse(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm,
             accept_warnings: bool = False) -> Outcome:
    """Run the wave, then roll it back, and journal both timings as a rehearsal record
    (GDPR art. 32 wants restores that were tested, not assumed)."""
    started = time.monotonic()
    done = run(inv, wave, bus=bus, confirm=confirm, accept_warnings=accept_warnings)
    if done.status != "completed":
        raise MigrateError(f"{wave}: rehearsal needs a fresh run, but {done.message}")
    ran = time.monotonic() - started
    back = rollback(inv, wave, bus=bus, confirm=lambda text: True)
    undone = time.monotonic() - started - ran
    record = {"operator": operator(), "run_seconds": round(ran, 3), "rollback_seconds": round(undone, 3),
              "result": back.status}
    journal(inv).append(done.run_id, wave, "rehearsal", record)
    return Outcome(wave, "rehearsed", f"{wave} rehearsed (run {done.run_id}): ran in {ran:.1f}s,"
                                      f" rolled back in {undone:.1f}s", run_id=done.run_id)


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
        ctx = Context(inv=inv, run_id=view.run_id, wave=wave, bus=bus)
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
            "ended": view.ended, "lock": holder, "rehearsal": view.rehearsal,
            "steps": [{"id": s.id, "state": s.state, "started": s.started, "ended": s.ended,
                       "seconds": round(s.ended - s.started, 3) if s.started and s.ended else None,
                       "error": s.error, "noop": s.noop} for s in view.steps.values()]}


def unlock(inv: config.Inventory, wave: str, *, force: bool = False) -> str:
    _wave(inv, wave)
    return lock.unlock(inv.state_dir, wave, force=force)


def verify(inv: config.Inventory, wave: str, *, bus: Bus, depth: str = "full") -> dict:
    """Verify WAVE's target against its source; the report is written and journalled.
    Differences are a result: the caller decides (the CLI exits 1 via VerificationFailed)."""
    from migrate.verify import report, runner
    _wave(inv, wave)
    j = journal(inv)
    view = state.latest(j.records(wave=wave))
    run_id = view.run_id if view else None  # its manifest and pre-copy evidence digests
    result = runner.verify(inv, wave, run_id=run_id, depth=depth, bus=bus, journal=j)
    report.record(inv, j, result, run_id)
    return result.to_json()


def report(inv: config.Inventory, wave: str) -> dict:
    """The last verification of WAVE, as journalled (its hash is checked)."""
    from migrate.verify import report as reports
    _wave(inv, wave)
    _, data = reports.last(inv, journal(inv), wave)
    return data
