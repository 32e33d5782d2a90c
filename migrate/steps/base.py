"""What every step plans with: the run it plans for. Steps are frozen dataclasses with

- `id`: the step's journal key (built in `migrate.model.layout`);
- `needs(run)`: the facts its plan reads (see `migrate.facts`), gathered before planning;
- `plan(run, facts)`: the StepPlan, from the spec and those facts alone. No I/O at all, so
  every plan is unit-tested on canned facts (tests/unit/test_steps.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.model.layout import RunLayout


@dataclass(frozen=True)
class Run:
    inv: object       # migrate.config.Inventory: the spec and the hosts, as loaded (plain data)
    wave: str
    run_id: str

    @property
    def spec(self):
        return self.inv.spec

    @property
    def bucket(self) -> str:
        return self.inv.spec.storage.bucket

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.inv.spec.storage.prefix, self.wave, self.run_id)


class Step:
    """Steps that read no facts need not say so."""

    def needs(self, run: Run) -> tuple:
        return ()


def db_sides(d) -> dict:
    """Where one database of the spec (`config.Database`) moves from and to, as operations take it."""
    return {"source": d.source.server, "source_db": d.source.dbname,
            "target": d.target.server, "target_db": d.target.dbname}
