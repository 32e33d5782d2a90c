"""Verification inside a wave: legal-evidence digests of the source before anything is copied,
and, as the last step, the whole verification; a wave with any difference does not complete.

Both steps only read. Their undo is an explicit no-op rather than "irreversible", so a rollback
does not warn about effects that changed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.engine.journal import Journal
from migrate.engine.ops import Context, op
from migrate.errors import VerificationFailed
from migrate.model.plan import Action, StepPlan

WAVE_DEPTH = "full"


def read_only_undo(what: str) -> Action:
    return Action("verify.nothing", {}, f"nothing to undo: {what} only read")


@op("verify.nothing")
def nothing(ctx: Context) -> dict:
    return {}


@op("verify.evidence_digest")
def evidence_digest(ctx: Context, *, system: str, database: str) -> dict:
    from migrate.verify import runner
    d = ctx.inv.spec.systems[system].databases[database]
    # The result lands in the journal (effect_done) before the copy starts: the "before" proof.
    return {"digests": runner.source_evidence(ctx.inv, d)}


@op("verify.wave")
def verify_wave(ctx: Context, *, depth: str = WAVE_DEPTH) -> dict:
    from migrate.engine.events import Bus
    from migrate.verify import report, runner
    journal = Journal(ctx.inv.state_dir / "journal.sqlite")
    try:
        result = runner.verify(ctx.inv, ctx.wave, run_id=ctx.run_id, depth=depth, bus=Bus(), journal=journal)
        path = report.record(ctx.inv, journal, result, ctx.run_id, step=VerifyWave.id)
    finally:
        journal.close()
    if not result.passed:
        raise VerificationFailed(f"{len(result.differences)} difference(s) between source and target"
                                 f" ({', '.join(f'{n} {a}' for a, n in sorted(result.by_area().items()))});"
                                 f" see {path} or `migrate report {ctx.wave}`")
    return {"status": "passed", "tables": len(result.tables), "seconds": round(result.seconds, 3),
            "report": str(path)}


@dataclass(frozen=True)
class EvidenceDigest:
    system: str
    name: str
    server: str
    dbname: str
    tables: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.system}/evidence:{self.name}"

    def plan(self, ctx: Context) -> StepPlan:
        action = Action("verify.evidence_digest", {"system": self.system, "database": self.name},
                        f"digest {', '.join(self.tables)} on {self.server}/{self.dbname} before the copy",
                        undo=read_only_undo("the source was"))
        return StepPlan(self.id, self.system, f"legal-evidence digest of {self.name} (source)", (action,))


@dataclass(frozen=True)
class VerifyWave:
    systems: tuple[str, ...]
    id = "verify"

    def plan(self, ctx: Context) -> StepPlan:
        action = Action("verify.wave", {"depth": WAVE_DEPTH},
                        f"verify {', '.join(self.systems)}: rows, schema, sequences, documents, totals, evidence",
                        undo=read_only_undo("source and target were"))
        return StepPlan(self.id, "+".join(self.systems), "verify the target against the source", (action,))
