"""Plans are data: what each step would do, serialisable into the journal.

An Action is one side effect: an operation name, its JSON arguments, and exactly one of: its
undo (another Action), the reason it cannot be undone, or `read_only` (it only reads, so there is
nothing to undo). `undo_on` says when the undo runs: "resume" (an interrupted step is undone
before it runs again, and a rollback undoes it) or "rollback" (a resume keeps what it did; only a
rollback undoes it: for work a rerun continues rather than repeats). Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

UNDO_ON = ("resume", "rollback")


@dataclass(frozen=True)
class Action:
    op: str
    args: dict
    summary: str
    undo: Action | None = None
    irreversible: str | None = None
    read_only: bool = False
    undo_on: str = "resume"

    def __post_init__(self):
        if self.undo_on not in UNDO_ON:
            raise ValueError(f"action {self.op}: undo_on must be one of {UNDO_ON}")

    def check_declared(self) -> None:
        """A step's action says how it is reversed (an undo's own action need not)."""
        declared = [self.undo is not None, self.irreversible is not None, self.read_only]
        if sum(declared) != 1:
            raise ValueError(f"action {self.op}: declare exactly one of undo, irreversible, read_only")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Action:
        undo = cls.from_json(data["undo"]) if data.get("undo") else None
        return cls(op=data["op"], args=data["args"], summary=data["summary"], undo=undo,
                   irreversible=data.get("irreversible"), read_only=data.get("read_only", False),
                   undo_on=data.get("undo_on", "resume"))


def reading(op: str, args: dict, summary: str) -> Action:
    """An action that only reads: a rollback has nothing to undo and says nothing about it."""
    return Action(op, args, summary, read_only=True)


@dataclass(frozen=True)
class StepPlan:
    """One step's intent. `noop` says why a step has nothing to do; `rollback_on_failure` asks
    for the whole run to be rolled back at once when this step fails (journalled with the plan)."""

    id: str
    system: str
    title: str
    actions: tuple[Action, ...] = ()
    noop: str | None = None
    volume: dict = field(default_factory=dict)
    rollback_on_failure: bool = False

    def __post_init__(self):
        for action in self.actions:
            action.check_declared()

    def to_json(self) -> dict:
        return {"id": self.id, "system": self.system, "title": self.title, "noop": self.noop,
                "volume": self.volume, "rollback_on_failure": self.rollback_on_failure,
                "actions": [a.to_json() for a in self.actions]}

    @classmethod
    def from_json(cls, data: dict) -> StepPlan:
        return cls(id=data["id"], system=data["system"], title=data["title"], noop=data.get("noop"),
                   volume=data.get("volume", {}), rollback_on_failure=data.get("rollback_on_failure", False),
                   actions=tuple(Action.from_json(a) for a in data["actions"]))

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(self.system.split("+"))


@dataclass(frozen=True)
class WavePlan:
    wave: str
    run_id: str
    steps: tuple[StepPlan, ...]

    def to_json(self) -> dict:
        return {"wave": self.wave, "run_id": self.run_id, "steps": [s.to_json() for s in self.steps]}

    @classmethod
    def from_json(cls, data: dict) -> WavePlan:
        return cls(wave=data["wave"], run_id=data["run_id"],
                   steps=tuple(StepPlan.from_json(s) for s in data["steps"]))
