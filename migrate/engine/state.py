"""What the journal says about a wave: derived on demand, never stored twice."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.engine.journal import Record
from migrate.model.layout import SWITCH_ID, SYNCED_ID
from migrate.model.plan import Action, WavePlan


@dataclass
class StepView:
    id: str
    state: str = "pending"
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    noop: str | None = None


@dataclass
class RunView:
    run_id: str
    wave: str
    operator: str
    started: float
    plan: WavePlan
    steps: dict[str, StepView]
    effects: list[tuple[int, str, Action]] = field(default_factory=list)
    undone: set[int] = field(default_factory=set)
    ended: float | None = None
    status: str = "interrupted"
    took_over: list[dict] = field(default_factory=list)
    rehearsal: dict | None = None
    approval: dict | None = None  # who passed the go/no-go gate: the gate's own record

    def pending_undo(self) -> list[tuple[int, str, Action]]:
        """Effects not yet undone, newest first: the rollback list (reads have nothing to undo)."""
        return [e for e in reversed(self.effects) if e[0] not in self.undone and not e[2].read_only]

    def states(self) -> dict[str, str]:
        return {s.id: s.state for s in self.steps.values()}


def runs(records: list[Record]) -> list[RunView]:
    views: dict[str, RunView] = {}
    for r in records:
        if r.kind == "run_started":
            plan = WavePlan.from_json(r.data["plan"])
            views[r.run_id] = RunView(r.run_id, r.wave, r.data["operator"], r.at, plan,
                                      {s.id: StepView(s.id) for s in plan.steps})
        elif r.run_id in views:
            _apply(views[r.run_id], r)
    return list(views.values())


def _apply(view: RunView, r: Record) -> None:
    step = view.steps.get(r.step) if r.step else None
    if r.kind == "step_started":
        step.state, step.started, step.ended, step.error = "running", r.at, None, None
    elif r.kind == "step_done":
        step.state, step.ended, step.noop = "done", r.at, r.data.get("noop")
    elif r.kind == "step_failed":
        step.state, step.ended, step.error = "failed", r.at, r.data.get("error")
        view.status = "failed"
    elif r.kind == "step_waiting":
        step.state, step.ended, step.error = "waiting", r.at, r.data.get("reason")
        view.status = "synced" if r.step == SYNCED_ID else "awaiting_approval"
    elif r.kind == "effect":
        view.effects.append((r.seq, r.step, Action.from_json(r.data["action"])))
    elif r.kind == "undone":
        view.undone.add(r.data["effect"])
        if step and step.state not in ("running",):
            step.state = "undone"
    elif r.kind == "approval":
        view.approval = r.data
    elif r.kind == "rehearsal":
        view.rehearsal = r.data
    elif r.kind == "takeover":
        view.took_over.append(r.data)
    elif r.kind == "run_resumed":
        # Going again, not finished: should this process die too, the run is interrupted (and
        # resumable) once more. `status` says "running" while a live process holds the lock.
        view.status = "interrupted"
    elif r.kind == "run_finished":
        view.status, view.ended = "completed", r.at
    elif r.kind == "rollback_started":
        view.status = "rolling_back"
    elif r.kind == "rollback_finished":
        view.status, view.ended = "rolled_back", r.at
    elif r.kind == "finalize_started":
        view.status = "finalizing"  # no way back from here: rollback refuses, finalize goes on
    elif r.kind == "finalized":
        view.status = "final"


def latest(records: list[Record]) -> RunView | None:
    found = runs(records)
    return found[-1] if found else None


def freeze_steps(view: RunView) -> list[StepView]:
    """The steps of the freeze: from the first one of it (maintenance on) to the switch of the
    entry point (or the plan's end); empty before it starts."""
    ids = [s.id for s in view.plan.steps]
    first = next((i for i, sid in enumerate(ids) if sid.startswith("freeze:")), None)
    if first is None or not view.steps[ids[first]].started:
        return []
    last = ids.index(SWITCH_ID) if SWITCH_ID in ids else len(ids) - 1
    return [view.steps[i] for i in ids[first:last + 1]]


def freeze_span(view: RunView) -> tuple[float, float | None] | None:
    """(start, end) of the freeze; end None while the switch is not done. A rollback marks the
    switch undone later: the freeze still ended when the switch was done."""
    inside = freeze_steps(view)
    if not inside:
        return None
    end = inside[-1]
    return inside[0].started, end.ended if end.state in ("done", "undone") else None
