"""The touch log on a warm wave's target: which verification keys were written, by which
transaction, since it was installed.

    migrate_touch.keys (tbl, k, xid)    one row per key written (k NULL: the whole table, TRUNCATE)
    migrate_touch.tables (tbl, key_sql) the key expression each table's trigger computes

Each user table gets an AFTER row trigger and an AFTER TRUNCATE trigger, both named
`migrate_touch_*` and ENABLE ALWAYS, so they fire for the subscription's apply worker
(session_replication_role = replica) as for any direct write. The trigger function is SECURITY
DEFINER (a writer without rights on our schema must not start failing) with a pinned
search_path, and, for a hashed key, the text settings the verification pins, so that the hash
of a key is the one verification computes.

The incremental verification does not need it (see `segments`: xmin and counts tell each side's
changes exactly); when a baseline found it installed, its keys are one more reason to recompute
a segment. Installing and removing are idempotent. It must be gone before the way back starts:
that publication is FOR ALL TABLES on the target.
"""

from __future__ import annotations

import hashlib

from psycopg import sql

from migrate.adapters import db
from migrate.config import Inventory
from migrate.transfer import catalog
from migrate.verify import rows
from migrate.verify.probes import SESSION_SETTINGS, Session
from migrate.verify.segments import Grid

SCHEMA = "migrate_touch"
ROW_TRIGGER, TRUNCATE_TRIGGER = "migrate_touch_row", "migrate_touch_truncate"
TRIGGERS = (ROW_TRIGGER, TRUNCATE_TRIGGER)
# What a schema fingerprint leaves out so that the touch log is invisible to it (pg_namespace n,
# pg_trigger t): the same text is used by verify.schema.
SCHEMA_FILTER = "n.nspname <> 'migrate_touch'"
TRIGGER_FILTER = "t.tgname NOT LIKE 'migrate\\_touch%'"
SKIPPED_SCHEMAS = (SCHEMA, "migrate_ledger")
TEXT_SETTINGS = ("TimeZone", "DateStyle", "IntervalStyle", "extra_float_digits", "bytea_output", "lc_monetary")

SETUP = (
    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)),
    sql.SQL("CREATE TABLE IF NOT EXISTS {}.keys (tbl text NOT NULL, k bigint,"
            " xid xid8 NOT NULL DEFAULT pg_current_xact_id())").format(sql.Identifier(SCHEMA)),
    sql.SQL("CREATE TABLE IF NOT EXISTS {}.tables (tbl text PRIMARY KEY, key_sql text NOT NULL)").format(
        sql.Identifier(SCHEMA)),
)


def key_sql(s: rows.Shape) -> str:
    """The key expression as text: what a baseline and a freeze compare to know the trigger's
    keys are verification's."""
    return s.key_expression().as_string(None)


def function_name(table: str) -> str:
    return "touch_" + hashlib.sha256(table.encode()).hexdigest()[:24]


def record_key(s: rows.Shape, record: str) -> sql.Composable:
    """The key expression over a trigger's OLD or NEW."""
    rec = sql.SQL(record)
    if s.integer_key:
        return sql.SQL("{}.{}").format(rec, sql.Identifier(s.facts.key[0]))
    cols = sql.SQL(", ").join(sql.SQL("{}.{}").format(rec, sql.Identifier(c)) for c in (s.facts.key or s.columns))
    return sql.SQL("(hashtextextended(ROW({})::text, 0) & {})").format(cols, sql.Literal(rows.HASH_BUCKETS - 1))


def function_sql(s: rows.Shape) -> sql.Composable:
    table = sql.Literal(s.facts.qualified)
    settings = [] if s.integer_key else [
        sql.SQL(" SET {} TO {}").format(sql.Identifier(name), sql.Literal(value))
        for name, value in SESSION_SETTINGS if name in TEXT_SETTINGS]
    body = sql.SQL(
        "DECLARE o bigint; n bigint; BEGIN"
        " IF TG_OP = 'TRUNCATE' THEN INSERT INTO {keys} (tbl) VALUES ({table}); RETURN NULL; END IF;"
        " IF TG_OP <> 'INSERT' THEN o := {old}; INSERT INTO {keys} (tbl, k) VALUES ({table}, o); END IF;"
        " IF TG_OP <> 'DELETE' THEN n := {new};"
        " IF o IS DISTINCT FROM n THEN INSERT INTO {keys} (tbl, k) VALUES ({table}, n); END IF; END IF;"
        " RETURN NULL; END").format(keys=sql.Identifier(SCHEMA, "keys"), table=table,
                                    old=record_key(s, "OLD"), new=record_key(s, "NEW"))
    return sql.SQL("CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
                   " SET search_path TO pg_catalog, pg_temp{settings} AS {body}").format(
        f=sql.Identifier(SCHEMA, function_name(s.facts.qualified)), settings=sql.SQL("").join(settings),
        body=sql.Literal(body.as_string(None)))


def trigger_sql(s: rows.Shape) -> list[sql.Composable]:
    fn, t = sql.Identifier(SCHEMA, function_name(s.facts.qualified)), s.table
    return [
        *(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(name), t) for name in TRIGGERS),
        sql.SQL("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier(ROW_TRIGGER), t, fn),
        sql.SQL("CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
            sql.Identifier(TRUNCATE_TRIGGER), t, fn),
        *(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(t, sql.Identifier(name)) for name in TRIGGERS),
        sql.SQL("INSERT INTO {} (tbl, key_sql) VALUES ({}, {}) ON CONFLICT (tbl) DO UPDATE SET key_sql ="
                " excluded.key_sql").format(sql.Identifier(SCHEMA, "tables"), sql.Literal(s.facts.qualified),
                                            sql.Literal(key_sql(s))),
    ]


def _tables(conn) -> list[catalog.Table]:
    return [t for t in catalog.read_tables(conn) if t.schema not in SKIPPED_SCHEMAS and not t.extension]


def install_touch_log(inv: Inventory, server: str, dbname: str) -> dict:
    """The touch log and its triggers on every user table of the target (again: replaced)."""
    with db.connect(inv, server, dbname, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        for statement in SETUP:
            conn.execute(statement)
        tables = _tables(conn)
        for t in tables:
            s = rows.shape(t, t)
            with conn.transaction():  # a table is covered by both triggers or by none
                conn.execute(function_sql(s))
                for statement in trigger_sql(s):
                    conn.execute(statement)
    return {"touch_log": f"{server}/{dbname}", "tables": len(tables)}


def remove_touch_log(inv: Inventory, server: str, dbname: str) -> dict:
    """The schema, its functions and with them every trigger of ours."""
    if not db.database_exists(inv, server, dbname):
        return {"removed": False}
    with db.connect(inv, server, dbname, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        present = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)).fetchone() is not None
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    return {"removed": present}


# --- read inside a verification's target session ---------------------------------------------

STATE_SQL = """
SELECT (SELECT key_sql FROM migrate_touch.tables WHERE tbl = %(table)s),
       (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = to_regclass(%(qualified)s)
          AND t.tgname IN ('migrate_touch_row', 'migrate_touch_truncate') AND t.tgenabled = 'A')
"""


def installed(session: Session) -> bool:
    return session.rows("SELECT to_regclass('migrate_touch.keys') IS NOT NULL")[0][0]


def problem(session: Session, s: rows.Shape) -> str | None:
    """Why the touch log cannot be trusted for a table right now, or None."""
    qualified = s.table.as_string(None)
    found, always = session.rows(STATE_SQL, {"table": s.facts.qualified, "qualified": qualified})[0]
    if found is None:
        return "table not in the touch log"
    if found != key_sql(s):
        return "touch log keys computed otherwise"
    return None if always == len(TRIGGERS) else "touch trigger missing or not ENABLE ALWAYS"


def touched_query(g: Grid) -> sql.Composable:
    """Segments of keys written by transactions the snapshot did not see; NULL: the whole table."""
    return sql.SQL(
        "SELECT DISTINCT CASE WHEN k < {lo} THEN -1 WHEN k > {hi} THEN {size} ELSE (k - {lo}) / {w} END"
        " FROM migrate_touch.keys WHERE tbl = %(table)s AND NOT pg_visible_in_snapshot(xid, %(snapshot)s::pg_snapshot)"
    ).format(lo=sql.Literal(g.lo), hi=sql.Literal(g.hi), size=sql.Literal(g.size), w=sql.Literal(g.width))


def touched(session: Session, s: rows.Shape, g: Grid, snapshot: str) -> tuple[set[int], bool]:
    """(segments touched since the snapshot, whether the whole table was: a TRUNCATE)."""
    found = {r[0] for r in session.rows(touched_query(g), {"table": s.facts.qualified, "snapshot": snapshot})}
    return {seg for seg in found if seg is not None}, None in found
