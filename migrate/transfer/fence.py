"""The fence: from here on, no client but this tool writes to a database.

`default_transaction_read_only` alone is only a default: `BEGIN READ WRITE` walks past it. So the
fence also takes CONNECT away from every role but the tool's own (whose sessions are the
replication that must drain), and ends every other client session. Who could connect before is
written into the database's own settings (`migrate.fence_connect`) in the same transaction as the
fence: a kill at any point leaves the database either unfenced, or fenced with that record, and
lifting the fence gives CONNECT back to exactly those roles. Both are safe to run again.

A superuser ignores privileges: an application that connects as one is held by the read-only
default and the ended sessions only.
"""

from __future__ import annotations

import json

from psycopg import sql

MARK = "migrate.fence_connect"
HOLDERS = """
    SELECT coalesce(r.rolname, '') FROM pg_database d
    CROSS JOIN aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
    LEFT JOIN pg_roles r ON r.oid = a.grantee
    WHERE d.datname = %s AND a.privilege_type = 'CONNECT' ORDER BY 1"""
# The database's ACL as it was before the fence (the fence's record, else the ACL itself), for a
# verification inside the freeze: the fence is ours, not a difference (`d` is pg_database).
ACL_BEFORE_FENCE = """(SELECT CASE WHEN count(*) = 0 THEN d.datacl
    ELSE (max(substr(c, length('migrate.fence_connect=') + 1))::json ->> 'acl')::aclitem[] END
    FROM pg_db_role_setting s, unnest(s.setconfig) c
    WHERE s.setdatabase = d.oid AND s.setrole = 0 AND c LIKE 'migrate.fence\\_connect=%')"""
SETTINGS = """
    SELECT unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
    WHERE d.datname = %s AND s.setrole = 0"""


def apply(conn, dbname: str) -> None:
    """Fence `dbname` (conn: an autocommit session of the tool on it)."""
    db = sql.Identifier(dbname)
    me, superuser = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    with conn.transaction():
        if _mark(conn, dbname) is None:
            found = [r[0] for r in conn.execute(HOLDERS, (dbname,))]  # '' is PUBLIC
            holders = [h for h in found if h != me]
            keep_self = not superuser and me not in found  # it had CONNECT through PUBLIC only
            acl = conn.execute("SELECT datacl::text FROM pg_database WHERE datname = %s", (dbname,)).fetchone()[0]
            record = json.dumps({"connect": holders, "granted_self": keep_self, "acl": acl}, separators=(",", ":"))
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(db, sql.SQL(MARK), sql.Literal(record)))
            if keep_self:  # CONNECT through PUBLIC only: the tool's own sessions must go on
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO CURRENT_USER").format(db))
            for role in holders:
                conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(db, _grantee(role)))
        conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(db))
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                 " AND pid <> pg_backend_pid() AND backend_type = 'client backend'", (dbname,))


def lift(conn, dbname: str) -> None:
    """Undo `apply`: CONNECT back to the roles that had it (those that still exist), then the
    read-only default reset. Nothing to do on a database that is not fenced."""
    db = sql.Identifier(dbname)
    with conn.transaction():
        record = _mark(conn, dbname)
        if record is not None:
            existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")} | {""}
            for role in record["connect"]:
                if role in existing:
                    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, _grantee(role)))
            if record["granted_self"]:
                conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM CURRENT_USER").format(db))
            conn.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(db, sql.SQL(MARK)))
        conn.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(db))


def _mark(conn, dbname: str) -> dict | None:
    for setting in conn.execute(SETTINGS, (dbname,)):
        name, _, value = setting[0].partition("=")
        if name == MARK:
            return json.loads(value)
    return None


def _grantee(role: str):
    return sql.SQL("PUBLIC") if role == "" else sql.Identifier(role)
