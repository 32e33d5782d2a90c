"""The registry of operations: the code behind each Action's `op` name.

Operations live beside the step that plans them and register here. An operation is marked
`checkable` when it can run side-effect free (Ansible's check mode); the dry-run sink runs those
and lists the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from migrate.config import Inventory
from migrate.engine.events import Bus
from migrate.errors import MigrateError

OPS: dict[str, Callable] = {}
CHECKABLE: set[str] = set()


def op(name: str, *, checkable: bool = False):
    def register(fn: Callable) -> Callable:
        OPS[name] = fn
        if checkable:
            CHECKABLE.add(name)
        return fn
    return register


@dataclass
class Context:
    """What an operation may use: the inventory, the run, and shared clients made on demand."""

    inv: Inventory
    run_id: str
    wave: str
    check: bool = False
    bus: Bus = field(default_factory=Bus, repr=False)
    approved_by: str | None = None  # the go/no-go gate's `--approve NAME`
    _s3: object = field(default=None, repr=False)

    @property
    def s3(self):
        if self._s3 is None:
            from migrate.adapters import cloud
            self._s3 = cloud.client(self.inv)
        return self._s3

    def with_check(self) -> "Context":
        return Context(inv=self.inv, run_id=self.run_id, wave=self.wave, check=True, bus=self.bus,
                       approved_by=self.approved_by, _s3=self._s3)


def lookup(name: str) -> Callable:
    import migrate.steps  # noqa: F401  (registers every operation)
    try:
        return OPS[name]
    except KeyError:
        raise MigrateError(f"journal names an unknown operation '{name}'") from None
