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
from migrate.errors import ConfigError, MigrateError, PreflightFailed, StepFailed
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
    findings = checks.run_checks(inv, wave, pace=_pace(j), total_bytes=_wave_bytes(inv, wave))
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


def _pace(j: Journal) -> checks.Pace | None:
    """How the last completed run went: bytes per second of the steps that move data, and the
    seconds of everything else (playbooks, checks, verification), which do not grow with bytes."""
    for r in reversed(j.records()):
        if r.kind == "run_finished" and r.data.get("bytes") and r.data.get("data_seconds"):
            data = r.data["data_seconds"]
            return checks.Pace(r.data["bytes"] / data, max(r.data["seconds"] - data, 0.0))
    return None


def _data_seconds(j: Journal, wave_plan: WavePlan) -> float:
    steps = state.latest(j.records(wave=wave_plan.wave)).steps
    moving = [steps[s.id] for s in wave_plan.steps if s.volume]
    return round(sum(v.ended - v.started for v in moving if v.started and v.ended), 3)


def make_plan(inv: config.Inventory, wave: str, run_id: str, *, key: str | None = None) -> WavePlan:
    """The plan of `wave`; `key` names it in the journal (the wave, or `wave@system` for --limit)."""
    ctx = Context(inv=inv, run_id=run_id, wave=wave)
    return WavePlan(key or wave, run_id, tuple(step.plan(ctx) for step in steps.build(inv, wave)))


def _scoped(inv: config.Inventory, wave: str, limit: str | None) -> tuple[config.Inventory, str]:
    """The inventory a run sees and the journal key of its runs: `--limit SYSTEM` narrows the
    wave to that system and journals its runs apart, under `wave@system`."""
    _wave(inv, wave)
    if not limit:
        return inv, wave
    return inv.limited(wave, limit), f"{wave}@{limit}"


def _covers(inv: config.Inventory, wave: str, key: str) -> set[str]:
    return set(inv.spec.waves[wave].systems) if key == wave else {key.split("@", 1)[1]}


def _active_scopes(inv: config.Inventory, j: Journal, wave: str) -> dict[str, state.RunView]:
    """Every journal key of `wave` whose last run is not rolled back, with that run."""
    found = {}
    for key in j.waves():
        if key == wave or key.startswith(wave + "@"):
            view = state.latest(j.records(wave=key))
            if view and view.status != "rolled_back":
                found[key] = view
    return found


def _check_scope_for_run(inv: config.Inventory, j: Journal, wave: str, key: str) -> None:
    active = _active_scopes(inv, j, wave)
    mine = _covers(inv, wave, key)
    for other, view in active.items():
        shared = mine & _covers(inv, wave, other)
        if other != key and shared:
            raise MigrateError(f"{wave}: {', '.join(sorted(shared))} belongs to run {view.run_id} ({other},"
                               f" {view.status}); finish or roll back that one first")
    if key != wave:
        system = key.split("@", 1)[1]
        done = set().union(*[_covers(inv, wave, k) for k, v in active.items() if v.status == "completed"])
        for dep in inv.spec.systems[system].depends_on:
            if dep in inv.spec.waves[wave].systems and dep not in done:
                raise MigrateError(f"--limit {system}: it depends on {dep}, which no completed run of {wave}"
                                   f" has migrated; run `--limit {dep}` first")


def _check_scope_for_rollback(inv: config.Inventory, j: Journal, wave: str, key: str) -> None:
    if key == wave:
        return
    system = key.split("@", 1)[1]
    for other, view in _active_scopes(inv, j, wave).items():
        users = {s for s in _covers(inv, wave, other) if system in inv.spec.systems[s].depends_on}
        if other != key and users:
            raise MigrateError(f"--limit {system}: {', '.join(sorted(users))} depends on it and is still migrated"
                               f" (run {view.run_id}); roll that back first")


def plan(inv: config.Inventory, wave: str, *, bus: Bus, limit: str | None = None) -> Outcome:
    """The dry run: checks, facts read, every step planned, checkable actions run in check mode.
    A failed check does not stop a dry run (rehearse outside the window); it is reported."""
    inv, _ = _scoped(inv, wave, limit)
    preflight(inv, wave, bus=bus, run_id=f"{wave}-dry-run")
    wave_plan = make_plan(inv, wave, run_id=f"{wave}-dry-run")
    ctx = Context(inv=inv, run_id=wave_plan.run_id, wave=wave, bus=bus)
    Executor(NullJournal(), DryRunSink(ctx), bus).apply(wave_plan)
    return Outcome(wave, "planned", f"dry run of {wave}: nothing was changed", plan=wave_plan)


RESUMABLE = ("failed", "interrupted", "awaiting_approval")
# A failure here means the target took the traffic and does not serve it right: back at once.
ROLLBACK_ON_FAILURE = ("post-cutover",)


def run(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm, dry_run: bool = False,
        accept_warnings: bool = False, approved_by: str | None = None, limit: str | None = None) -> Outcome:
    if dry_run:
        return plan(inv, wave, bus=bus, limit=limit)
    full = inv
    inv, key = _scoped(inv, wave, limit)
    j = journal(inv)
    # One lock per wave, whatever the limit: the parts of a wave share hosts and the front door.
    with lock.wave_lock(inv.state_dir, wave, "run") as stale:
        view = state.latest(j.records(wave=key))
        if view and view.status == "completed":
            return Outcome(key, "unchanged", f"{key} already completed in run {view.run_id}; nothing to do",
                           run_id=view.run_id)
        if view and view.status in ("rolling_back",):
            raise MigrateError(f"{key}: run {view.run_id} is half rolled back; finish with `migrate rollback {wave}`")
        _check_scope_for_run(full, j, wave, key)
        resuming = view is not None and view.status in RESUMABLE
        run_id = view.run_id if resuming else new_run_id(wave)
        _require(preflight(inv, wave, bus=bus, run_id=run_id), accept_warnings)
        started = time.monotonic()
        if resuming:
            wave_plan = view.plan
            j.append(view.run_id, key, "run_resumed", {"operator": operator()})
        else:
            wave_plan = make_plan(inv, wave, run_id, key=key)
            if not confirm(_describe(wave_plan)):
                return Outcome(key, "cancelled", "cancelled; nothing was changed", plan=wave_plan)
            j.append(wave_plan.run_id, key, "run_started", {"plan": wave_plan.to_json(), "operator": operator()})
        if stale:
            j.append(wave_plan.run_id, key, "takeover", {"previous": stale})
        ctx = Context(inv=inv, run_id=wave_plan.run_id, wave=wave, bus=bus, approved_by=approved_by)
        _apply_or_roll_back(inv, key, j, bus, ctx, wave_plan, view if resuming else None)
        j.append(wave_plan.run_id, key, "run_finished", {
            "operator": operator(), "seconds": round(time.monotonic() - started, 3),
            "data_seconds": _data_seconds(j, wave_plan),
            "bytes": sum(s.volume.get("database_bytes", 0) + s.volume.get("bytes", 0) for s in wave_plan.steps)})
    verb = "resumed and completed" if resuming else "completed"
    return Outcome(key, "completed", f"{key} {verb} (run {wave_plan.run_id})", plan=wave_plan,
                   run_id=wave_plan.run_id)


def _apply_or_roll_back(inv, key, j, bus, ctx, wave_plan, view) -> None:
    try:
        Executor(j, LiveSink(ctx), bus).apply(wave_plan, view)
    except StepFailed as exc:
        failed = state.latest(j.records(wave=key))
        step = next((s.id for s in failed.steps.values() if s.state == "failed"), None)
        if step not in ROLLBACK_ON_FAILURE:
            raise
        bus.emit("auto_rollback", step=step, error=str(exc))
        _undo_all(ctx, j, bus, failed, reason=f"{step} failed")
        raise StepFailed(f"{exc}; the wave was rolled back at once: the source serves again") from exc


def rehearse(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm,
             accept_warnings: bool = False, limit: str | None = None) -> Outcome:
    """Run the wave, then roll it back, and journal both timings as a rehearsal record
    (GDPR art. 32 wants restores that were tested, not assumed). The go/no-go gate is passed
    in the rehearsal's name: it is rolled back minutes later."""
    started = time.monotonic()
    done = run(inv, wave, bus=bus, confirm=confirm, accept_warnings=accept_warnings,
               approved_by=f"rehearsal by {operator()}", limit=limit)
    if done.status != "completed":
        raise MigrateError(f"{done.wave}: rehearsal needs a fresh run, but {done.message}")
    ran = time.monotonic() - started
    back = rollback(inv, wave, bus=bus, confirm=lambda text: True, limit=limit)
    undone = time.monotonic() - started - ran
    record = {"operator": operator(), "run_seconds": round(ran, 3), "rollback_seconds": round(undone, 3),
              "result": back.status}
    journal(inv).append(done.run_id, done.wave, "rehearsal", record)
    return Outcome(done.wave, "rehearsed", f"{done.wave} rehearsed (run {done.run_id}): ran in {ran:.1f}s,"
                                      f" rolled back in {undone:.1f}s", run_id=done.run_id)


def _describe(wave_plan: WavePlan) -> str:
    lines = [f"wave {wave_plan.wave}, run {wave_plan.run_id}:"]
    for step in wave_plan.steps:
        lines.append(f"  {step.id}: {step.noop or step.title}")
    return "\n".join(lines)


def rollback(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm, limit: str | None = None) -> Outcome:
    full = inv
    inv, key = _scoped(inv, wave, limit)
    j = journal(inv)
    with lock.wave_lock(inv.state_dir, wave, "rollback") as stale:
        view = state.latest(j.records(wave=key))
        if view is None or view.status == "rolled_back":
            return Outcome(key, "nothing", f"{key}: nothing to roll back")
        _check_scope_for_rollback(full, j, wave, key)
        effects = view.pending_undo()
        text = "\n".join([f"roll back {key}, run {view.run_id} ({len(effects)} effects to undo, newest first):"]
                         + [f"  {step}: {a.undo.summary if a.undo else 'IRREVERSIBLE: ' + str(a.irreversible)}"
                            for _, step, a in effects])
        if not confirm(text):
            return Outcome(key, "cancelled", "cancelled; nothing was changed")
        if stale:
            j.append(view.run_id, key, "takeover", {"previous": stale})
        _undo_all(Context(inv=inv, run_id=view.run_id, wave=wave, bus=bus), j, bus, view, reason="requested")
    return Outcome(key, "rolled_back", f"{key} rolled back (run {view.run_id}, {len(effects)} effects undone)",
                   run_id=view.run_id)


def _undo_all(ctx: Context, j: Journal, bus: Bus, view: state.RunView, *, reason: str) -> None:
    """Undo every pending effect of the run, newest first; the caller holds the wave lock."""
    effects = view.pending_undo()
    key = view.plan.wave
    j.append(view.run_id, key, "rollback_started", {"operator": operator(), "effects": len(effects), "reason": reason})
    Executor(j, LiveSink(ctx), bus).undo(view.plan, effects)
    j.append(view.run_id, key, "rollback_finished", {"operator": operator()})


def status(inv: config.Inventory, wave: str | None = None) -> dict:
    if wave:
        _wave(inv, wave)
    j = journal(inv)
    keys = set(inv.spec.waves) | set(j.waves())
    waves = sorted(k for k in keys if not wave or k == wave or k.startswith(wave + "@"))
    result = {"journal": str(j.path), "chain": j.verify_chain() or "intact", "waves": {}}
    for name in waves:
        view = state.latest(j.records(wave=name))
        holder = lock.holder(inv.state_dir, name.split("@", 1)[0])
        result["waves"][name] = _wave_status(view, holder)
    return result


def _wave_status(view: state.RunView | None, holder: dict | None) -> dict:
    if view is None:
        return {"status": "not started", "lock": holder}
    status = "running" if holder and view.status in ("interrupted", "failed") else view.status
    return {"status": status, "run_id": view.run_id, "operator": view.operator, "started": view.started,
            "ended": view.ended, "lock": holder, "rehearsal": view.rehearsal,
            "approval": view.approval,
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
