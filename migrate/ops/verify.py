"""Verification inside a wave: the legal-evidence digests before the copy, the whole check after."""

from __future__ import annotations

from migrate.engine.context import Context
from migrate.engine.events import Bus
from migrate.engine.registry import operation
from migrate.errors import VerificationFailed
from migrate.model import layout
from migrate.ops.sync import baselines
from migrate.verify import report, runner


@operation(layout.EVIDENCE_OP)
def evidence_digest(ctx: Context, *, system: str, database: str, incremental: bool = False) -> dict:
    d = ctx.inv.spec.systems[system].databases[database]
    base = baselines(ctx.journal, ctx.run_id).get(f"{system}/{database}") if incremental else None
    # The result lands in the journal (effect_done) before the copy starts: the "before" proof.
    if base is None:
        return {"digests": runner.source_evidence(ctx.inv, d)}
    return {"digests": runner.source_evidence(ctx.inv, d, base), "from_baseline": True}


@operation("verify.wave")
def verify_wave(ctx: Context, *, depth: str, incremental: bool = False) -> dict:
    bases = baselines(ctx.journal, ctx.run_id) if incremental else None
    result = runner.verify(ctx.inv, ctx.wave, run_id=ctx.run_id, depth=depth, bus=Bus(), journal=ctx.journal,
                           baselines=bases)
    path = report.record(ctx.inv, ctx.journal, result, ctx.run_id, step=layout.VERIFY_ID)
    if not result.passed:
        raise VerificationFailed(f"{len(result.differences)} difference(s) between source and target"
                                 f" ({', '.join(f'{n} {a}' for a, n in sorted(result.by_area().items()))});"
                                 f" see {path} or `migrate report {ctx.wave}`")
    return {"status": "passed", "tables": len(result.tables), "seconds": round(result.seconds, 3),
            "report": str(path)}
