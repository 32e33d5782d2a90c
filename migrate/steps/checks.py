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

    @property
    def id(self) -> str:
        return layout.evidence_id(self.system, self.name)

    def plan(self, run: Run, facts) -> StepPlan:
        action = reading(layout.EVIDENCE_OP, {"system": self.system, "database": self.name},
                         f"digest {', '.join(self.tables)} on {self.server}/{self.dbname} before the copy")
        return StepPlan(self.id, self.system, f"legal-evidence digest of {self.name} (source)", (action,))


@dataclass(frozen=True)
class VerifyWave(Step):
    systems: tuple[str, ...]
    id = layout.VERIFY_ID

    def plan(self, run: Run, facts) -> StepPlan:
        action = reading("verify.wave", {"depth": WAVE_DEPTH},
                         f"verify {', '.join(self.systems)}: rows, schema, sequences, documents, totals, evidence")
        return StepPlan(self.id, "+".join(self.systems), "verify the target against the source", (action,))
