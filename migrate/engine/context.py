"""What an operation may use: the inventory, the run, its journal and events, shared clients."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from migrate.engine.events import Bus


@dataclass
class Context:
    inv: object            # migrate.config.Inventory
    run_id: str
    wave: str              # the wave's name in the spec
    key: str = ""          # the run's journal key: the wave, or `wave@system` under --limit
    check: bool = False    # a dry run: checkable operations run in check mode
    bus: Bus = field(default_factory=Bus, repr=False)
    journal: object = field(default=None, repr=False)  # the run's journal (a dry run's remembers nothing)
    approved_by: str | None = None  # the go/no-go gate's `--approve NAME`
    hold: bool = False     # `migrate sync`: stop where the wave is in sync, before the cutover
    shared: dict = field(default_factory=dict, repr=False)  # clients made once per run (see migrate.ops.common)

    def __post_init__(self):
        self.key = self.key or self.wave

    def record(self, kind: str, data: dict, *, step: str) -> None:
        """A record of the operation's own (an approval, say) in the run's journal."""
        self.journal.append(self.run_id, self.key, kind, data, step=step)

    def with_check(self) -> Context:
        return replace(self, check=True)
