"""What the lab's two clusters hold, put back: template copies of the seeded source databases,
and the clusters cleared of what a cutover leaves (replication, the target's databases and
roles)."""

from __future__ import annotations

import time

from migrate.lab.errors import LabError
from migrate.lab.layout import DATABASES, PG_ROLE, LabPaths, dsn
from migrate.lab.postgres import admin
from migrate.lab.processes import STOP_TIMEOUT

# Source databases are copied to these templates right after a seed; `reset` recreates the
# source from them in a fraction of the time a reseed takes.
TEMPLATE_PREFIX = "lab_seed_"


def _copy_database(conn, name: str, template: str) -> None:
    """CREATE DATABASE name as a copy of template, with the template's owner and settings.

    CREATE DATABASE copies the contents only: the per-database settings (the source's
    Europe/Rome time zone) live in a shared catalog and are copied here by hand.
    """
    import psycopg
    from psycopg import sql

    owner, oid = conn.execute("SELECT pg_get_userbyid(datdba), oid FROM pg_database "
                              "WHERE datname = %s", (template,)).fetchone()
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
        sql.Identifier(name), sql.Identifier(template), sql.Identifier(owner))
    for attempt in range(10):
        try:
            conn.execute(statement)
            break
        except psycopg.errors.ObjectInUse:  # a client of the template is just leaving
            if attempt == 9:
                raise
            time.sleep(0.2)
    settings = conn.execute("SELECT unnest(setconfig) FROM pg_db_role_setting "
                            "WHERE setdatabase = %s AND setrole = 0", (oid,)).fetchall()
    for (setting,) in settings:
        key, _, value = setting.partition("=")
        conn.execute(sql.SQL("ALTER DATABASE {} SET {} TO {}").format(
            sql.Identifier(name), sql.Identifier(key), sql.Literal(value)))


def _drop_template(conn, name: str) -> None:
    from psycopg import sql

    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def make_source_templates(paths: LabPaths, port: int) -> None:
    from psycopg import sql

    with admin(paths, port) as conn:
        for db in DATABASES:
            template = TEMPLATE_PREFIX + db
            _drop_template(conn, template)
            _copy_database(conn, template, db)
            # Nobody may connect (so it can always be copied) and no tool lists it as data.
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS "
                                 "false").format(sql.Identifier(template)))


def restore_source(paths: LabPaths, port: int) -> None:
    from psycopg import sql

    with admin(paths, port) as conn:
        for db in DATABASES:
            template = TEMPLATE_PREFIX + db
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (template,)).fetchone():
                raise LabError(f"template {template} is missing; run `migrate lab seed`")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(db)))
            _copy_database(conn, db, template)


def drop_replication(paths: LabPaths, ports: list[int]) -> None:
    """Drop every subscription, then every replication slot, on the given clusters.

    A subscription or a slot makes DROP DATABASE fail, even WITH (FORCE). A subscription is
    detached from its remote slot first (disable, slot_name = NONE): the remote end may be
    gone, and its slot is dropped on its own cluster below.
    """
    from psycopg import sql

    for port in ports:
        with admin(paths, port) as conn:
            subscriptions = conn.execute(
                "SELECT d.datname, s.subname, d.datallowconn FROM pg_subscription s "
                "JOIN pg_database d ON d.oid = s.subdbid ORDER BY 1, 2").fetchall()
            for db in {db for db, _, allowed in subscriptions if not allowed}:
                # Closed to connections (a freeze may do that): the database is about to be
                # dropped or recreated anyway.
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(db)))
        for db, name, _ in subscriptions:
            with admin(paths, port, db) as conn:
                ident = sql.Identifier(name)
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    for port in ports:
        with admin(paths, port) as conn:
            for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
                _drop_slot(conn, slot)


def _drop_slot(conn, slot: str) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                           (slot,)).fetchone()
        if row is None:
            return
        if row[0] is None:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        if time.monotonic() > deadline:
            raise LabError(f"replication slot {slot} stays in use")
        # The walsender of a subscriber that is still connected (or reconnecting).
        conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        time.sleep(0.1)


def reset_target_cluster(paths: LabPaths, port: int) -> None:
    import psycopg

    try:
        _drop_target_objects(psycopg.connect(dsn(paths, port, "postgres"), autocommit=True))
    except psycopg.Error as exc:
        raise LabError(f"could not reset the target cluster: {exc}") from None


def _drop_target_objects(conn) -> None:
    with conn:
        # Every database: the initial target has none of its own (tests create others too).
        # FORCE: a forgotten session from an earlier migration run must not block reseed.
        for (db,) in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate"
                                  " AND datname <> 'postgres'").fetchall():
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        # Roles a migration carried over (hr_owner, ...): the initial target has only
        # postgres and migrate.
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname NOT IN ('postgres', %s) "
            "AND rolname NOT LIKE 'pg\\_%%'", (PG_ROLE,)).fetchall()
        for (role,) in rows:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
