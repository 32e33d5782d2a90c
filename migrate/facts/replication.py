"""Facts for the warm path: what a live sync depends on in the source database."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import db
from migrate.facts import Fact
from migrate.transfer import sync


@dataclass(frozen=True)
class TablesWithoutKey(Fact):
    """Tables whose UPDATE and DELETE a publication cannot carry as they are."""

    server: str
    dbname: str

    def read(self, inv) -> list:
        with db.connect(inv, self.server, self.dbname) as conn:
            return sync.tables_without_key(conn)

    def process(self, raw) -> tuple[str, ...]:
        return tuple(f"{schema}.{table}" for schema, table in raw)


@dataclass(frozen=True)
class LargeObjects(Fact):
    """Large objects: logical replication does not carry them."""

    server: str
    dbname: str

    def read(self, inv) -> int:
        return sync.large_objects(inv, self.server, self.dbname)


@dataclass(frozen=True)
class OurSlots(Fact):
    """Every replication slot of ours on a server, with the WAL it keeps."""

    server: str

    def read(self, inv) -> list[dict]:
        return sync.our_slots(inv, self.server)
