"""Plans are data: what each step would do, serialisable into the journal.

An Action is one side effect: an operation name, its JSON arguments, and either its undo (another
Action) or the reason it cannot be undone. Steps turn facts into Actions; the executor sends
Actions to a sink. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Action:
    op: str
    args: dict
    summary: str
    undo: Action | None = None
    irreversible: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Action:
        undo = cls.from_json(data["undo"]) if data.get("undo") else None
        return cls(op=data["op"], args=data["args"], summary=data["summary"], undo=undo,
                   irreversible=data.get("irreversible"))


@dataclass(frozen=True)
class StepPlan:
    """One step's intent. `noop` says why a step has nothing to do."""

    id: str
    system: str
    title: str
    actions: tuple[Action, ...] = ()
    noop: str | None = None
    volume: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"id": self.id, "system": self.system, "title": self.title, "noop": self.noop,
                "volume": self.volume, "actions": [a.to_json() for a in self.actions]}

    @classmethod
    def from_json(cls, data: dict) -> StepPlan:
        return cls(id=data["id"], system=data["system"], title=data["title"], noop=data.get("noop"),
                   volume=data.get("volume", {}), actions=tuple(Action.from_json(a) for a in data["actions"]))


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
