"""Fakes shipped with the package, for unit tests of planning and of the engine (no lab).

- `canned_facts(needs, values)`: the Facts a step asked for, each from `values` or a plain default
  of its kind (nothing there yet, nothing in it), so a test names only the facts it is about.
- `RecordingSink`: a sink that records the actions it is given and performs none, for tests
  of the executor and the journal that must not touch anything.
"""

from __future__ import annotations

from migrate.facts import Facts
from migrate.facts.archive import ArchiveOnHost, ArchiveVolume
from migrate.facts.cutover import FrontDoorUpstreams
from migrate.facts.dns import CnameValue
from migrate.facts.database import DatabaseExists, DatabaseSize, RolesPresent, RolesReferenced, TablesToCopy
from migrate.facts.files import PathExists
from migrate.facts.replication import LargeObjects, TablesWithoutKey

DEFAULTS = {
    PathExists: False,
    DatabaseSize: 0,
    DatabaseExists: False,
    RolesReferenced: frozenset(),
    RolesPresent: frozenset(),
    TablesToCopy: (),
    ArchiveOnHost: ArchiveVolume(0, 0),
    FrontDoorUpstreams: {},
    CnameValue: None,
    TablesWithoutKey: (),
    LargeObjects: 0,
}


def canned_facts(needs, values: dict | None = None) -> Facts:
    values = values or {}
    return Facts({fact: values[fact] if fact in values else DEFAULTS[type(fact)] for fact in needs})


class RecordingSink:
    dry = False

    def __init__(self):
        self.executed = []

    def execute(self, action) -> dict:
        self.executed.append(action)
        return {}
