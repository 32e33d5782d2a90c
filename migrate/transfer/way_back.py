"""The way back after cutover: PostgreSQL logical replication from the target to the source.

Set up while the source is frozen and the target is verified equal to it, before the target
opens for writes: a publication of every table on the target, a subscription on the source
without an initial copy. Every write made on the target from then on reaches the source.

Stopping it is the rollback's job, and it must lose nothing: the target is fenced (see
`transfer.fence`), the subscription is waited for until it has confirmed the target's last WAL
position, sequences are carried back (logical replication does
not carry them), and only then are the subscription, its slot and the publication dropped.
Every function here is idempotent: the executor may run an undo twice after a crash. The
protocol lives here; connections come from `adapters.db`.
"""

from __future__ import annotations

import re
import time

import psycopg
from psycopg import sql

from migrate.adapters import db
from migrate.config import Inventory
from migrate.errors import StepFailed
from migrate.transfer import fence as fences

POLL_SECONDS = 0.2
# pg_subscription is shared by the whole cluster; names are unique per database only.
OWN_SUBSCRIPTION = ("SELECT 1 FROM pg_subscription WHERE subname = %s"
                    " AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")


def name_for(dbname: str) -> str:
    return ("migrate_back_" + re.sub(r"[^a-z0-9_]", "_", dbname.lower()))[:63]


def start(inv: Inventory, *, source: str, source_db: str, target: str, target_db: str) -> dict:
    name = name_for(target_db)
    with _session(inv, target, target_db) as conn:
        full = _tables_without_identity(conn)
        for schema, table in full:
            # Without a key, UPDATE and DELETE cannot be published: the whole row identifies it.
            conn.execute(sql.SQL("ALTER TABLE {}.{} REPLICA IDENTITY FULL").format(
                sql.Identifier(schema), sql.Identifier(table)))
        if not _exists(conn, "SELECT 1 FROM pg_publication WHERE pubname = %s", name):
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(sql.Identifier(name)))
    info = db.subscription_conninfo(inv, to=target, dbname=target_db, on=source, name="migrate-way-back")
    with _session(inv, source, source_db) as conn:
        if not _exists(conn, OWN_SUBSCRIPTION, name):
            _run(conn, f"subscription {name} on {source}/{source_db}", sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = false)").format(
                sql.Identifier(name), sql.Literal(info), sql.Identifier(name)))
    return {"publication": name, "subscription": name, "replica_identity_full": len(full)}


def stop(inv: Inventory, *, source: str, source_db: str, target: str, target_db: str,
         timeout: float = 300.0) -> dict:
    name = name_for(target_db)
    result = {"subscription": name, "caught_up": None, "sequences": 0}
    if db.database_exists(inv, target, target_db):
        with _session(inv, target, target_db) as conn:
            if _slot_exists(conn, name):
                fences.apply(conn, target_db)
                result["caught_up"] = _wait_caught_up(conn, name, timeout, f"{target}/{target_db}")
            sequences = _sequences(conn)
        with _session(inv, source, source_db) as conn:
            result["sequences"] = _carry_sequences(conn, sequences)
    _drop_replication(inv, source, source_db, target, target_db, unfence=True)
    return result


def end(inv: Inventory, *, source: str, source_db: str, target: str, target_db: str) -> dict:
    """Finalize: the way back is no longer wanted. Its subscription, slot and publication are
    dropped; the target, now the live system, is not fenced and keeps every write."""
    _drop_replication(inv, source, source_db, target, target_db, unfence=False)
    return {"subscription": name_for(target_db), "ended": True}


def _drop_replication(inv: Inventory, source: str, source_db: str, target: str, target_db: str, *,
                      unfence: bool) -> None:
    """The subscription on the source, then the slot and publication on the target (each only if
    still there: safe to run again after a kill); `unfence`: lift the target's read-only default."""
    name = name_for(target_db)
    with _session(inv, source, source_db) as conn:
        _drop_subscription(conn, name)
    if db.database_exists(inv, target, target_db):
        with _session(inv, target, target_db) as conn:
            _drop_slot(conn, name)
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
            if unfence:
                fences.lift(conn, target_db)


def _session(inv: Inventory, server: str, dbname: str):
    """Our own session stays writable on a fenced database (the fence is the database's default:
    ALTER DATABASE again, CREATE SUBSCRIPTION, DROP ... would fail in a read-only transaction);
    nobody else's is."""
    conn = db.connect(inv, server, dbname, autocommit=True)
    conn.execute("SET default_transaction_read_only = off")
    return conn


def _run(conn, what: str, statement) -> None:
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        # The first line only: a libpq message may quote the connection string.
        raise StepFailed(f"{what}: {type(exc).__name__}: {(str(exc).splitlines() or ['?'])[0][:200]}") from None


def _exists(conn, query: str, *params) -> bool:
    return conn.execute(query, params).fetchone() is not None


def _slot_exists(conn, name: str) -> bool:
    return _exists(conn, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", name)


def _tables_without_identity(conn) -> list[tuple[str, str]]:
    return conn.execute("""
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND c.relreplident = 'd'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
          AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
        ORDER BY 1, 2""").fetchall()


def _wait_caught_up(conn, name: str, timeout: float, where: str) -> str:
    goal = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn, confirmed_flush_lsn::text,"
                           " pg_wal_lsn_diff(%s::pg_lsn, confirmed_flush_lsn)::bigint"
                           " FROM pg_replication_slots WHERE slot_name = %s", (goal, goal, name)).fetchone()
        if row is None or row[0]:
            return goal
        if time.monotonic() > deadline:
            # Never drop a subscription that has not delivered everything: the writes would be lost.
            raise StepFailed(f"way back from {where}: the source has not confirmed {row[2]} bytes of the target's"
                             f" changes after {timeout:.0f}s; the subscription is kept (is the source up?);"
                             f" run the rollback again")
        time.sleep(POLL_SECONDS)


def _sequences(conn) -> list[tuple[str, str, int]]:
    return conn.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences"
                        " WHERE last_value IS NOT NULL ORDER BY 1, 2").fetchall()


def _carry_sequences(conn, sequences: list[tuple[str, str, int]]) -> int:
    """Each source sequence moves up to the target's value, never down."""
    moved = 0
    for schema, seq, value in sequences:
        row = conn.execute("SELECT last_value FROM pg_sequences WHERE schemaname = %s AND sequencename = %s",
                           (schema, seq)).fetchone()
        if row is not None and (row[0] is None or row[0] < value):
            conn.execute("SELECT setval(%s::regclass, %s, true)", (sql.Identifier(schema, seq).as_string(conn), value))
            moved += 1
    return moved


def _drop_subscription(conn, name: str) -> None:
    if not _exists(conn, OWN_SUBSCRIPTION, name):
        return
    ident = sql.Identifier(name)
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
    # Detach from the remote slot: DROP then never needs the target (it may be gone); the slot
    # is dropped on the target by the caller.
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
    conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))


def _drop_slot(conn, name: str, attempts: int = 50) -> None:
    # The walsender of a just-disabled subscription lets go of its slot a moment later.
    for _ in range(attempts):
        if not _slot_exists(conn, name):
            return
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(POLL_SECONDS)
    raise StepFailed(f"replication slot {name} stays in use; drop it with pg_drop_replication_slot")
