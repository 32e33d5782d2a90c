"""Applies a plan, or undoes one, journaling every side effect before it happens.

The same code serves a real run and a dry run: only the sink and the journal differ. Outcomes
are results: a failed step, or one that waits for a human at the gate, ends the list of step
results `apply` returns; the caller decides what to raise.
Resume rule: a completed step is never repeated; a step that was interrupted is first undone
(its journaled effects whose undo is for resume, newest first; every undo is idempotent) and then
run again, so a half-done step never leaves half its work behind. Effects whose undo is for
rollback only are kept, and the rerun continues from them.
"""

from __future__ import annotations

import time

from migrate.engine.events import Bus
from migrate.engine.journal import Journal, Record
from migrate.engine.state import RunView
from migrate.errors import AwaitingApproval, MigrateError
from migrate.model.plan import Action, StepPlan, WavePlan
from migrate.model.result import StepResult


class NullJournal:
    """A dry run's journal: remembers nothing, so a dry run leaves no state behind."""

    def append(self, run_id, wave, kind, data=None, step=None) -> Record:
        return Record(0, run_id, wave, step, kind, data or {}, time.time())


class Executor:
    def __init__(self, journal: Journal | NullJournal, sink, bus: Bus):
        self.journal, self.sink, self.bus = journal, sink, bus

    def apply(self, plan: WavePlan, view: RunView | None = None) -> list[StepResult]:
        """Each step's result, in order; the list ends at the first step that failed or waits."""
        results = []
        for step in plan.steps:
            state = view.steps[step.id].state if view else "pending"
            if state == "done":
                self.bus.emit("step_skipped", step=step.id, reason="completed earlier")
                results.append(StepResult(step.id, "skipped"))
                continue
            if state in ("running", "failed", "waiting"):
                self._undo_partial(plan, step.id, view)
            results.append(self._run_step(plan, step))
            if results[-1].status != "done":
                break
        return results

    def _run_step(self, plan: WavePlan, step: StepPlan) -> StepResult:
        self._log(plan, "step_started", step.id, {"title": step.title})
        self.bus.emit("step_started", step=step.id, title=step.title, volume=step.volume)
        started, done = time.monotonic(), 0
        try:
            if step.noop:
                self.bus.emit("step_noop", step=step.id, reason=step.noop)
            for action in step.actions:
                self._perform(plan, step.id, action)
                done += 0 if action.read_only else 1
        except AwaitingApproval as exc:
            # Not a failure: the run stops here until someone decides (resume or rollback).
            self._log(plan, "step_waiting", step.id, {"reason": str(exc)})
            self.bus.emit("step_waiting", step=step.id, reason=str(exc))
            return StepResult(step.id, "waiting", done, _since(started), str(exc), cause=exc)
        except MigrateError as exc:
            self._log(plan, "step_failed", step.id, {"error": str(exc)})
            self.bus.emit("step_failed", step=step.id, error=str(exc))
            return StepResult(step.id, "failed", done, _since(started), str(exc), cause=exc)
        self._log(plan, "step_done", step.id, {"noop": step.noop, "seconds": _since(started)})
        self.bus.emit("step_done", step=step.id, seconds=_since(started))
        return StepResult(step.id, "done", done, _since(started))

    def _perform(self, plan: WavePlan, step: str, action: Action) -> None:
        # Write-ahead: the effect and its undo are on disk before the effect starts.
        record = self._log(plan, "effect", step, {"action": action.to_json()})
        self.bus.emit("action", step=step, summary=action.summary, dry=self.sink.dry)
        result = self.sink.execute(action)
        self._log(plan, "effect_done", step, {"effect": record.seq, "result": result})
        self.bus.emit("action_done", step=step, result=result, dry=self.sink.dry)

    def undo(self, plan: WavePlan, effects: list[tuple[int, str, Action]]) -> None:
        for seq, step, action in effects:
            if action.read_only:
                continue
            if action.undo is None:
                self.bus.emit("irreversible", step=step, summary=action.summary, reason=action.irreversible)
                continue
            self._log(plan, "undo", step, {"effect": seq, "action": action.undo.to_json()})
            self.bus.emit("action", step=step, summary=action.undo.summary, dry=self.sink.dry)
            result = self.sink.execute(action.undo)
            self._log(plan, "undone", step, {"effect": seq, "result": result})

    def _undo_partial(self, plan: WavePlan, step_id: str, view: RunView) -> None:
        effects = [e for e in view.pending_undo() if e[1] == step_id and e[2].undo_on == "resume"]
        self.bus.emit("step_resumed", step=step_id, undoing=len(effects))
        self.undo(plan, effects)

    def _log(self, plan: WavePlan, kind: str, step: str | None, data: dict) -> Record:
        return self.journal.append(plan.run_id, plan.wave, kind, data, step=step)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
