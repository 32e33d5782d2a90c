"""Facts about the PostgreSQL servers, for preflight: versions, extensions, encodings, the
migration roles' privileges, and what the way back after cutover (logical replication) needs."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import db
from migrate.facts import Fact

EXTENSIONS_USED = "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'"
EXTENSIONS_AVAILABLE = "SELECT name FROM pg_available_extensions"
ENCODING = "SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE datname = {}"
UNREADABLE = ("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
              " WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
              " AND NOT has_table_privilege(c.oid, 'SELECT')")
MAY_SUBSCRIBE = ("SELECT rolsuper OR pg_has_role(oid, 'pg_create_subscription', 'USAGE') FROM pg_roles"
                 " WHERE rolname = current_user")
IS_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"  # before 16: no pg_create_subscription
MAY_CREATE_DATABASES = "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
REPLICATION = ("SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int"
               " - (SELECT count(*) FROM pg_replication_slots)")


@dataclass(frozen=True)
class SourceServer(Fact):
    """The source server, seen from the database to migrate."""

    server: str
    dbname: str

    def read(self, inv) -> dict:
        with db.connect(inv, self.server, self.dbname) as conn:
            version = conn.info.server_version
            subscribe = MAY_SUBSCRIBE if version >= 160000 else IS_SUPERUSER
            return {"version": version,
                    "extensions": conn.execute(EXTENSIONS_USED).fetchall(),
                    "encoding": conn.execute(ENCODING.format("current_database()")).fetchone(),
                    "unreadable": conn.execute(UNREADABLE).fetchone()[0],
                    "may_subscribe": conn.execute(subscribe).fetchone()[0]}

    def process(self, raw: dict) -> dict:
        return {"version": raw["version"], "extensions": {r[0] for r in raw["extensions"]},
                "encoding": tuple(raw["encoding"]), "unreadable": raw["unreadable"],
                "may_subscribe": bool(raw["may_subscribe"])}


@dataclass(frozen=True)
class TargetServer(Fact):
    """The target server, seen from its `postgres` database."""

    server: str

    def read(self, inv) -> dict:
        with db.connect(inv, self.server, "postgres") as conn:
            return {"version": conn.info.server_version,
                    "extensions": conn.execute(EXTENSIONS_AVAILABLE).fetchall(),
                    "encoding": conn.execute(ENCODING.format("'template1'")).fetchone(),
                    "may_create_databases": conn.execute(MAY_CREATE_DATABASES).fetchone()[0],
                    "replication": conn.execute(REPLICATION).fetchone()}

    def process(self, raw: dict) -> dict:
        wal_level, free_slots = raw["replication"]
        return {"version": raw["version"], "extensions": {r[0] for r in raw["extensions"]},
                "encoding": tuple(raw["encoding"]), "may_create_databases": bool(raw["may_create_databases"]),
                "wal_level": wal_level, "free_slots": free_slots}
