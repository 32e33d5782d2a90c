"""Owners and grants mapped to the target's roles, on canned pg_restore output (PostgreSQL 15):
no lab needed."""

from __future__ import annotations

import json

import pytest

from migrate.errors import StepFailed
from migrate.transfer import postdata, roles
from migrate.transfer.roles import RoleMap
from migrate.verify import schema

PRE_DATA = '''--
-- Name: personale; Type: DATABASE; Schema: -; Owner: hr_owner
--

CREATE DATABASE personale WITH TEMPLATE = template0 ENCODING = 'UTF8';


ALTER DATABASE personale OWNER TO hr_owner;

\\connect personale

SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: s; Type: SCHEMA; Schema: -; Owner: hr_owner
--

CREATE SCHEMA s;


ALTER SCHEMA s OWNER TO hr_owner;

--
-- Name: f(integer); Type: FUNCTION; Schema: s; Owner: hr_owner
--

CREATE FUNCTION s.f(integer) RETURNS integer
    LANGUAGE plpgsql
    AS $_$BEGIN
ALTER TABLE x OWNER TO someone_else;
RETURN $1; END$_$;


ALTER FUNCTION s.f(integer) OWNER TO hr_owner;

--
-- Name: T x; Type: TABLE; Schema: s; Owner: Old "Owner"
--

CREATE TABLE s."T x" (
    id integer NOT NULL
);


ALTER TABLE s."T x" OWNER TO "Old ""Owner""";

--
-- Name: DATABASE personale; Type: ACL; Schema: -; Owner: hr_owner
--

REVOKE CONNECT,TEMPORARY ON DATABASE personale FROM PUBLIC;
GRANT CONNECT ON DATABASE personale TO app_reader;

--
-- Name: TABLE "T x"; Type: ACL; Schema: s; Owner: Old "Owner"
--

GRANT SELECT ON TABLE s."T x" TO app_reader WITH GRANT OPTION;
SET SESSION AUTHORIZATION app_reader;
GRANT SELECT ON TABLE s."T x" TO pg_read_all_data;
RESET SESSION AUTHORIZATION;

--
-- Name: COLUMN "T x".id; Type: ACL; Schema: s; Owner: Old "Owner"
--

GRANT SELECT(id),UPDATE(id) ON TABLE s."T x" TO "Old ""Owner""";
'''

POST_DATA = '''--
-- Name: T x p; Type: POLICY; Schema: s; Owner: hr_owner
--

CREATE POLICY p ON s."T x" FOR SELECT TO app_reader, "Old ""Owner""" USING ((id > 0));

--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: s; Owner: hr_owner
--

ALTER DEFAULT PRIVILEGES FOR ROLE hr_owner IN SCHEMA s GRANT SELECT ON TABLES  TO app_reader;
'''

MAP = RoleMap({"hr_owner": "personale_owner", 'Old "Owner"': "hr_owner", "app_reader": "Personale App"}, "fail")


def test_owners_grants_and_default_privileges_are_renamed_in_order():
    pre, post = postdata.split_script(PRE_DATA)[1], postdata.split_script(POST_DATA)[1]
    found = roles.privileges(pre, post, MAP, '"personale_new"')
    assert found.statements == [
        'ALTER DATABASE "personale_new" OWNER TO "personale_owner";',
        'ALTER SCHEMA s OWNER TO "personale_owner";',
        'ALTER FUNCTION s.f(integer) OWNER TO "personale_owner";',  # not the line inside its body
        'ALTER TABLE s."T x" OWNER TO "hr_owner";',
        ('REVOKE CONNECT,TEMPORARY ON DATABASE "personale_new" FROM PUBLIC;\n'
         'GRANT CONNECT ON DATABASE "personale_new" TO "Personale App";'),
        ('GRANT SELECT ON TABLE s."T x" TO "Personale App" WITH GRANT OPTION;\n'
         'SET SESSION AUTHORIZATION "Personale App";\n'
         'GRANT SELECT ON TABLE s."T x" TO pg_read_all_data;\n'
         'RESET SESSION AUTHORIZATION;'),
        'GRANT SELECT(id),UPDATE(id) ON TABLE s."T x" TO "hr_owner";',
        'ALTER DEFAULT PRIVILEGES FOR ROLE "personale_owner" IN SCHEMA s GRANT SELECT ON TABLES  TO "Personale App";',
    ]
    assert found.roles == {"personale_owner", "hr_owner", "Personale App"} and found.unmapped == set()


def test_policy_roles_are_renamed_and_unmapped_roles_are_named():
    items = postdata.split_script(POST_DATA)[1]
    mapped, used, unmapped = roles.map_policies(items, MAP)
    assert mapped[0].sql.endswith('CREATE POLICY p ON s."T x" FOR SELECT TO "Personale App", "hr_owner" USING ((id > 0));')
    assert mapped[1] == items[1] and used == {"Personale App", "hr_owner"} and not unmapped
    _, _, unmapped = roles.map_policies(items, RoleMap({}, "fail"))
    assert unmapped == {"app_reader", 'Old "Owner"'}


@pytest.mark.parametrize("rolemap, role, expected", [
    (RoleMap({"a": "b"}, "fail"), "a", "b"),
    (RoleMap({"a": "b"}, "fail"), "c", None),          # fail: no name for it
    (RoleMap({"a": "b"}, "create"), "c", "c"),         # create: keeps its name
    (RoleMap({}, "fail"), "PUBLIC", "PUBLIC"),          # built-in: never mapped
    (RoleMap({}, "fail"), "pg_read_all_data", "pg_read_all_data"),
])
def test_role_map(rolemap, role, expected):
    assert rolemap.target(role) == expected
    assert RoleMap.from_json(rolemap.to_json()) == rolemap


def test_a_statement_of_unknown_shape_in_an_acl_entry_is_refused():
    text = PRE_DATA.replace("GRANT CONNECT ON DATABASE personale TO app_reader;",
                            "GRANT CONNECT ON DATABASE personale TO app_reader GRANTED BY hr_owner;")
    with pytest.raises(StepFailed, match="ACL entry -.DATABASE personale: a statement of an unknown shape"):
        roles.privileges(postdata.split_script(text)[1], [], MAP, "t")


def test_per_role_database_settings_are_renamed():
    statements = [("ALTER ROLE app_reader IN DATABASE x SET search_path TO 's';\n"
                   "ALTER ROLE nobody IN DATABASE x SET work_mem TO '1MB';")]
    mapped, _, unmapped = roles.map_role_settings(statements, MAP)
    assert mapped[0].startswith('ALTER ROLE "Personale App" IN DATABASE x') and unmapped == {"nobody"}


# --- verification of owners and ACLs, after mapping -----------------------------------------

def acl(*entries) -> str:
    return json.dumps([list(e) for e in entries])


SOURCE = [("database", "", "hr_owner", acl(("hr_owner", "CONNECT", False, "hr_owner"))),
          ("relation", "s.t", "hr_owner", acl(("hr_owner", "SELECT", False, "hr_owner"),
                                              ("app", "SELECT", False, "hr_owner"))),
          ("column", "s.t.v", None, acl(("app", "UPDATE", False, "hr_owner"))),
          ("default", "s r", "hr_owner", acl(("app", "SELECT", False, "hr_owner")))]
RENAMED = RoleMap({"hr_owner": "owner2", "app": "app2"}, "fail")


def target_of(rows):
    """What the target holds when the copy did its job: every role renamed."""
    def renamed(entries):
        return acl(*[(RENAMED.target(g), p, grantable, RENAMED.target(by)) for g, p, grantable, by in json.loads(entries)])
    return [(kind, name, owner and RENAMED.target(owner), renamed(entries)) for kind, name, owner, entries in rows]


def test_privileges_that_match_after_mapping_are_not_differences():
    assert schema.compare_privileges("p/d", SOURCE, target_of(SOURCE), RENAMED) == []
    assert schema.compare_privileges("p/d", SOURCE, SOURCE, None) == [], "no role map: not compared"


@pytest.mark.parametrize("change, expected", [
    (lambda rows: [rows[0], ("relation", "s.t", "migrate", rows[1][3]), *rows[2:]],
     [("s.t", "owner_differs", "relation: owner migrate, expected owner2")]),
    (lambda rows: [rows[0], rows[1], rows[3]],  # the column grant is gone
     [("s.t.v", "grants_differ", "column: privileges of app2 differ")]),
    (lambda rows: rows[:3],                     # the default privileges are gone
     [("s r for owner2", "grants_differ", "default: privileges of app2 differ")]),
    (lambda rows: [rows[0], (*rows[1][:3], acl(("owner2", "SELECT", False, "owner2"))), *rows[2:]],
     [("s.t", "grants_differ", "relation: privileges of app2 differ")]),
])
def test_owner_and_grant_differences_are_named(change, expected):
    diffs = schema.compare_privileges("p/d", SOURCE, change(target_of(SOURCE)), RENAMED)
    assert [(d.object, d.problem, d.detail) for d in diffs] == expected


# --- the spec ------------------------------------------------------------------------------

def spec_problems(tmp_path, roles_value, unmapped="fail") -> list[str]:
    import shutil
    from pathlib import Path

    import yaml

    from migrate import config
    from migrate.errors import ConfigError

    inv = tmp_path / "inv"
    shutil.copytree(Path(__file__).resolve().parents[2] / "inventories" / "lab", inv,
                    ignore=shutil.ignore_patterns(".state"))
    data = yaml.safe_load((inv / "migrate.yml").read_text())
    database = data["systems"]["personnel"]["databases"]["personale"]
    database.update({"roles": roles_value, "unmapped_roles": unmapped})
    (inv / "migrate.yml").write_text(yaml.safe_dump(data))
    try:
        loaded = config.load(inv)
    except ConfigError as exc:
        return exc.problems
    d = loaded.spec.systems["personnel"].databases["personale"]
    assert schema.role_map(d) == (None if roles_value is None else RoleMap(roles_value, unmapped))
    return []


@pytest.mark.parametrize("roles_value, unmapped, expected", [
    ({"hr_owner": "personale_owner"}, "fail", None),
    (None, "fail", None),
    ({"hr_owner": "pg_monitor"}, "fail", "systems.personnel.databases.personale: roles: 'pg_monitor' cannot be mapped"),
    ({"PUBLIC": "x"}, "create", "systems.personnel.databases.personale: roles: 'PUBLIC' cannot be mapped"),
    ({"hr_owner": "x"}, "sometimes", "systems.personnel.databases.personale.unmapped_roles: Input should be"),
])
def test_the_spec_checks_role_maps(tmp_path, roles_value, unmapped, expected):
    found = spec_problems(tmp_path, roles_value, unmapped)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0] and found[0].startswith(str(tmp_path / "inv" / "migrate.yml"))
