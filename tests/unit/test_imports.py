"""The import rule, checked on the source (nothing is imported to check it): imports point down
the layers, never up, never in a cycle; only adapters touch the network, processes or remote
files; the lab stands to one side. ARCHITECTURE.md draws the same picture."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "migrate"

# Lowest first. A module may import its own package and any package of a lower layer; packages
# in one layer know nothing of each other.
LAYERS = [
    {"errors", "model"},
    {"config"},
    {"adapters"},
    {"transfer"},
    {"facts", "verify"},
    {"engine"},
    {"steps", "preflight", "evidence"},
    {"ops", "testing"},
    {"scope"},
    {"commands", "lab_cli"},
    {"cli"},
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
LAB_MAY_USE = {"errors", "adapters"}      # the lab runs playbooks through the real adapter
IO_MODULES = ("paramiko", "boto3", "botocore", "subprocess")
IO_ALLOWED = {"adapters", "lab"}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield (".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)), path


def imported(name: str, path: Path):
    """(module named, line) of every import in the file, relative ones resolved."""
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            yield base, node.lineno
            yield from ((f"{base}.{a.name}", node.lineno) for a in node.names)


def top(name: str) -> str:
    return name.split(".")[1] if name.startswith("migrate.") and name.count(".") >= 1 else ""


def edges():
    known, found = dict(modules()), {}
    for name, path in known.items():
        for target, line in imported(name, path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "migrate":
                found.setdefault((name, target), f"{path.relative_to(PACKAGE.parent)}:{line}")
    return [(source, target, where) for (source, target), where in found.items()]


def test_every_package_has_a_layer():
    assert {top(name) for name, _ in modules() if top(name)} - {"lab"} <= set(LEVEL)


def test_imports_point_down():
    wrong = []
    for source, target, where in edges():
        a, b = top(source), top(target)
        if a == b or not a:
            continue
        if a == "lab":
            ok = b in LAB_MAY_USE
        elif b == "lab":
            ok = a == "lab_cli"
        elif b == "testing":
            ok = False
        else:
            ok = LEVEL[b] < LEVEL[a]
        if not ok:
            wrong.append(f"{where}: {source} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph: dict[str, set[str]] = {}
    for source, target, _ in edges():
        graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_only_adapters_do_io():
    found = []
    for name, path in modules():
        if top(name) in IO_ALLOWED:
            continue
        for target, line in imported(name, path):
            if target.split(".")[0] in IO_MODULES:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
        text = path.read_text()
        if "psycopg.connect(" in text or ".open_sftp(" in text or ".exec_command(" in text:
            found.append(f"{path.relative_to(PACKAGE.parent)} opens a connection itself")
    assert not found, "\n".join(found)
