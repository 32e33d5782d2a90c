"""The warm phase: one database kept in sync source -> target while the source stays live.

    source: publication (every table) ---- slot created with an exported snapshot
                                             |  the copy engine reads that snapshot
    target: pre-data, data, post-data -------+  subscription bound to the slot
                                                (copy_data = false, create_slot = false)

The slot is created before any row is read, and its snapshot is the copy's: every change
committed after the slot's consistent point reaches the target through the subscription, every
change before it is in the copy. No gap, no overlap. The subscription is created only once
every row of the snapshot is loaded, so an UPDATE never arrives before the row it changes.

The cutover fences every writer of the source (new transactions read-only, every client
session ended), takes the fenced WAL position, and waits until the target has confirmed it
(the slot's `confirmed_flush_lsn`, which only the subscriber advances), then carries the
sequences and drops the subscription and its slot. Every function here is idempotent: the
executor may run one twice after a crash. The protocol lives here; connections come from
`adapters.db`.
"""

from __future__ import annotations

import re
import time

import psycopg
from psycopg import sql

from migrate.adapters import db
from migrate.config import Inventory
from migrate.errors import StepFailed
from migrate.transfer import catalog
from migrate.transfer import fence as fences

PREFIX = "migrate_sync_"
POLL_SECONDS = 0.1
OWN_SUBSCRIPTION = ("SELECT s.oid FROM pg_subscription s WHERE s.subname = %s"
                    " AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")


def name_for(source_db: str) -> str:
    """The publication, slot and subscription of one source database share this name."""
    return (PREFIX + re.sub(r"[^a-z0-9_]", "_", source_db.lower()))[:63]


def _writable(conn) -> None:
    # Our own session stays writable on a fenced database (ALTER DATABASE ... would fail in a
    # read-only transaction otherwise); nothing else's does.
    conn.execute("SET default_transaction_read_only = off")


def _connect(inv: Inventory, server: str, dbname: str):
    conn = db.connect(inv, server, dbname, autocommit=True)
    _writable(conn)
    return conn


def _run(conn, what: str, statement, params=None):
    try:
        return conn.execute(statement, params)
    except psycopg.Error as exc:
        # The first line only: a libpq message may quote the connection string.
        raise StepFailed(f"{what}: {type(exc).__name__}: {(str(exc).splitlines() or ['?'])[0][:200]}") from None


# --- the source: publication, replica identity, slot ---------------------------------------

def tables_without_key(conn) -> list[tuple[str, str]]:
    """Tables whose UPDATE and DELETE cannot be published as they are (no primary key, default
    replica identity)."""
    return conn.execute("""
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND c.relreplident = 'd' AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
          AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
        ORDER BY 1, 2""").fetchall()


def large_objects(inv: Inventory, server: str, dbname: str) -> int:
    with db.connect(inv, server, dbname) as conn:
        return conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]


def prepare_source(inv: Inventory, *, server: str, dbname: str, replica_identity_full: list[str]) -> dict:
    """A publication of every table; REPLICA IDENTITY FULL on the planned tables without a key
    (the undo sets exactly those back). A table without a key the plan did not know fails."""
    name = name_for(dbname)
    with _connect(inv, server, dbname) as conn:
        full = tables_without_key(conn)
        new = sorted({f"{s}.{t}" for s, t in full} - set(replica_identity_full))
        if new:
            raise StepFailed(f"{server}/{dbname}: table(s) without a primary key appeared since the plan"
                             f" ({', '.join(new[:5])}); roll back and sync again")
        for schema, table in full:
            _run(conn, f"{server}/{dbname}: replica identity of {schema}.{table}", sql.SQL(
                "ALTER TABLE {}.{} REPLICA IDENTITY FULL").format(sql.Identifier(schema), sql.Identifier(table)))
        if not conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone():
            _run(conn, f"{server}/{dbname}: publication {name}",
                 sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(sql.Identifier(name)))
    return {"publication": name, "replica_identity_full": [f"{s}.{t}" for s, t in full]}


def restore_source(inv: Inventory, *, server: str, dbname: str, replica_identity_full: list[str] = ()) -> dict:
    """Undo of `prepare_source` and of everything the sync left on the source: its slot (after
    ending the session that streams from it), its publication, the replica identities it set."""
    name = name_for(dbname)
    if not db.database_exists(inv, server, dbname):
        return {"source": "gone"}
    dropped = drop_slot(inv, server=server, dbname=dbname)
    with _connect(inv, server, dbname) as conn:
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
        reset = 0
        for qualified in replica_identity_full:
            schema, table = qualified.split(".", 1)
            row = conn.execute("SELECT c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                               " WHERE n.nspname = %s AND c.relname = %s", (schema, table)).fetchone()
            if row and row[0] == "f":
                conn.execute(sql.SQL("ALTER TABLE {}.{} REPLICA IDENTITY DEFAULT").format(
                    sql.Identifier(schema), sql.Identifier(table)))
                reset += 1
    return {"publication_dropped": name, "slot_dropped": dropped, "replica_identity_reset": reset}


def slot(conn, name: str) -> dict | None:
    row = conn.execute("""
        SELECT active, confirmed_flush_lsn::text, restart_lsn::text,
               pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
               pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, pg_current_wal_lsn()::text
        FROM pg_replication_slots WHERE slot_name = %s""", (name,)).fetchone()
    if row is None:
        return None
    keys = ("active", "confirmed_lsn", "restart_lsn", "retained_wal_bytes", "lag_bytes", "source_lsn")
    return dict(zip(keys, row))


def slot_at(conn, name: str, lsn: str) -> bool:
    """Slot `name` exists and has not moved from `lsn`."""
    return conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND confirmed_flush_lsn = %s::pg_lsn",
                        (name, lsn)).fetchone() is not None


def drop_slot(inv: Inventory, *, server: str, dbname: str) -> bool:
    name = name_for(dbname)
    with db.connect(inv, server, "postgres", autocommit=True) as conn:
        for _ in range(50):
            row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone()
            if row is None:
                return False
            if row[0] is not None:  # a walsender still streams from it (a subscription whose drop failed)
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                time.sleep(POLL_SECONDS)
                continue
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                return True
            except psycopg.errors.ObjectInUse:
                time.sleep(POLL_SECONDS)
    raise StepFailed(f"{server}: replication slot {name} stays in use; it keeps WAL on the source: run the"
                     " rollback again")


def our_slots(inv: Inventory, server: str) -> list[dict]:
    """Every slot of ours on a server (any database), with what it costs the source."""
    with db.connect(inv, server, "postgres") as conn:
        rows = conn.execute("""
            SELECT slot_name, database, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
            FROM pg_replication_slots WHERE slot_name LIKE 'migrate\\_%%' ORDER BY 1""").fetchall()
    return [{"slot": s, "database": d, "active": a, "retained_wal_bytes": w} for s, d, a, w in rows]


# --- the target: subscription -----------------------------------------------------------------

def subscribed(inv: Inventory, *, target: str, target_db: str, source_db: str) -> bool:
    if not db.database_exists(inv, target, target_db):
        return False
    with db.connect(inv, target, target_db) as conn:
        return conn.execute(OWN_SUBSCRIPTION, (name_for(source_db),)).fetchone() is not None


def follow(inv: Inventory, *, source: str, source_db: str, target: str, target_db: str) -> dict:
    """The subscription on the target, bound to the slot made at the copy's snapshot."""
    name = name_for(source_db)
    info = db.subscription_conninfo(inv, to=source, dbname=source_db, on=target, name=name)
    with _connect(inv, target, target_db) as conn:
        if not conn.execute(OWN_SUBSCRIPTION, (name,)).fetchone():
            _run(conn, f"subscription {name} on {target}/{target_db}", sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (create_slot = false, slot_name = {},"
                " copy_data = false)").format(sql.Identifier(name), sql.Literal(info), sql.Identifier(name),
                                              sql.Literal(name)))
    return {"subscription": name}


def unfollow(inv: Inventory, *, target: str, target_db: str, source_db: str) -> bool:
    """Drop the subscription, leaving its slot to `drop_slot` (the source may be unreachable:
    the subscription goes anyway, and the slot is dropped on the source by name)."""
    name = name_for(source_db)
    if not db.database_exists(inv, target, target_db):
        return False
    with _connect(inv, target, target_db) as conn:
        if not conn.execute(OWN_SUBSCRIPTION, (name,)).fetchone():
            return False
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
        conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    return True


def progress(inv: Inventory, *, source: str, source_db: str, target: str, target_db: str) -> dict:
    """Where the sync of one database stands, read from both sides (positions, counts, no values)."""
    name = name_for(source_db)
    with db.connect(inv, source, source_db) as conn:
        found = slot(conn, name)
        lag = conn.execute("SELECT extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication"
                           " WHERE application_name = %s", (name,)).fetchone()
    result = {"slot": name, "slot_state": found, "lag_seconds": (lag[0] or 0.0) if lag else None,
              "subscription": None}
    if db.database_exists(inv, target, target_db):
        with db.connect(inv, target, target_db) as conn:
            row = conn.execute("""
                SELECT s.subenabled, st.received_lsn::text, st.latest_end_lsn::text,
                       extract(epoch FROM now() - st.latest_end_time)::float8, o.remote_lsn::text
                FROM pg_subscription s
                LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
                LEFT JOIN pg_replication_origin_status o ON o.external_id = 'pg_' || s.oid
                WHERE s.subname = %s""", (name,)).fetchone()
        if row:
            result["subscription"] = dict(zip(("enabled", "received_lsn", "reported_lsn", "reported_ago_seconds",
                                               "applied_lsn"), row))
    result["state"] = _state(result)
    return result


def _state(found: dict) -> str:
    if found["slot_state"] is None:
        return "no slot"
    if found["subscription"] is None:
        return "copying"
    lag = found["slot_state"]["lag_bytes"] or 0
    return "caught up" if lag <= 0 else "streaming"


# --- the cutover: fence, wait, sequences, schema ---------------------------------------------

def fence(inv: Inventory, *, server: str, dbname: str) -> str:
    """No new write on the source database, whoever the writer (see `transfer.fence`). Returns the
    fenced WAL position."""
    with _connect(inv, server, dbname) as conn:
        fences.apply(conn, dbname)
        return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def unfence(inv: Inventory, *, server: str, dbname: str) -> dict:
    if not db.database_exists(inv, server, dbname):
        return {"unfenced": None}
    with _connect(inv, server, dbname) as conn:
        fences.lift(conn, dbname)
    return {"unfenced": f"{server}/{dbname}"}


def wait_applied(inv: Inventory, *, server: str, dbname: str, lsn: str, timeout: float) -> dict:
    """Until the target has confirmed `lsn` (the slot's confirmed position, which only the
    subscriber moves). Never judged from a process's exit: a late or lost change fails here."""
    name = name_for(dbname)
    started = time.monotonic()
    with db.connect(inv, server, dbname, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn, confirmed_flush_lsn::text,"
                               " pg_wal_lsn_diff(%s::pg_lsn, confirmed_flush_lsn)::bigint"
                               " FROM pg_replication_slots WHERE slot_name = %s", (lsn, lsn, name)).fetchone()
            if row is None:
                raise StepFailed(f"{server}/{dbname}: replication slot {name} is gone before the target confirmed"
                                 f" {lsn}; roll back (the source holds every write)")
            if row[0]:
                return {"fenced_lsn": lsn, "confirmed_lsn": row[1], "seconds": round(time.monotonic() - started, 3)}
            if time.monotonic() - started > timeout:
                raise StepFailed(f"{server}/{dbname}: the target has not confirmed {row[2]} bytes up to the fenced"
                                 f" position {lsn} after {timeout:.0f}s; the source stays fenced: run again to"
                                 " wait more, or roll back")
            time.sleep(POLL_SECONDS)


def carry_sequences(inv: Inventory, *, source: str, source_db: str, target: str, target_db: str) -> int:
    """Logical replication does not carry sequences: the target takes the fenced source's values."""
    with db.connect(inv, source, source_db) as conn:
        sequences = catalog.read_sequences(conn)
    with _connect(inv, target, target_db) as conn:
        for schema, seq, last, called in sequences:
            qualified = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(seq)).as_string(conn)
            conn.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)", (qualified, last, called))
    return len(sequences)


SHAPE_SQL = """
SELECT 'table ' || n.nspname || '.' || c.relname,
       md5(coalesce(string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull,
                               ', ' ORDER BY a.attnum), ''))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'migrate_ledger') AND n.nspname NOT LIKE 'pg\\_%%'
 GROUP BY 1
UNION ALL
SELECT 'index ' || n.nspname || '.' || c.relname, md5(pg_get_indexdef(i.indexrelid))
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'migrate_ledger') AND n.nspname NOT LIKE 'pg\\_%%'
UNION ALL
SELECT 'constraint ' || n.nspname || '.' || r.relname || '.' || k.conname, md5(pg_get_constraintdef(k.oid))
  FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'migrate_ledger') AND n.nspname NOT LIKE 'pg\\_%%'
UNION ALL
SELECT 'trigger ' || n.nspname || '.' || r.relname || '.' || t.tgname, md5(pg_get_triggerdef(t.oid))
  FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE NOT t.tgisinternal AND n.nspname NOT LIKE 'pg\\_%%'
"""


def shape(conn) -> dict[str, str]:
    """The objects a change stream depends on, each with a digest of its definition."""
    return dict(conn.execute(SHAPE_SQL).fetchall())


def schema_changes(inv: Inventory, *, source: str, source_db: str, target: str, target_db: str) -> list[str]:
    """Objects whose definition differs between source and target: DDL on the source since the
    sync began (logical replication does not carry DDL). Names only, sorted."""
    with db.connect(inv, source, source_db) as conn:
        before = shape(conn)
    with db.connect(inv, target, target_db) as conn:
        after = shape(conn)
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
