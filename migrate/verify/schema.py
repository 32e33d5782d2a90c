"""Schema and sequences: every object of the source must exist on the target with the same
definition; every sequence on the target must be at or beyond the source's value.

A snapshot is {"kind name": definition}; definitions come from the server's own deparsers
(pg_get_indexdef, pg_get_constraintdef, ...) under the same pinned search_path on both sides,
so they compare as text. Owners and privileges are left out: the copy drops them on purpose.
Reports name the object and what differs, never a definition (a default may hold a value).
"""

from __future__ import annotations

from psycopg import sql

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
