"""The registry of operations: the code behind each Action's `op` name.

Operations are plain functions marked with `@operation(name)` where they are written (in
`migrate.ops`); the composition root (`migrate.commands`) builds a Registry from those modules.
The engine knows operations only through a Registry it is handed. An operation marked
`checkable` can run side-effect free (Ansible's check mode): the dry-run sink runs those and
lists the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from migrate.errors import MigrateError


@dataclass(frozen=True)
class Operation:
    name: str
    fn: Callable
    checkable: bool = False


def operation(name: str, *, checkable: bool = False):
    """Mark a function as the operation `name`; nothing is registered until a Registry reads it."""
    def mark(fn: Callable) -> Callable:
        fn.operation = Operation(name, fn, checkable)
        return fn
    return mark


class Registry:
    def __init__(self, operations: list[Operation] = ()):
        self._ops: dict[str, Operation] = {}
        for o in operations:
            self.add(o)

    @classmethod
    def from_modules(cls, *modules: ModuleType) -> Registry:
        return cls([fn.operation for m in modules for fn in vars(m).values() if isinstance(
            getattr(fn, "operation", None), Operation)])

    def add(self, o: Operation) -> None:
        if o.name in self._ops and self._ops[o.name].fn is not o.fn:
            raise ValueError(f"operation {o.name} is defined twice")
        self._ops[o.name] = o

    def lookup(self, name: str) -> Operation:
        try:
            return self._ops[name]
        except KeyError:
            raise MigrateError(f"journal names an unknown operation '{name}'") from None

    def names(self) -> set[str]:
        return set(self._ops)
