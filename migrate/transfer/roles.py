"""Owners and grants of a database, from the source's roles to the target's, as the spec maps them.

pg_dump writes an object's owner as the last statement of its entry (`ALTER ... OWNER TO r;`)
and its grants as ACL entries, one grantee per statement (`GRANT ... TO r;`, `REVOKE ... FROM r;`,
`ALTER DEFAULT PRIVILEGES FOR ROLE r ...`, and `SET SESSION AUTHORIZATION r;` around a grant
made by someone other than the owner). The copy creates objects without either, so loading needs
nothing but the connecting role; at the end these statements run with every role name passed
through the map. A statement of another shape in an ACL entry is refused: a grant given to the
wrong role is worse than none.

Roles are cluster-wide. The ones a wave creates on the target are NOLOGIN, have no password,
and carry a comment naming the run and step, so the undo drops exactly those and nothing else.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from migrate.errors import StepFailed
from migrate.transfer.postdata import SETTING, Item

IDENT = r'(?:"(?:[^"]|"")*"|[^\s",;()]+)'
OWNER = re.compile(rf"^(ALTER .+ OWNER TO )({IDENT})(;)$")
GRANTEE = re.compile(rf"^((?:GRANT|REVOKE|ALTER DEFAULT PRIVILEGES) .* (?:TO|FROM) )({IDENT})((?: WITH GRANT OPTION)?;)$")
DEFAULTS_FOR = re.compile(rf"^(ALTER DEFAULT PRIVILEGES FOR ROLE )({IDENT})( )")
SESSION = re.compile(rf"^(SET SESSION AUTHORIZATION )({IDENT})(;)$")
POLICY = re.compile(rf"^(CREATE POLICY {IDENT} ON {IDENT}\.{IDENT}(?: AS RESTRICTIVE)?"
                    rf"(?: FOR (?:ALL|SELECT|INSERT|UPDATE|DELETE))? TO )({IDENT}(?:, {IDENT})*)", re.MULTILINE)
ON_DATABASE = re.compile(rf"( ON DATABASE ){IDENT}( (?:TO|FROM) )")
ALTER_DATABASE = re.compile(rf"^(ALTER DATABASE ){IDENT}( OWNER TO )")
ROLE_IN_DATABASE = re.compile(rf"^(ALTER ROLE )({IDENT})( IN DATABASE )", re.MULTILINE)


def is_builtin(role: str) -> bool:
    """PUBLIC and the predefined pg_* roles exist everywhere and are never mapped or created."""
    return role == "PUBLIC" or role.startswith("pg_")


@dataclass(frozen=True)
class RoleMap:
    """`renames`: source role -> target role. A role it does not name keeps its name when
    `unmapped` is "create" (and is created on the target if missing); with "fail" it has none."""

    renames: dict[str, str] = field(default_factory=dict)
    unmapped: str = "fail"

    def target(self, role: str) -> str | None:
        if is_builtin(role):
            return role
        if role in self.renames:
            return self.renames[role]
        return role if self.unmapped == "create" else None

    def to_json(self) -> dict:
        return {"renames": dict(self.renames), "unmapped": self.unmapped}

    @classmethod
    def from_json(cls, data: dict | None) -> RoleMap | None:
        return None if data is None else cls(dict(data["renames"]), data["unmapped"])


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _quote(role: str) -> str:
    return role if is_builtin(role) else sql.Identifier(role).as_string(None)


class Mapper:
    """Renames roles in statements; remembers which target roles they name, and which source
    roles the map has no name for."""

    def __init__(self, rolemap: RoleMap):
        self.rolemap, self.used, self.unmapped = rolemap, set(), set()

    def role(self, quoted: str) -> str:
        source = _unquote(quoted)
        target = self.rolemap.target(source)
        if target is None:
            self.unmapped.add(source)
            return quoted
        if not is_builtin(target):
            self.used.add(target)
        return _quote(target)

    def sub(self, pattern: re.Pattern, text: str, count: int = 1) -> str:
        return pattern.sub(lambda m: m[1] + self.role(m[2]) + (m[3] if pattern.groups >= 3 else ""), text, count=count)

    def acl_line(self, line: str, what: str) -> str:
        if not line.strip() or line.startswith("--") or SETTING.match(line) or line == "RESET SESSION AUTHORIZATION;":
            return line
        if SESSION.match(line):
            return self.sub(SESSION, line)
        if not GRANTEE.match(line):
            raise StepFailed(f"ACL entry {what}: a statement of an unknown shape; refusing to guess its roles")
        return self.sub(GRANTEE, self.sub(DEFAULTS_FOR, line))

    def policy(self, text: str) -> str:
        def roles(m: re.Match) -> str:
            return m[1] + ", ".join(self.role(r) for r in re.findall(IDENT, m[2]) if r != ",")
        return POLICY.sub(roles, text, count=1)


@dataclass(frozen=True)
class Privileges:
    statements: list[str]     # owners, then grants, then default privileges, in archive order
    roles: set[str]           # target roles they name (besides PUBLIC and pg_*)
    unmapped: set[str]        # source roles the map has no name for


def _body_lines(item: Item) -> list[str]:
    return [line for line in item.sql.splitlines() if line.strip() and not line.startswith("--")]


def privileges(pre_data: list[Item], post_data: list[Item], rolemap: RoleMap, target_db: str) -> Privileges:
    """The statements that give the target's objects their owners and grants. `pre_data` comes
    from a script made with --create (it holds the database's own owner and grants);
    `target_db` is the target database's quoted name."""
    mapper, owners, grants, defaults = Mapper(rolemap), [], [], []
    for item in pre_data + post_data:
        lines = _body_lines(item)
        if item.type in ("ACL", "DEFAULT ACL"):
            text = "\n".join(mapper.acl_line(line, f"{item.schema}.{item.name}") for line in lines)
            if item.name.startswith("DATABASE "):
                text = ON_DATABASE.sub(lambda m: m[1] + target_db + m[2], text)
            (defaults if item.type == "DEFAULT ACL" else grants).append(text)
        elif lines and OWNER.match(lines[-1]):
            statement = mapper.sub(OWNER, lines[-1])
            if item.type == "DATABASE":
                statement = ALTER_DATABASE.sub(lambda m: m[1] + target_db + m[2], statement)
            owners.append(statement)
    return Privileges(owners + grants + defaults, mapper.used, mapper.unmapped)


def map_role_settings(statements: list[str], rolemap: RoleMap) -> tuple[list[str], set[str], set[str]]:
    """The database's per-role settings (ALTER ROLE r IN DATABASE d SET ...) for the target's roles."""
    mapper = Mapper(rolemap)
    return [mapper.sub(ROLE_IN_DATABASE, s, count=0) for s in statements], mapper.used, mapper.unmapped


def map_policies(items: list[Item], rolemap: RoleMap) -> tuple[list[Item], set[str], set[str]]:
    """Post-data items with the roles of row-level security policies renamed."""
    mapper = Mapper(rolemap)
    mapped = [dataclasses.replace(it, sql=mapper.policy(it.sql)) if it.type == "POLICY" else it for it in items]
    return mapped, mapper.used, mapper.unmapped


# --- the catalog: which roles a database names, which exist, creating and dropping --------

# Every role the database's objects name (owner, grantee, grantor, policy, default privileges)
# is in pg_shdepend, except the bootstrap superuser (oid 10), which is pinned and never recorded
# there: whether it owns something that pg_dump will name is asked of the catalogs directly.
OWNED_BY_BOOTSTRAP = {
    "pg_class": "relowner", "pg_namespace": "nspowner", "pg_proc": "proowner", "pg_type": "typowner",
    "pg_collation": "collowner", "pg_conversion": "conowner", "pg_operator": "oprowner",
    "pg_opclass": "opcowner", "pg_opfamily": "opfowner", "pg_ts_config": "cfgowner", "pg_ts_dict": "dictowner",
    "pg_foreign_data_wrapper": "fdwowner", "pg_foreign_server": "srvowner", "pg_event_trigger": "evtowner",
    "pg_publication": "pubowner", "pg_statistic_ext": "stxowner", "pg_language": "lanowner",
}
_BOOTSTRAP_OWNS = " UNION ALL ".join(
    f"SELECT 1 FROM pg_catalog.{catalog} o WHERE o.{column} = 10 AND o.oid >= 16384"
    f" AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = '{catalog}'::regclass"
    f" AND e.objid = o.oid AND e.deptype = 'e')"
    + (" AND o.nspname NOT LIKE 'pg\\_%'" if catalog == "pg_namespace" else "")
    for catalog, column in OWNED_BY_BOOTSTRAP.items())
REFERENCED_SQL = f"""
WITH db AS (SELECT oid, datdba FROM pg_catalog.pg_database WHERE datname = current_database())
SELECT pg_catalog.pg_get_userbyid(d.refobjid) FROM pg_catalog.pg_shdepend d, db
 WHERE d.refclassid = 'pg_authid'::regclass
   AND (d.dbid = db.oid OR (d.dbid = 0 AND d.classid = 'pg_database'::regclass AND d.objid = db.oid))
UNION SELECT pg_catalog.pg_get_userbyid(datdba) FROM db
UNION SELECT pg_catalog.pg_get_userbyid(s.setrole) FROM pg_catalog.pg_db_role_setting s, db
 WHERE s.setdatabase = db.oid AND s.setrole <> 0
UNION SELECT pg_catalog.pg_get_userbyid(10) WHERE EXISTS ({_BOOTSTRAP_OWNS})
"""


def referenced(conn) -> set[str]:
    """Source roles that own, are granted, grant or are named by a policy in the connected
    database, or own the database itself."""
    return {r for r, in conn.execute(REFERENCED_SQL).fetchall()} - {"PUBLIC"}


def existing(conn) -> set[str]:
    return {r for r, in conn.execute("SELECT rolname FROM pg_catalog.pg_roles").fetchall()}


def marker(run_id: str, step: str) -> str:
    return f"created by migrate (NOLOGIN, no password): run {run_id}, step {step}"


def _comment(conn, role: str) -> str | None:
    found = conn.execute("SELECT pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles"
                         " WHERE rolname = %s", (role,)).fetchone()
    return None if found is None else (found[0] or "")


def create(conn, role: str, mark: str) -> bool:
    """Create the role NOLOGIN with its marker, in one transaction. False when it exists
    already (made by this very step in a killed attempt, or by someone else: left alone)."""
    with conn.transaction():
        if _comment(conn, role) is not None:
            return False
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(mark)))
    return True


def drop(conn, role: str, mark: str, where: str) -> bool:
    """Drop the role if this step created it (its marker says so); False if it did not."""
    with conn.transaction():
        if _comment(conn, role) != mark:
            return False
        try:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        except psycopg.errors.DependentObjectsStillExist:
            raise StepFailed(f"role {role} on {where} still owns or is granted something (added after the"
                             " wave?); REASSIGN OWNED / DROP OWNED it in each database, then roll back again") from None
    return True
