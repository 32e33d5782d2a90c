"""Read-only steps: legal-evidence digests of the source before anything is copied, and, after
the copy, the whole verification; a wave with any difference does not complete.

Their actions only read, so a rollback has nothing to undo and says nothing about them.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.model import layout
from migrate.model.plan import StepPlan, reading
from migrate.steps.base import Run, Step

WAVE_DEPTH = "full"


@dataclass(frozen=True)
class EvidenceDigest(Step):
    system: str
    name: str
    server: str
    dbname: str
    tables: tuple[str, ...]
    incremental: bool = False  # a warm wave: from the baseline taken before the freeze, same digest

    @property
    def id(self) -> str:
        return layout.evidence_id(self.system, self.name)

    def plan(self, run: Run, facts) -> StepPlan:
        args = {"system": self.system, "database": self.name}
        action = reading(layout.EVIDENCE_OP, {**args, "incremental": True} if self.incremental else args,
                         f"digest {', '.join(self.tables)} on {self.server}/{self.dbname} before the copy")
        return StepPlan(self.id, self.system, f"legal-evidence digest of {self.name} (source)", (action,))


@dataclass(frozen=True)
class VerifyWave(Step):
    systems: tuple[str, ...]
    incremental: bool = False  # a warm wave: recompute only what may have changed since the baseline
    id = layout.VERIFY_ID

    def plan(self, run: Run, facts) -> StepPlan:
        args = {"depth": WAVE_DEPTH, "incremental": True} if self.incremental else {"depth": WAVE_DEPTH}
        since = " (every row; recomputed where it may have changed since the baseline)" if self.incremental else ""
        action = reading("verify.wave", args, f"verify {', '.join(self.systems)}: rows, schema, sequences,"
                                              f" documents, totals, evidence{since}")
        return StepPlan(self.id, "+".join(self.systems), "verify the target against the source", (action,))
