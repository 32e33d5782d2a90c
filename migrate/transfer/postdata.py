"""The post-data section of a schema archive (indexes, constraints, triggers...), as items that
can be applied in parallel, each in its own transaction.

pg_restore writes every archive entry under a header
    --
    -- Name: <name>; Type: <type>; Schema: <schema>; Owner: -
    --
which is where the script is cut. Items run in waves, because some depend on others: a foreign
key needs the referenced primary key, an index attach needs both indexes, a comment needs its
object. Within a wave, items are independent and run in parallel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = re.compile(r"^--\n-- (?:Data for )?Name: (?P<name>.*?); Type: (?P<type>.*?); Schema: (?P<schema>.*?);"
                    r" Owner: .*?\n--\n", re.MULTILINE)
# Session settings pg_restore emits between entries; they belong to the entry that follows.
SETTING = re.compile(r"^(SET [a-z_]+ = .*;|SELECT pg_catalog\.set_config\(.*\);)$")

WAVES: tuple[tuple[str, ...], ...] = (
    ("INDEX", "CONSTRAINT"),          # heavy, independent: in parallel
    ("INDEX ATTACH",),
    ("FK CONSTRAINT", "TRIGGER"),
)
PARALLEL = {0, 2}  # waves whose items may run at once (attaches contend on the parent index)


@dataclass(frozen=True)
class Item:
    index: int
    type: str
    schema: str
    name: str
    sql: str

    @property
    def id(self) -> str:
        return f"post:{self.index}"


def _settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if SETTING.match(line)]


def split_script(text: str) -> tuple[list[str], list[Item]]:
    """(session settings of the preamble, items in archive order)."""
    marks = list(HEADER.finditer(text))
    preamble = _settings(text[:marks[0].start()] if marks else text)
    items = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = [line for line in text[mark.end():end].splitlines()
                if not line.startswith("\\")]  # psql meta-commands (\restrict) are not SQL
        while body and (not body[-1].strip() or SETTING.match(body[-1]) or body[-1].startswith("--")):
            body.pop()
        prefix = _settings(text[marks[i - 1].end():mark.start()]) if i else []
        sql = "\n".join(prefix[-2:] + body).strip()
        items.append(Item(i, mark["type"], mark["schema"], mark["name"], sql))
    return preamble, items


def waves(items: list[Item]) -> list[tuple[bool, list[Item]]]:
    """(parallel?, items) in the order they must run; types not named in WAVES go last, one
    at a time in archive order (comments, rules, policies, statistics...)."""
    known = {t for wave in WAVES for t in wave}
    result = [(i in PARALLEL, [it for it in items if it.type in wave]) for i, wave in enumerate(WAVES)]
    result.append((False, [it for it in items if it.type not in known]))
    return [(parallel, group) for parallel, group in result if group]


DATABASE_NAME = re.compile(r'^(ALTER DATABASE|COMMENT ON DATABASE) (?:"(?:[^"]|"")*"|[^ ]+) ', re.MULTILINE)


def database_properties(pre_data_items: list[Item], target: str) -> list[str]:
    """The source database's settings (ALTER DATABASE ... SET) and comment, aimed at the target
    database, whose name may differ. `target` is the target's quoted name."""
    found = [it for it in pre_data_items
             if it.type == "DATABASE PROPERTIES" or (it.type == "COMMENT" and it.name.startswith("DATABASE "))]
    return [DATABASE_NAME.sub(lambda m: f"{m[1]} {target} ", it.sql) for it in found]


IDENT = r'(?:"(?:[^"]|"")*"|[^\s."]+)'
# Items that need only their own table: they may run as soon as that table is loaded.
OWN_TABLE = (re.compile(rf"^ALTER TABLE ONLY ({IDENT})\.({IDENT})\n\s+ADD CONSTRAINT ", re.MULTILINE),
             re.compile(rf"^CREATE (?:UNIQUE )?INDEX \S+ ON ({IDENT})\.({IDENT}) USING ", re.MULTILINE))


def _unquote(part: str) -> str:
    return part[1:-1].replace('""', '"') if part.startswith('"') else part


def table_of(item: Item) -> tuple[str, str] | None:
    """(schema, table) of an index or a table constraint (primary key, unique, exclusion),
    which needs nothing but its table's rows; None for every other item."""
    if item.type not in ("INDEX", "CONSTRAINT"):
        return None
    for pattern in OWN_TABLE:
        found = pattern.search(item.sql)
        if found:
            return _unquote(found[1]), _unquote(found[2])
    return None


def matviews_in_order(pre_data_items: list[Item]) -> list[tuple[str, str]]:
    """Materialized views in archive order, which is dependency order."""
    return [(it.schema, it.name) for it in pre_data_items if it.type == "MATERIALIZED VIEW"]
