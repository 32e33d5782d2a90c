"""What a verb did, as data: the wave's status and which of its systems got through.

A failed wave is an outcome too (fabric's GroupResult): `succeeded` are the systems whose every
step completed, `failed` those of the step that failed. The CLI prints it; tests read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.model.plan import WavePlan


@dataclass(frozen=True)
class StepResult:
    """One step of one apply: done, skipped (completed earlier), failed or waiting (the gate).
    `changed` counts the effects it performed; `cause` is the error behind a failure or a wait,
    for --debug (never journalled)."""

    step: str
    status: str
    changed: int = 0
    seconds: float = 0.0
    error: str | None = None
    cause: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class WaveOutcome:
    wave: str
    status: str
    message: str
    plan: WavePlan | None = None
    run_id: str | None = None
    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"result": self.status, "wave": self.wave, "run_id": self.run_id, "message": self.message,
                "succeeded": list(self.succeeded), "failed": list(self.failed),
                "plan": self.plan.to_json() if self.plan else None}


def systems_by_state(plan: WavePlan, states: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(succeeded, failed) systems of a plan, given each step's state ('done', 'failed', ...).
    Steps of no one system ('staging') count for none."""
    named = [s for s in plan.steps if s.system != "staging"]
    every = dict.fromkeys(name for s in named for name in s.systems)
    failed = {name for s in named if states.get(s.id) == "failed" for name in s.systems}
    incomplete = {name for s in named if states.get(s.id) != "done" for name in s.systems}
    return tuple(n for n in every if n not in incomplete), tuple(n for n in every if n in failed)
