"""Facts about one database, for planning: its size, whether it exists, its roles, its tables."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import db
from migrate.facts import Fact
from migrate.transfer import chunks
from migrate.transfer import roles as pgroles


@dataclass(frozen=True)
class DatabaseSize(Fact):
    server: str
    dbname: str

    def read(self, inv) -> int:
        return db.database_size(inv, self.server, self.dbname)


@dataclass(frozen=True)
class DatabaseExists(Fact):
    server: str
    dbname: str

    def read(self, inv) -> bool:
        return db.database_exists(inv, self.server, self.dbname)


@dataclass(frozen=True)
class RolesReferenced(Fact):
    """Roles that own, are granted or are named by objects of the database."""

    server: str
    dbname: str

    def read(self, inv) -> set[str]:
        with db.connect(inv, self.server, self.dbname) as conn:
            return pgroles.referenced(conn)

    def process(self, raw) -> frozenset[str]:
        return frozenset(raw)


@dataclass(frozen=True)
class RolesPresent(Fact):
    """Every role of a server (cluster-wide)."""

    server: str

    def read(self, inv) -> set[str]:
        with db.connect(inv, self.server, "postgres") as conn:
            return pgroles.existing(conn)

    def process(self, raw) -> frozenset[str]:
        return frozenset(raw)


@dataclass(frozen=True)
class TablesToCopy(Fact):
    """The tables with data to copy, with the key range of those big enough to split."""

    server: str
    dbname: str
    chunk_bytes: int

    def read(self, inv) -> list:
        with db.connect(inv, self.server, self.dbname) as conn:
            return chunks.read_tables(conn, self.chunk_bytes)

    def process(self, raw) -> tuple:
        return tuple(raw)
