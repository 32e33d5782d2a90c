"""One function per verb. They carry the logic; the CLI only parses and prints.

This is the composition root: the only module that imports `migrate.ops` and fills the registry
of operations the engine runs. A real run and a dry run go through the same set-up (scope, lock,
state checks, preflight, planning) and differ only in where actions go: the live sink and the
journal, or the dry-run sink and a journal that remembers nothing.
"""

from __future__ import annotations

import time
from typing import Callable

from migrate import config, facts, scope, steps
from migrate import preflight as checks
from migrate.adapters import anchor, ansible, db
from migrate.engine import lock, state
from migrate.engine.context import Context
from migrate.engine.events import Bus
from migrate.engine.executor import Executor, NullJournal
from migrate.engine.journal import Journal, new_run_id, operator
from migrate.engine.registry import Registry
from migrate.engine.sinks import DryRunSink, LiveSink
from migrate.errors import AwaitingApproval, MigrateError, PreflightFailed, StepFailed
from migrate.facts.database import DatabaseSize
from migrate.model.layout import SWITCH_ID, SYNCED_ID, fence_db_id, journal_path
from migrate.model.plan import Action, WavePlan
from migrate.model.result import StepResult, WaveOutcome, systems_by_state
from migrate.ops import app, archive, cutover, database, staging, sync, verify
from migrate.transfer import sync as sync_protocol
from migrate.transfer import way_back

Confirm = Callable[[str], bool]
REGISTRY = Registry.from_modules(staging, database, archive, app, cutover, sync, verify)
RESUMABLE = ("failed", "interrupted", "awaiting_approval", "synced")


def journal(inv: config.Inventory) -> Journal:
    return Journal(journal_path(inv.state_dir), remote=anchor.BucketAnchor(inv))


def context(inv: config.Inventory, run_id: str, wave: str, *, key: str = "", bus: Bus | None = None,
            journal=None, approved_by: str | None = None, hold: bool = False) -> Context:
    return Context(inv=inv, run_id=run_id, wave=wave, key=key, bus=bus or Bus(), journal=journal,
                   approved_by=approved_by, hold=hold)


def live_sink(ctx: Context) -> LiveSink:
    return LiveSink(ctx, REGISTRY)


def preflight(inv: config.Inventory, wave: str, *, bus: Bus, run_id: str | None = None,
              record=None, own_switch: bool = False) -> list[checks.Finding]:
    """Every check, journalled as evidence under the run it guards (or a run id of its own).
    `record` is where the findings go: the inventory's journal unless told (a dry run's forgets)."""
    scope.check_wave(inv, wave)
    db.check_passfiles(inv, wave)  # before contacting anything (run and sync have checked already)
    j = journal(inv)
    findings = checks.run_checks(inv, wave, pace=_pace(j), total_bytes=_wave_bytes(inv, wave),
                                 owned_slots=owned_slots(j), own_switch=own_switch)
    (record or j).append(run_id or f"{wave}-preflight-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}", wave,
                         "preflight", {"findings": [f.to_json() for f in findings], "operator": operator()})
    for f in findings:
        bus.emit("check", **f.to_json())
    return findings


def owned_slots(j: Journal) -> set[str]:
    """The replication slots of runs not rolled back: a sync's on the source, a way back's on the
    target (it lives on after the wave completes, until the source is retired)."""
    owned = set()
    for view in state.runs(j.records()):
        if view.status == "rolled_back":
            continue
        for step in view.plan.steps:
            for a in step.actions:
                if a.op == "sync.copy_and_follow":
                    owned.add(sync_protocol.name_for(a.args["sides"]["source_db"]))
                elif a.op == "replication.start":
                    owned.add(way_back.name_for(a.args["target_db"]))
    return owned


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
    total = 0
    for name in inv.spec.waves[wave].systems:
        for d in inv.spec.systems[name].databases.values():
            try:
                total += DatabaseSize(d.source.server, d.source.dbname).collect(inv)
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


def _data_seconds(view: state.RunView, wave_plan: WavePlan) -> float:
    moving = [view.steps[s.id] for s in wave_plan.steps if s.volume]
    return round(sum(v.ended - v.started for v in moving if v.started and v.ended), 3)


def plan_steps(inv: config.Inventory, wave: str, run_id: str, wave_steps: list, *,
               key: str | None = None) -> WavePlan:
    """Gather the facts the steps need (each once), then plan every step from them."""
    run = steps.Run(inv, wave, run_id)
    found = facts.gather(inv, [fact for step in wave_steps for fact in step.needs(run)])
    return WavePlan(key or wave, run_id, tuple(step.plan(run, found) for step in wave_steps))


def make_plan(inv: config.Inventory, wave: str, run_id: str, *, key: str | None = None,
              warm: bool = False) -> WavePlan:
    """The plan of `wave`; `key` names it in the journal (the wave, or `wave@system` for --limit);
    `warm`: the plan of `migrate sync` (copy while live, then cut over)."""
    return plan_steps(inv, wave, run_id, steps.build(inv.spec, wave, warm=warm), key=key)


def is_warm(wave_plan: WavePlan) -> bool:
    return any(s.id == SYNCED_ID for s in wave_plan.steps)


def plan(inv: config.Inventory, wave: str, *, bus: Bus, limit: str | None = None) -> WaveOutcome:
    """The dry run: `run` with the dry-run sink (see there)."""
    return run(inv, wave, bus=bus, confirm=lambda text: True, dry_run=True, limit=limit)


def sync(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm, dry_run: bool = False,
         accept_warnings: bool = False, limit: str | None = None) -> WaveOutcome:
    """The warm phase: copy while the source stays live and keep the target in sync, then stop
    (status `synced`); `run` cuts over. Again on a synced wave: checks it is still in sync."""
    return run(inv, wave, bus=bus, confirm=confirm, dry_run=dry_run, accept_warnings=accept_warnings,
               limit=limit, warm=True)


def run(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm, dry_run: bool = False,
        accept_warnings: bool = False, approved_by: str | None = None, limit: str | None = None,
        warm: bool = False) -> WaveOutcome:
    """Run the wave (or resume its last run), or, with `dry_run`, go through exactly the same
    set-up and send the actions to the dry-run sink: facts are read, checkable actions run in
    check mode, nothing is changed and nothing is journalled. A failed check does not stop a dry
    run (rehearse outside the window); it is reported. `warm`: `migrate sync` (see there); a
    synced wave's run is resumed by `run`, which goes on to the cutover."""
    full = inv
    inv, key = scope.scoped(inv, wave, limit)
    db.check_passfiles(inv, wave)  # bad input: refused before the journal or the lock is made
    j = journal(inv)
    # One lock per wave, whatever the limit: the parts of a wave share hosts and the front door.
    with lock.wave_lock(inv.state_dir, wave, "dry run" if dry_run else "run") as stale:
        stale = stale if dry_run else _taken_over(inv, stale)  # a dry run touches nothing
        _require_chain(j)
        view = state.latest(j.records(wave=key))
        if view and view.status in ("completed", "final"):
            return _completed(key, wave, view, dry_run)
        if view and view.status == "finalizing":
            raise MigrateError(f"{key}: run {view.run_id} is being finalized; finish with `migrate finalize {wave}`")
        if view and view.status in ("rolling_back",):
            raise MigrateError(f"{key}: run {view.run_id} is half rolled back; finish with `migrate rollback {wave}`")
        scope.check_run(full, j, wave, key)
        resumed = view if view is not None and view.status in RESUMABLE else None
        if resumed:
            _require_planned(resumed)
        if warm and resumed and not is_warm(resumed.plan):
            raise MigrateError(f"{key}: run {resumed.run_id} is a cold run ({resumed.status}); resume it with"
                               f" `migrate run {wave}` or roll it back before `migrate sync`")
        run_id = resumed.run_id if resumed else new_run_id(wave)
        switch = resumed.steps.get(SWITCH_ID) if resumed else None
        findings = preflight(inv, wave, bus=bus, run_id=run_id, record=NullJournal() if dry_run else None,
                             own_switch=bool(switch and switch.started))
        wave_plan = resumed.plan if resumed else make_plan(inv, wave, run_id, key=key, warm=warm)
        if dry_run:
            return _dry_run(inv, wave, key, bus, wave_plan, resumed, approved_by, hold=warm)
        _require(findings, accept_warnings)
        return _run(inv, wave, key, j, bus, confirm, wave_plan, resumed, stale, approved_by, hold=warm)


def _taken_over(inv: config.Inventory, stale: dict | None) -> dict | None:
    """A holder that died without releasing the lock may have left playbook workers running on:
    they are stopped before anything else, so that none races what this command does."""
    if not stale:
        return stale
    return {**stale, "leftover_processes": ansible.stop_leftovers(inv)}


def _require_chain(j: Journal, *, override: str | None = None) -> str | None:
    """A run or a rollback acts on what the journal says (the undo of each effect): never on a
    journal whose chain is broken, unless a rollback is given a forensic override (its reason);
    then the breakage is returned for the caller to journal before it acts."""
    broken = j.verify_chain()
    if broken and not override:
        raise MigrateError(f"journal {j.path}: {broken}; refusing to act on it (run, sync and rollback read their"
                           " undos from it). Keep the file for forensics and compare it with a copy or with the"
                           " evidence of the wave")
    return broken


def _completed(key: str, wave: str, view: state.RunView, dry_run: bool) -> WaveOutcome:
    undo = len(view.pending_undo())
    limit = f" --limit {scope.limit_of(key)}" if scope.limit_of(key) else ""
    then = (f"; a new run would change nothing. `migrate rollback {wave}{limit}` would undo its {undo} effects,"
            " after which a new run would migrate it again") if dry_run else "; nothing to do"
    succeeded, failed = systems_by_state(view.plan, view.states())
    return WaveOutcome(key, "unchanged", f"{key} already completed in run {view.run_id}{then}", plan=view.plan,
                       run_id=view.run_id, succeeded=succeeded, failed=failed)


def _dry_run(inv, wave, key, bus, wave_plan, resumed, approved_by, hold=False) -> WaveOutcome:
    record = NullJournal()
    ctx = context(inv, wave_plan.run_id, wave, key=key, bus=bus, journal=record, approved_by=approved_by, hold=hold)
    results = Executor(record, DryRunSink(ctx, REGISTRY), bus).apply(wave_plan, resumed)
    if results and results[-1].status == "failed":
        _raise(results[-1], WaveOutcome(key, "failed", "dry run failed", plan=wave_plan))
    what = f"resuming run {resumed.run_id}" if resumed else f"a new run {wave_plan.run_id}"
    return WaveOutcome(key, "planned", f"dry run of {key} ({what}): nothing was changed", plan=wave_plan,
                       run_id=resumed.run_id if resumed else None)


def _run(inv, wave, key, j, bus, confirm, wave_plan, resumed, stale, approved_by, hold=False) -> WaveOutcome:
    started = time.monotonic()
    if resumed:
        j.append(resumed.run_id, key, "run_resumed", {"operator": operator()})
    else:
        if not confirm(_describe(wave_plan)):
            return WaveOutcome(key, "cancelled", "cancelled; nothing was changed", plan=wave_plan)
        j.append(wave_plan.run_id, key, "run_started", {"plan": wave_plan.to_json(), "operator": operator()})
    if stale:
        j.append(wave_plan.run_id, key, "takeover", {"previous": stale})
    ctx = context(inv, wave_plan.run_id, wave, key=key, bus=bus, journal=j, approved_by=approved_by, hold=hold)
    if _apply_or_roll_back(ctx, j, bus, wave_plan, resumed) == "synced":
        done = state.latest(j.records(wave=key))
        succeeded, failed = systems_by_state(wave_plan, done.states())
        return WaveOutcome(key, "synced", f"{key} in sync (run {wave_plan.run_id}): the target follows the live"
                           f" source; `migrate run {wave}` cuts over", plan=wave_plan, run_id=wave_plan.run_id,
                           succeeded=succeeded, failed=failed)
    done = state.latest(j.records(wave=key))
    freeze = freeze_of(done)
    if freeze:
        j.append(wave_plan.run_id, key, "freeze", freeze)
    j.append(wave_plan.run_id, key, "run_finished", {
        "operator": operator(), "seconds": round(time.monotonic() - started, 3),
        "data_seconds": _data_seconds(done, wave_plan),
        "bytes": sum(s.volume.get("database_bytes", 0) + s.volume.get("bytes", 0) for s in wave_plan.steps)})
    verb = "resumed and completed" if resumed else "completed"
    succeeded, failed = systems_by_state(wave_plan, done.states())
    froze = f"; freeze {freeze['seconds']:.1f}s" if freeze and freeze["seconds"] is not None else ""
    return WaveOutcome(key, "completed", f"{key} {verb} (run {wave_plan.run_id}){froze}", plan=wave_plan,
                       run_id=wave_plan.run_id, succeeded=succeeded, failed=failed)


def _apply_or_roll_back(ctx: Context, j: Journal, bus: Bus, wave_plan: WavePlan, resumed) -> str | None:
    """Apply the plan; when a step whose plan asks for it fails, undo the whole run at once.
    Returns "synced" when `migrate sync` stopped where it should."""
    results = Executor(j, live_sink(ctx), bus).apply(wave_plan, resumed)
    last = results[-1] if results else None
    if last is None or last.status in ("done", "skipped"):
        return None
    if last.status == "waiting" and last.step == SYNCED_ID:
        return "synced"
    step = next(s for s in wave_plan.steps if s.id == last.step)
    then = ""
    if last.status == "failed" and step.rollback_on_failure:
        bus.emit("auto_rollback", step=step.id, error=last.error)
        _undo_all(ctx, j, bus, state.latest(j.records(wave=ctx.key)), reason=f"{step.id} failed")
        then = "; the wave was rolled back at once: the source serves again"
    _raise(last, _stopped_outcome(state.latest(j.records(wave=ctx.key))), then=then)


def _raise(last: StepResult, outcome: WaveOutcome, then: str = "") -> None:
    """The one exception a stopped run ends with, for the CLI's line and exit code."""
    if last.status == "waiting":
        exc = AwaitingApproval(last.error)
    else:
        exc = StepFailed(f"step {last.step} failed: {last.error}{then}")
    exc.outcome = outcome
    raise exc from last.cause


def _stopped_outcome(view: state.RunView) -> WaveOutcome:
    """A run that stopped short, as the journal has it: failed, awaiting approval or rolled back."""
    succeeded, failed = systems_by_state(view.plan, view.states())
    return WaveOutcome(view.plan.wave, view.status, f"run {view.run_id}: {view.status}", plan=view.plan,
                       run_id=view.run_id, succeeded=succeeded, failed=failed)


def rehearse(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm,
             accept_warnings: bool = False, limit: str | None = None) -> WaveOutcome:
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
    return WaveOutcome(done.wave, "rehearsed", f"{done.wave} rehearsed (run {done.run_id}): ran in {ran:.1f}s,"
                                          f" rolled back in {undone:.1f}s", run_id=done.run_id,
                       succeeded=done.succeeded)


def _describe(wave_plan: WavePlan) -> str:
    lines = [f"wave {wave_plan.wave}, run {wave_plan.run_id}:"]
    for step in wave_plan.steps:
        lines.append(f"  {step.id}: {step.noop or step.title}")
    return "\n".join(lines)


def rollback(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm,
             limit: str | None = None, forensic_override: str | None = None) -> WaveOutcome:
    """`forensic_override`: for forensics only, the reason to roll back although the journal's
    chain is broken; journalled (`chain_override`) before anything else. Effects that are not
    actions of the journalled plan are refused all the same."""
    full = inv
    inv, key = scope.scoped(inv, wave, limit)
    db.check_passfiles(inv, wave)
    j = journal(inv)
    with lock.wave_lock(inv.state_dir, wave, "rollback") as stale:
        stale = _taken_over(inv, stale)
        broken = _require_chain(j, override=forensic_override)
        view = state.latest(j.records(wave=key))
        if view is None or view.status == "rolled_back":
            return WaveOutcome(key, "nothing", f"{key}: nothing to roll back")
        if view.status in ("finalizing", "final"):
            raise MigrateError(f"{key}: run {view.run_id} was finalized: its way back and its staged copies are gone,"
                               " a rollback is impossible (restore from backups, or plan a wave back)")
        scope.check_rollback(full, j, wave, key)
        if broken:
            j.append(view.run_id, key, "chain_override", {"operator": operator(), "reason": forensic_override,
                                                          "breakage": broken})
        _require_planned(view)
        effects = view.pending_undo()
        warn = [f"JOURNAL CHAIN BROKEN ({broken}): rolling back anyway for forensics, reason journalled"] if broken else []
        text = "\n".join(warn + [f"roll back {key}, run {view.run_id} ({len(effects)} effects to undo, newest first):"]
                         + [f"  {step}: {_undo_line(a)}" for _, step, a in effects])
        if not confirm(text):
            return WaveOutcome(key, "cancelled", "cancelled; nothing was changed")
        if stale:
            j.append(view.run_id, key, "takeover", {"previous": stale})
        _undo_all(context(inv, view.run_id, wave, key=key, bus=bus, journal=j), j, bus, view, reason="requested")
    return WaveOutcome(key, "rolled_back", f"{key} rolled back (run {view.run_id}, {len(effects)} effects undone)",
                       run_id=view.run_id)


def _require_planned(view: state.RunView) -> None:
    """Every effect must be an action its step's plan (journalled when the run began) holds: an
    undo edited in the journal, even with the chain recomputed, is refused before it runs."""
    planned = {s.id: [a.to_json() for a in s.actions] for s in view.plan.steps}
    for seq, step, action in view.effects:
        if action.to_json() not in planned.get(step, []):
            raise MigrateError(f"journal record {seq}: the effect of {step} is not an action of the plan journalled"
                               f" when run {view.run_id} began (was it edited?); nothing was done")


KEY_ARGS = ("server", "dbname", "host", "path", "prefix", "bucket", "target", "target_db", "source", "source_db")


def _undo_line(action) -> str:
    """What an undo will do, from its operation and arguments (not only its stored summary)."""
    if action.undo is None:
        return f"IRREVERSIBLE: {action.irreversible}"
    args = ", ".join(f"{k}={action.undo.args[k]}" for k in KEY_ARGS if isinstance(action.undo.args.get(k), str))
    return f"{action.undo.summary} [{action.undo.op}{' ' + args if args else ''}]"


def _undo_all(ctx: Context, j: Journal, bus: Bus, view: state.RunView, *, reason: str) -> None:
    """Undo every pending effect of the run, newest first; the caller holds the wave lock."""
    effects = view.pending_undo()
    key = view.plan.wave
    j.append(view.run_id, key, "rollback_started", {"operator": operator(), "effects": len(effects), "reason": reason})
    Executor(j, live_sink(ctx), bus).undo(view.plan, effects)
    j.append(view.run_id, key, "rollback_finished", {"operator": operator()})


def status(inv: config.Inventory, wave: str | None = None) -> dict:
    if wave:
        scope.check_wave(inv, wave)
    j = journal(inv)
    keys = set(inv.spec.waves) | set(j.waves())
    waves = sorted(k for k in keys if not wave or k == wave or k.startswith(wave + "@"))
    result = {"journal": str(j.path), "chain": j.verify_chain() or "intact", "waves": {},
              "stray_slots": stray_slots(inv, j)}
    for name in waves:
        view = state.latest(j.records(wave=name))
        holder = lock.holder(inv.state_dir, name.split("@", 1)[0])
        result["waves"][name] = _wave_status(view, holder)
        if view and is_warm(view.plan) and view.status not in ("rolled_back", "completed"):
            result["waves"][name]["sync"] = _sync_status(inv, j, view)
    return result


def stray_slots(inv: config.Inventory, j: Journal) -> list[dict]:
    """Replication slots of ours on the spec's servers that no live wave owns (each keeps WAL)."""
    owned, found = owned_slots(j), []
    for server in sorted(inv.spec.db_servers):
        try:
            found += [{"server": server, **s} for s in sync_protocol.our_slots(inv, server) if s["slot"] not in owned]
        except MigrateError:
            continue  # unreachable: preflight says so
    return found


def _sync_status(inv: config.Inventory, j: Journal, view: state.RunView) -> dict:
    """Per database of a warm run: copying / streaming / caught up, lag, positions, its slot."""
    made, caught = {}, {}
    for r in j.records(run_id=view.run_id):
        if r.kind == "sync_attempt":
            made[r.data["database"]] = r.at
        elif r.kind == "sync_caught_up":
            caught[r.step] = r.data
    found = {}
    for step in view.plan.steps:
        for a in step.actions:
            if a.op != "sync.copy_and_follow":
                continue
            fenced = caught.get(fence_db_id(step.system, a.args["name"]))
            if fenced:  # the cutover took it over: slot and subscription dropped after the catch-up
                found[a.args["name"]] = {"state": "fenced and caught up", **fenced}
                continue
            try:
                now = sync_protocol.progress(inv, **a.args["sides"])
            except MigrateError as exc:
                now = {"state": "unknown", "error": str(exc)}
            created = made.get(a.args["name"])
            now["slot_age_seconds"] = round(time.time() - created, 1) if created and now.get("slot_state") else None
            found[a.args["name"]] = now
    return found


def freeze_of(view: state.RunView) -> dict | None:
    """The freeze (see state.freeze_span), with each step inside it; None before it starts."""
    span = state.freeze_span(view)
    if span is None:
        return None
    started, ended = span
    phases = [{"step": v.id, "seconds": round(v.ended - v.started, 3)}
              for v in state.freeze_steps(view) if v.started and v.ended]
    return {"seconds": round(ended - started, 3) if ended else None, "started": started, "ended": ended,
            "working_seconds": round(sum(p["seconds"] for p in phases), 3), "phases": phases}


def _wave_status(view: state.RunView | None, holder: dict | None) -> dict:
    if view is None:
        return {"status": "not started", "lock": holder}
    status = "running" if holder and view.status in ("interrupted", "failed") else view.status
    return {"status": status, "run_id": view.run_id, "operator": view.operator, "started": view.started,
            "ended": view.ended, "lock": holder, "rehearsal": view.rehearsal,
            "approval": view.approval, "warm": is_warm(view.plan), "freeze": freeze_of(view),
            "steps": [{"id": s.id, "state": s.state, "started": s.started, "ended": s.ended,
                       "seconds": round(s.ended - s.started, 3) if s.started and s.ended else None,
                       "error": s.error, "noop": s.noop} for s in view.steps.values()]}


def unlock(inv: config.Inventory, wave: str, *, force: bool = False) -> str:
    scope.check_wave(inv, wave)
    return lock.unlock(inv.state_dir, wave, force=force)


def verify(inv: config.Inventory, wave: str, *, bus: Bus, depth: str = "full") -> dict:
    """Verify WAVE's target against its source; the report is written and journalled.
    Differences are a result: the caller decides (the CLI exits 1 via VerificationFailed)."""
    from migrate.verify import report, runner
    scope.check_wave(inv, wave)
    j = journal(inv)
    view = state.latest(j.records(wave=wave))
    run_id = view.run_id if view else None  # its manifest and pre-copy evidence digests
    result = runner.verify(inv, wave, run_id=run_id, depth=depth, bus=bus, journal=j)
    report.record(inv, j, result, run_id)
    return result.to_json()


def report(inv: config.Inventory, wave: str) -> dict:
    """The last verification of WAVE, as journalled (its hash is checked)."""
    from migrate.verify import report as reports
    scope.check_wave(inv, wave)
    j = journal(inv)
    _, data = reports.last(inv, j, wave)
    froze = [r.data for r in j.records(run_id=data.get("run_id")) if r.kind == "freeze"] if data.get("run_id") else []
    return {**data, "freeze": froze[-1]} if froze else data


def evidence(inv: config.Inventory, wave: str, *, run_id: str | None = None, out=None) -> dict:
    """Write the evidence pack of a run of WAVE (default: its last); journalled with its digest."""
    from migrate.evidence import pack
    scope.check_wave(inv, wave)
    j = journal(inv)
    _require_chain(j)
    return pack.build(inv, j, wave, run_id=run_id, out=out)


FINALIZE_OPS = {"replication.start": "replication.end", "s3.open_staging": "s3.close_staging"}


def finalize(inv: config.Inventory, wave: str, *, bus: Bus, confirm: Confirm, now: float | None = None) -> WaveOutcome:
    """After go-live and the spec's confirmation period: end the way back, delete the staging
    prefix, purge what archive deltas set aside, mark the wave final (no rollback after it), and
    write the last evidence pack. Each action is journalled before and after; a killed
    finalize is run again (every action is idempotent)."""
    from migrate.evidence import pack
    scope.check_wave(inv, wave)
    j = journal(inv)
    with lock.wave_lock(inv.state_dir, wave, "finalize"):
        _require_chain(j)
        view = state.latest(j.records(wave=wave))
        _finalizable(inv, wave, view, now or time.time())
        actions = _finalize_actions(view)
        text = "\n".join([f"FINALIZE {wave}, run {view.run_id}: AFTER THIS, `migrate rollback {wave}` IS IMPOSSIBLE."]
                         + [f"  {step}: {a.summary}" for step, a in actions]
                         + ["  then: mark the wave final and write its last evidence pack"])
        if not confirm(text):
            return WaveOutcome(wave, "cancelled", "cancelled; nothing was changed")
        if view.status != "finalizing":
            j.append(view.run_id, wave, "finalize_started", {"operator": operator(), "actions": len(actions)})
        sink = live_sink(context(inv, view.run_id, wave, bus=bus, journal=j))
        for step, action in actions:
            j.append(view.run_id, wave, "finalize_action", {"action": action.to_json()}, step=step)
            bus.emit("action", step=step, summary=action.summary, dry=False)
            j.append(view.run_id, wave, "finalize_done", {"op": action.op, "result": sink.execute(action)}, step=step)
        j.append(view.run_id, wave, "finalized", {"operator": operator()})
    built = pack.build(inv, j, wave, run_id=view.run_id)
    return WaveOutcome(wave, "final", f"{wave} is final (run {view.run_id}); evidence pack {built['tar']}",
                       run_id=view.run_id)


def _finalizable(inv: config.Inventory, wave: str, view, now: float) -> None:
    if view is None or view.status not in ("completed", "finalizing"):
        raise MigrateError(f"{wave}: only a completed wave can be finalized"
                           f" ({'no run' if view is None else 'its last run is ' + view.status})")
    switched = view.steps.get(SWITCH_ID)
    if switched is None or switched.state != "done":
        raise MigrateError(f"{wave}: run {view.run_id} did not switch its entry point: nothing went live to confirm")
    days = inv.spec.evidence.confirmation_days
    ready = switched.ended + days * 86400
    if now < ready:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ready))
        raise MigrateError(f"{wave}: went live {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(switched.ended))};"
                           f" evidence.confirmation_days is {days}: finalize from {when}")


def _finalize_actions(view) -> list:
    """The way back's end, the staging's deletion, and each archive delta's set-aside purge."""
    found = []
    for seq, step, action in view.effects:
        if seq in view.undone:
            continue
        if action.op in FINALIZE_OPS:
            undo = action.undo or action
            summary = ("end the way back (drop its subscription, slot and publication; the target is not fenced)"
                       if action.op == "replication.start" else undo.summary)
            found.append((step, Action(FINALIZE_OPS[action.op], undo.args, summary)))
        elif action.op == "files.restore_packs" and action.args.get("delta"):
            found.append((step, Action("files.purge_set_aside", action.args,
                                       f"purge the old versions the delta set aside on {action.args['host']}")))
    return found
