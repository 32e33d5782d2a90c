"""Schema and sequences: every object of the source must exist on the target with the same
definition; every sequence on the target must be at or beyond the source's value.

A snapshot is {"kind name": definition}; definitions come from the server's own deparsers
(pg_get_indexdef, pg_get_constraintdef, ...) under the same pinned search_path on both sides,
so they compare as text. Owners and privileges are compared apart (`compare_privileges`), with
the source's roles passed through the spec's role map, and only when the spec has one: without
it the copy leaves them out on purpose. Reports name the object and what differs, never a
definition (a default may hold a value).
"""

from __future__ import annotations

import json

from psycopg import sql

from migrate.config import Database
from migrate.transfer import fence
from migrate.transfer.roles import RoleMap
from migrate.verify.model import Difference
from migrate.verify.probes import USER_SCHEMAS, Session

NOT_FROM_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"

SNAPSHOT = {
    "table": f"""
        SELECT n.nspname || '.' || c.relname, c.relkind::text || ' ' || c.relpersistence::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'f') AND {USER_SCHEMAS}""",
    "column": f"""
        SELECT n.nspname || '.' || c.relname || '.' || a.attname,
               concat_ws(' | ', 'type ' || format_type(a.atttypid, a.atttypmod),
                         CASE WHEN a.attnotnull THEN 'not null' END,
                         'default ' || pg_get_expr(ad.adbin, ad.adrelid),
                         CASE WHEN a.attidentity <> '' THEN 'identity ' || a.attidentity::text END,
                         CASE WHEN a.attgenerated <> '' THEN 'generated' END,
                         CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                              THEN 'collation ' || a.attcollation::regcollation::text END)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped AND {USER_SCHEMAS}""",
    "index": f"""
        SELECT n.nspname || '.' || c.relname, pg_get_indexdef(c.oid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMAS}""",
    "constraint": f"""
        SELECT n.nspname || '.' || r.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE {USER_SCHEMAS}""",
    "trigger": f"""
        SELECT n.nspname || '.' || r.relname || '.' || t.tgname, pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
        FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE NOT t.tgisinternal AND {USER_SCHEMAS}""",
    "view": f"""
        SELECT n.nspname || '.' || c.relname, c.relkind::text || ' ' || pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND {USER_SCHEMAS}""",
    "function": f"""
        SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               md5(pg_get_functiondef(p.oid))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind IN ('f', 'p') AND {USER_SCHEMAS} AND {NOT_FROM_EXTENSION.format(oid='p.oid')}""",
    "extension": """SELECT extname, extversion FROM pg_extension""",
    "sequence": f"""
        SELECT s.schemaname || '.' || s.sequencename,
               concat_ws(' ', s.data_type, s.start_value, s.min_value, s.max_value, s.increment_by, s.cycle)
        FROM pg_sequences s WHERE s.schemaname IN (SELECT n.nspname FROM pg_namespace n WHERE {USER_SCHEMAS})""",
}

SEQUENCES = """
    SELECT s.schemaname, s.sequencename, s.increment_by
    FROM pg_sequences s WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')"""

REMEDY = {
    "missing_on_target": "create it on the target from the source definition"
                         " (pg_dump --schema-only on the source shows it)",
    "extra_on_target": "drop it on the target if nothing of the migration needs it",
    "definition_differs": "recreate it on the target from the source definition"
                          " (compare with pg_dump --schema-only of both sides)",
}


def snapshot(session: Session) -> dict[str, str]:
    found = {}
    for kind, query in SNAPSHOT.items():
        found.update({f"{kind} {name}": definition or "" for name, definition in session.rows(query)})
    return found


def compare(database: str, source: dict[str, str], target: dict[str, str]) -> list[Difference]:
    diffs = []
    for name in sorted(set(source) | set(target)):
        kind, obj = name.split(" ", 1)
        if name not in target:
            problem = "missing_on_target"
        elif name not in source:
            problem = "extra_on_target"
        elif source[name] != target[name]:
            problem = "definition_differs"
        else:
            continue
        diffs.append(Difference("schema", database, obj, problem, REMEDY[problem],
                                detail=kind + _what_differs(kind, source.get(name), target.get(name))))
    return diffs


def _what_differs(kind: str, source: str | None, target: str | None) -> str:
    """For columns, which attribute (type, not null, default, ...) differs, by name only."""
    if kind != "column" or source is None or target is None:
        return ""
    a, b = _attributes(source), _attributes(target)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return f": {', '.join(changed)} differs" if changed else ""


def _attributes(definition: str) -> dict[str, str]:
    return {part.split(" ")[0]: part for part in definition.split(" | ")}


# --- owners and privileges -------------------------------------------------------------------

# An ACL as [grantee, privilege, grantable, grantor] entries, with NULL read as the object kind's
# default (what the owner has by default): an explicit ACL equal to it is the same privileges.
ACL = """(SELECT coalesce(json_agg(json_build_array(CASE WHEN e.grantee = 0 THEN 'PUBLIC'
           ELSE pg_get_userbyid(e.grantee) END, e.privilege_type, e.is_grantable, pg_get_userbyid(e.grantor))), '[]')
         FROM aclexplode(coalesce({acl}, acldefault({kind}, {owner}))) e)::text"""
NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = '{catalog}'::regclass AND x.objid = {oid}" \
                " AND x.deptype = 'e')"

RELATION_KIND = "(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::\"char\""

PRIVILEGES = f"""
SELECT 'database', '', pg_get_userbyid(d.datdba), {ACL.format(acl=fence.ACL_BEFORE_FENCE, kind="'d'", owner='d.datdba')}
  FROM pg_database d WHERE d.datname = current_database()
UNION ALL
SELECT 'schema', n.nspname, pg_get_userbyid(n.nspowner), {ACL.format(acl='n.nspacl', kind="'n'", owner='n.nspowner')}
  FROM pg_namespace n WHERE {USER_SCHEMAS} AND {NOT_EXTENSION.format(catalog='pg_namespace', oid='n.oid')}
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'relation' END, n.nspname || '.' || c.relname,
       pg_get_userbyid(c.relowner),
       {ACL.format(acl='c.relacl', kind=RELATION_KIND, owner='c.relowner')}
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {USER_SCHEMAS}
   AND {NOT_EXTENSION.format(catalog='pg_class', oid='c.oid')}
UNION ALL
SELECT 'column', n.nspname || '.' || c.relname || '.' || a.attname, NULL,
       {ACL.format(acl='a.attacl', kind="'c'", owner='c.relowner')}
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped AND {USER_SCHEMAS}
UNION ALL
SELECT 'function', n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       pg_get_userbyid(p.proowner), {ACL.format(acl='p.proacl', kind="'f'", owner='p.proowner')}
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {USER_SCHEMAS} AND {NOT_EXTENSION.format(catalog='pg_proc', oid='p.oid')}
UNION ALL
SELECT 'type', n.nspname || '.' || t.typname, pg_get_userbyid(t.typowner),
       {ACL.format(acl='t.typacl', kind="'T'", owner='t.typowner')}
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype IN ('b', 'd', 'e', 'r', 'm') AND t.typcategory <> 'A' AND {USER_SCHEMAS}
   AND {NOT_EXTENSION.format(catalog='pg_type', oid='t.oid')}
UNION ALL
SELECT 'default', coalesce(n.nspname, '-') || ' ' || d.defaclobjtype::text, pg_get_userbyid(d.defaclrole),
       {ACL.format(acl='d.defaclacl', kind="'r'", owner='d.defaclrole')}
  FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
"""

PRIVILEGE_REMEDY = {
    "owner_differs": "on the target: ALTER ... OWNER TO the role the spec maps the source's owner to",
    "grants_differ": "on the target: GRANT / REVOKE until the privileges match the source's, with its roles"
                     " mapped (pg_dump --schema-only of the source lists them)",
}


def role_map(d: Database) -> RoleMap | None:
    return None if d.roles is None else RoleMap(dict(d.roles), d.unmapped_roles)


def _privileges(rows: list[tuple], rename) -> dict[tuple[str, str], tuple[str | None, list]]:
    """(kind, name) -> (owner, sorted ACL entries), every role passed through `rename`. Default
    privileges belong to a role, which is part of their name."""
    def role(r: str | None) -> str | None:
        mapped = r if r is None else rename(r)
        return f"(unmapped {r})" if r is not None and mapped is None else mapped
    found = {}
    for kind, name, owner, acl in rows:
        entries = sorted((role(g), p, grantable, role(by)) for g, p, grantable, by in json.loads(acl))
        key = (kind, f"{name} for {role(owner)}" if kind == "default" else name)
        found[key] = (None if kind == "default" else role(owner), entries)
    return found


def compare_privileges(database: str, source_rows: list[tuple], target_rows: list[tuple],
                       rolemap: RoleMap | None) -> list[Difference]:
    """Owners and ACLs of the target against the source's, mapped. Objects missing on one side
    are the schema comparison's to report; column grants and default privileges are compared
    even when one side has none."""
    if rolemap is None:
        return []
    source, target = _privileges(source_rows, rolemap.target), _privileges(target_rows, lambda r: r)
    optional = ("column", "default")
    diffs = []
    for key in sorted(set(source) | set(target)):
        if (key not in source or key not in target) and key[0] not in optional:
            continue
        (want_owner, want), (owner, got) = source.get(key, (None, [])), target.get(key, (None, []))
        if want_owner != owner:
            diffs.append(Difference("schema", database, key[1], "owner_differs", PRIVILEGE_REMEDY["owner_differs"],
                                    detail=f"{key[0]}: owner {owner}, expected {want_owner}"))
        if want != got:
            grantees = sorted({e[0] for e in set(want) ^ set(got)})
            diffs.append(Difference("schema", database, key[1], "grants_differ", PRIVILEGE_REMEDY["grants_differ"],
                                    detail=f"{key[0]}: privileges of {', '.join(grantees)} differ"))
    return diffs


def next_values_query(sequences: list[tuple]) -> sql.Composable | None:
    """The value each sequence hands out next. pg_sequences shows NULL after setval(.., false),
    which a loader uses to say "next is exactly this": read last_value and is_called instead."""
    parts = [sql.SQL("SELECT {name}, CASE WHEN is_called THEN last_value + {inc} ELSE last_value END FROM {seq}").format(
        name=sql.Literal(f"{schema}.{name}"), inc=sql.Literal(increment), seq=sql.Identifier(schema, name))
        for schema, name, increment in sequences]
    return sql.SQL(" UNION ALL ").join(parts) if parts else None


def compare_sequences(database: str, source: dict, target: dict) -> list[Difference]:
    """Next values: the target must not hand out a value the source already used."""
    diffs = []
    for name in sorted(source):
        if name not in target:
            continue  # reported by the schema comparison
        src, tgt = source[name], target[name]
        if tgt < src:
            diffs.append(Difference(
                "sequence", database, name, "behind_source",
                f"on the target: SELECT setval('{name}', {src}, false); its next value would collide with existing keys",
                detail=f"next value: target {tgt} < source {src}"))
    return diffs
