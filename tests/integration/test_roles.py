"""Owners and grants on the real lab: a database whose objects belong to several roles and grant
to others is copied by the wave's own steps (stage, create, restore) with a role map; the target's
catalog then shows every owner and ACL mapped, the roles the target lacked exist NOLOGIN without
a password, and the rollback drops exactly the roles the wave created. An unmapped role fails the
plan with one line naming the file and the field."""

from __future__ import annotations

import dataclasses
import json

import psycopg
import pytest
from psycopg import sql

from migrate import commands, config
from migrate.config import Database, DbRef
from migrate.engine import state
from migrate.engine.context import Context
from migrate.engine.events import Bus
from migrate.engine.executor import Executor
from migrate.engine.journal import Journal
from migrate.errors import ConfigError
from migrate.model.layout import journal_path
from migrate.model.plan import WavePlan
from migrate.steps.database import (
    CreateDatabase,
    OpenStaging,
    RestoreDatabase,
    StageDatabase,
)
from migrate.verify import schema
from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration

DB, DB2 = "grants", "grants2"
SOURCE_ROLES = ("grants_app", "grants_auditor")
CREATED = ("grants_owner_t", "grants_auditor")    # what the target lacks: the wave creates them
PRESENT = "grants_app_t"                          # the target has it already: never dropped
ROLES = {"hr_owner": "grants_owner_t", "grants_app": PRESENT, "migrate": "migrate"}

GRANTS_SQL = """
SET ROLE hr_owner;
CREATE SCHEMA hr;
CREATE TYPE hr.kind AS ENUM ('a', 'b');
CREATE TABLE hr.employee (id int PRIMARY KEY, name text, salary numeric, kind hr.kind);
CREATE SEQUENCE hr.ticket;
CREATE VIEW hr.names AS SELECT id, name FROM hr.employee;
CREATE FUNCTION hr.headcount() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM hr.employee';
INSERT INTO hr.employee SELECT g, 'n' || g, g * 10, 'a' FROM generate_series(1, 100) g;
ALTER TABLE hr.employee ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON hr.employee FOR SELECT TO grants_app USING (id > 0);
GRANT USAGE ON SCHEMA hr TO grants_app;
GRANT SELECT ON hr.names TO grants_app WITH GRANT OPTION;
GRANT SELECT (id, name), UPDATE (name) ON hr.employee TO grants_app;
GRANT USAGE ON SEQUENCE hr.ticket TO grants_app;
REVOKE EXECUTE ON FUNCTION hr.headcount() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hr.headcount() TO grants_app;
REVOKE USAGE ON TYPE hr.kind FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA hr GRANT SELECT ON TABLES TO grants_app;
RESET ROLE;
SET ROLE grants_app;
GRANT SELECT ON hr.names TO grants_auditor;  -- granted by someone other than the owner
RESET ROLE;
REVOKE CONNECT, TEMPORARY ON DATABASE grants FROM PUBLIC;
GRANT CONNECT ON DATABASE grants TO grants_app;
CREATE TABLE public.scratch (x int);  -- the source's connecting role owns this one
"""


def admin(side: str, dbname: str = "postgres"):
    return psycopg.connect(lab.dsn(side, dbname), autocommit=True)


def drop_roles(side: str, names) -> None:
    with admin(side) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def grants_db(test_lab):
    with admin("source") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        drop_roles("source", SOURCE_ROLES)
        for name in SOURCE_ROLES:
            conn.execute(f"CREATE ROLE {name} NOLOGIN")
        conn.execute(f"CREATE DATABASE {DB} OWNER hr_owner TEMPLATE template0 ENCODING 'UTF8'")
    with admin("source", DB) as conn:
        conn.execute(GRANTS_SQL)
    yield DB
    with admin("source") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    drop_roles("source", SOURCE_ROLES)


def clean_target() -> None:
    with admin("target") as conn:
        for name in (DB, DB2):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    drop_roles("target", (*CREATED, PRESENT))
    lab.reset()


@pytest.fixture
def target_roles(grants_db):
    """A clean target: no database, the roles the wave must create absent, one mapped role present."""
    clean_target()
    with admin("target") as conn:
        conn.execute(f"CREATE ROLE {PRESENT} NOLOGIN")
    yield
    clean_target()


def inventory(roles: dict[str, str] | None, unmapped: str = "create") -> config.Inventory:
    """The lab inventory with two databases copied from `grants` (the second only created)."""
    inv = config.load(lab.INVENTORY)
    databases = {name: Database(source=DbRef(server="onprem-pg", dbname=DB), target=DbRef(server="cloud-pg", dbname=name),
                                roles=roles, unmapped_roles=unmapped) for name in (DB, DB2)}
    system = inv.spec.systems["personnel"].model_copy(update={"databases": databases})
    return dataclasses.replace(inv, spec=inv.spec.model_copy(update={"systems": {**inv.spec.systems, "personnel": system}}))


def steps():
    return [OpenStaging(lab.BUCKET), StageDatabase("personnel", DB, "onprem-pg", DB),
            StageDatabase("personnel", DB2, "onprem-pg", DB), CreateDatabase("personnel", DB, "cloud-pg", DB),
            CreateDatabase("personnel", DB2, "cloud-pg", DB2),
            RestoreDatabase("personnel", DB, "onprem-pg", DB, "cloud-pg", DB)]


def run(inv: config.Inventory, run_id: str) -> tuple[Journal, Context, WavePlan]:
    """What `migrate run` does with these steps: plan, journal the plan, apply."""
    j = Journal(journal_path(inv.state_dir))
    ctx = commands.context(inv, run_id, "wave-test", journal=j)
    plan = commands.plan_steps(inv, "wave-test", run_id, steps())
    j.append(run_id, "wave-test", "run_started", {"plan": plan.to_json(), "operator": "test"})
    results = Executor(j, commands.live_sink(ctx), Bus()).apply(plan)
    assert [r.status for r in results] == ["done"] * len(plan.steps), results[-1].error
    return j, ctx, plan


def roll_back(j: Journal, ctx: Context, plan: WavePlan) -> None:
    view = state.latest(j.records(wave="wave-test"))
    Executor(j, commands.live_sink(ctx), Bus()).undo(plan, view.pending_undo())


def privileges(side: str, dbname: str) -> list[tuple]:
    with admin(side, dbname) as conn:
        return conn.execute(schema.PRIVILEGES).fetchall()


def one(side: str, dbname: str, query: str):
    with admin(side, dbname) as conn:
        return conn.execute(query).fetchone()[0]


def target_roles_now() -> dict[str, tuple]:
    with admin("target") as conn:
        return {name: (login, password) for name, login, password in conn.execute(
            "SELECT rolname, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
            ([*CREATED, PRESENT],))}


def test_owners_and_grants_arrive_mapped_and_the_rollback_drops_exactly_the_created_roles(target_roles):
    inv = inventory(ROLES)
    j, ctx, plan = run(inv, "run-roles")
    created = [a for s in plan.steps for a in s.actions if a.op == "db.create_roles"]
    assert [sorted(a.args["roles"]) for a in created] == [sorted(CREATED)] * 2, "each create step plans what is missing"

    # The target's catalog: every owner and ACL is the source's, mapped (the verification's own probe).
    source = privileges("source", DB)
    assert {r[2] for r in source} >= {"hr_owner", "migrate"} and any("grants_auditor" in r[3] for r in source)
    assert schema.compare_privileges("personnel/grants", source, privileges("target", DB),
                                     schema.role_map(inv.spec.systems["personnel"].databases[DB])) == []
    assert one("target", DB, "SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()") \
        == "grants_owner_t"
    assert one("target", DB, "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'hr.employee'::regclass") \
        == "grants_owner_t"
    assert one("target", DB, "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'public.scratch'::regclass") \
        == "migrate"
    assert one("target", DB, "SELECT has_column_privilege('grants_app_t', 'hr.employee', 'name', 'UPDATE')"
                             " AND NOT has_column_privilege('grants_app_t', 'hr.employee', 'salary', 'SELECT')"
                             " AND has_database_privilege('grants_app_t', current_database(), 'CONNECT')"
                             " AND NOT has_function_privilege('grants_auditor', 'hr.headcount()', 'EXECUTE')")
    assert one("target", DB, "SELECT polroles::regrole[]::text FROM pg_policy") == "{grants_app_t}"
    assert one("target", DB, "SELECT defaclrole::regrole::text || ' ' || defaclacl::text FROM pg_default_acl") \
        == "grants_owner_t {grants_app_t=r/grants_owner_t}"
    assert one("target", DB, "SELECT relacl::text FROM pg_class WHERE oid = 'hr.names'::regclass") \
        == "{grants_owner_t=arwdDxt/grants_owner_t,grants_app_t=r*/grants_owner_t,grants_auditor=r/grants_app_t}"
    assert lab.table_digests("target", DB) == lab.table_digests("source", DB)
    assert target_roles_now() == {"grants_owner_t": (False, None), "grants_auditor": (False, None),
                                  PRESENT: (False, None)}, "created NOLOGIN, never with a password"

    # Verification names an ACL that no longer matches.
    with admin("target", DB) as conn:
        conn.execute("REVOKE USAGE ON SEQUENCE hr.ticket FROM grants_app_t")
    diffs = schema.compare_privileges("personnel/grants", source, privileges("target", DB),
                                      schema.role_map(inv.spec.systems["personnel"].databases[DB]))
    assert [(d.object, d.problem) for d in diffs] == [("hr.ticket", "grants_differ")]

    journal_text = json.dumps([r.data for r in j.records(run_id="run-roles")])
    secrets = [line.rsplit(":", 1)[1] for line in (lab.LAB_DIR / "secrets" / "pgpass").read_text().splitlines() if line]
    assert secrets and not any(secret in journal_text for secret in secrets)
    roll_back(j, ctx, plan)
    assert not {DB, DB2} & lab.databases("target")
    assert target_roles_now() == {PRESENT: (False, None)}, "exactly the roles the wave created are gone"


def test_an_unmapped_role_fails_the_plan_naming_the_file_and_the_field(target_roles):
    inv = inventory({"hr_owner": "grants_owner_t"}, unmapped="fail")
    with pytest.raises(ConfigError) as err:
        commands.plan_steps(inv, "wave-test", "run-unmapped", [CreateDatabase("personnel", DB, "cloud-pg", DB)])
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{inv.path / config.SPEC_FILE}: ")
    assert "systems.personnel.databases.grants.roles: source role(s) grants_app, grants_auditor, migrate" in message
    assert "unmapped_roles: create" in message
    assert target_roles_now() == {PRESENT: (False, None)}, "planning changes nothing"


def test_without_a_role_map_the_copy_keeps_todays_behaviour(target_roles):
    """No `roles` in the spec: nothing is created, the connecting role owns everything, no grants
    (a policy still names its roles as they are, so those must exist on the target, as before)."""
    drop_roles("target", ["grants_app"])
    with admin("target") as conn:
        conn.execute("CREATE ROLE grants_app NOLOGIN")
    try:
        inv = inventory(None)
        j, ctx, plan = run(inv, "run-noroles")
        assert not [a for s in plan.steps for a in s.actions if a.op == "db.create_roles"]
        assert one("target", DB, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                 " WHERE n.nspname = 'hr' AND (c.relowner <> 'migrate'::regrole OR c.relacl IS NOT NULL)") == 0
        assert target_roles_now() == {PRESENT: (False, None)}
        roll_back(j, ctx, plan)
    finally:
        with admin("target") as conn:
            for name in (DB, DB2):
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        drop_roles("target", ["grants_app"])
