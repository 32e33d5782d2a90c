"""Facts: what planning and preflight read from the world, one small class each (after pyinfra).

A fact is a frozen dataclass that names what it reads (a database, a path on a host). `read(inv)`
fetches the raw answer through an adapter; `process(raw)` turns it into plain data and is pure,
so unit tests feed it canned answers. Steps say which facts they need (`needs()`); `gather`
reads each of them once; a step's `plan(facts)` then does no I/O at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from migrate.transfer.pool import Pool


class Fact:
    """Subclasses are frozen dataclasses (hashable: a fact is its own key)."""

    def read(self, inv) -> Any:
        raise NotImplementedError

    def process(self, raw: Any) -> Any:
        return raw

    def collect(self, inv) -> Any:
        return self.process(self.read(inv))


class Facts(Mapping):
    """Gathered facts by fact. Asking for one nobody gathered is a bug, said plainly."""

    def __init__(self, values: Mapping[Fact, Any] | None = None):
        self._values = dict(values or {})

    def __getitem__(self, fact: Fact) -> Any:
        try:
            return self._values[fact]
        except KeyError:
            raise KeyError(f"fact {fact!r} was not gathered") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def gather(inv, needs: Iterable[Fact], *, workers: int = 8) -> Facts:
    """Read every fact once, several at a time: most are one SSH or database round trip, and
    the connection costs more than the question. The first that fails is raised."""
    unique = list(dict.fromkeys(needs))
    if not unique:
        return Facts()
    with Pool(min(workers, len(unique)), name="fact") as pool:
        return Facts(dict(pool.map(lambda _, fact: (fact, fact.collect(inv)), unique)))
