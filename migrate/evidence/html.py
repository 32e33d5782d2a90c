"""The pack's human-readable page: report.html, rendered with jinja2 from manifest.json and
results/ only, so the page can never say what the JSON does not.

One self-contained file (inline CSS and SVG, no script, no external resource), Italian with
English beside it, printable on A4. Every value shown comes from the two inputs; a missing or
null value is shown as a dash, never guessed. What is computed here is arithmetic over those
values (the timeline's geometry, the reconciliation equation, per-database transfer sums).
"""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2

from migrate.model.layout import GATE_ID

MISSING = "—"
TEMPLATE = "report.html.j2"
FIRST_CHUNKS = 20  # chunks and packs listed one by one; the rest are in the per-database sums
FIRST_EFFECTS = 100  # effects of a rollback record listed one by one

# The timeline's drawing, in SVG user units (the viewBox scales it to the page).
WIDTH = 1000
LABEL_WIDTH = 340
RIGHT = 20
TOP = 56
ROW = 22
BAR = 14
TICK_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_TICKS = 8
LABEL_CHARS = 42


def render(manifest: dict, results: dict[str, dict]) -> str:
    """The page of one pack: manifest as in manifest.json, results as the files of results/
    keyed by their stem ("reconciliation", "verification", ...)."""
    template = environment().get_template(TEMPLATE)
    return template.render(
        m=manifest, r=results, timeline=timeline(manifest), units=reconciliation(results),
        business=business_checks(results), transfer=transfer(results), first_chunks=FIRST_CHUNKS,
        first_effects=FIRST_EFFECTS)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("migrate.evidence", "."),
                             autoescape=True, undefined=jinja2.ChainableUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(show=show, plain=plain, when=when, size=size, tone=tone, yesno=yesno, columns=columns)
    env.tests["records"] = records
    return env


# --- values as text -------------------------------------------------------------------------

def missing(value) -> bool:
    return value is None or value == "" or isinstance(value, jinja2.Undefined)


def number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:,.3f}".rstrip("0").rstrip(".")
    else:
        text = f"{int(value):,}"
    return text.replace(",", "\u202f")  # a narrow space groups thousands in both languages


def show(value) -> str:
    if missing(value):
        return MISSING
    if isinstance(value, bool):
        return yesno(value)
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value) or MISSING
    if isinstance(value, dict):
        return "; ".join(f"{k}: {show(v)}" for k, v in value.items()) or MISSING
    return str(value)


def plain(value) -> str:
    """A value as it is, without grouping digits (sequence numbers, versions)."""
    return MISSING if missing(value) else str(value)


def yesno(value) -> str:
    if missing(value):
        return MISSING
    return "sì / yes" if value else "no / no"


def parse_time(value) -> datetime | None:
    if missing(value):
        return None
    return datetime.fromisoformat(str(value))


def when(value) -> str:
    """An ISO-8601 UTC time as "2025-03-08 17:00:02 UTC": to the second (the JSON keeps the
    fraction), easier to read."""
    if missing(value):
        return MISSING
    text = str(value)
    if not text.endswith("Z") or "T" not in text:
        return text
    return text[:19].replace("T", " ") + " UTC"


def size(value) -> str:
    if missing(value):
        return MISSING
    scaled, unit = float(value), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if scaled < 1024 or unit == "TiB":
            break
        scaled /= 1024
    return f"{number(value)} B" if unit == "B" else f"{number(value)} B ({scaled:.1f} {unit})"


TONES = {"good": {"ok", "pass", "passed", "go", "done", "completed", "complete", "equal"},
         "warn": {"warn", "warning", "pending", "running", "skipped", "noop", "not verified", "rolled_back",
                  "rolling_back", "undone"},
         "bad": {"fail", "failed", "differs", "error", "no-go", "incomplete", "missing"}}


def tone(value) -> str:
    """A CSS class for a status word; the word itself is always printed beside the colour."""
    text = "" if missing(value) else str(value).lower()
    return next((name for name, words in TONES.items() if text in words), "plain")


# --- the timeline ---------------------------------------------------------------------------

def timed(phase: dict) -> bool:
    return not missing(phase.get("started")) and not missing(phase.get("ended"))


def span(manifest: dict, phases: list[dict]) -> tuple[datetime, datetime]:
    times = [parse_time(p[k]) for p in phases for k in ("started", "ended")]
    freeze, gate = manifest.get("freeze") or {}, manifest.get("gate") or {}
    extra = (freeze.get("started"), freeze.get("ended"), gate.get("at"))
    times += [parse_time(t) for t in extra if not missing(t)]
    return min(times), max(times)


def timeline(manifest: dict) -> dict | None:
    """The SVG's geometry: one bar per timed phase, the freeze band, the gate mark, the axis."""
    phases = [p for p in manifest.get("phases") or [] if timed(p)]
    if not phases:
        return None
    start, end = span(manifest, phases)
    total = max((end - start).total_seconds(), 1.0)

    def x(at) -> float:
        return round(LABEL_WIDTH + (parse_time(at) - start).total_seconds() / total * (WIDTH - LABEL_WIDTH - RIGHT), 1)

    bars = [bar(p, i, x) for i, p in enumerate(phases)]
    height = TOP + ROW * len(bars) + 24
    return {"width": WIDTH, "height": height, "left": LABEL_WIDTH, "right": WIDTH - RIGHT, "top": TOP,
            "start": when(iso(start)), "end": when(iso(end)), "seconds": total, "bars": bars,
            "ticks": ticks(start, total, x), "freeze": freeze_band(manifest, x, height),
            "gate": gate_mark(manifest, bars, x)}


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bar(phase: dict, index: int, x) -> dict:
    left, right = x(phase["started"]), x(phase["ended"])
    step = show(phase.get("step"))
    label = step if len(step) <= LABEL_CHARS else step[:LABEL_CHARS - 1] + "…"
    return {"x": left, "width": max(round(right - left, 1), 2.0), "y": TOP + ROW * index, "height": BAR,
            "label": label, "phase": phase, "gate": step == GATE_ID}


def ticks(start: datetime, total: float, x) -> list[dict]:
    step = next((s for s in TICK_STEPS if total / s <= MAX_TICKS), TICK_STEPS[-1])
    first = -(-start.timestamp() // step) * step  # the first whole multiple at or after the start
    out, at = [], first
    fmt = "%H:%M" if total < 86400 else "%d/%m %H:%M"
    while at <= start.timestamp() + total:
        moment = datetime.fromtimestamp(at, UTC)
        out.append({"x": x(iso(moment)), "label": moment.strftime(fmt)})
        at += step
    return out


def freeze_band(manifest: dict, x, height: int) -> dict | None:
    freeze = manifest.get("freeze") or {}
    if missing(freeze.get("started")):
        return None
    left = x(freeze["started"])
    # A freeze not yet lifted (or never recorded as lifted) runs to the timeline's right edge.
    right = x(freeze["ended"]) if not missing(freeze.get("ended")) else WIDTH - RIGHT
    return {"x": left, "width": max(round(right - left, 1), 2.0), "y": TOP - 22, "height": height - TOP,
            "open": missing(freeze.get("ended"))}


def gate_mark(manifest: dict, bars: list[dict], x) -> dict | None:
    gate = manifest.get("gate") or {}
    gate_bar = next((b for b in bars if b["gate"]), None)
    if gate_bar is None and missing(gate.get("at")):
        return None
    at_x = x(gate["at"]) if not missing(gate.get("at")) else gate_bar["x"] + gate_bar["width"]
    return {"x": at_x, "decision": show(gate.get("decision")), "approver": show(gate.get("approver")),
            "anchor": "end" if at_x > WIDTH * 0.7 else "start"}


# --- tables ---------------------------------------------------------------------------------

def integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def reconciliation(results: dict) -> list[dict]:
    """Each unit with whether the AgID equation source = target + duplicates removed - failed
    holds: as the results say when they say it, else worked out from the unit's own figures
    (None when one is missing: then nothing is claimed)."""
    out = []
    for u in (results.get("reconciliation") or {}).get("units") or []:
        figures = [u.get(k) for k in ("source", "target", "duplicates_removed", "failed")]
        holds = figures[0] == figures[1] + figures[2] - figures[3] if all(map(integer, figures)) else None
        out.append({"unit": u, "holds": u["holds"] if isinstance(u.get("holds"), bool) else holds})
    return out


def business_checks(results: dict) -> list[dict]:
    """Business checks with their facts as source and target columns (source_x beside target_x)."""
    sections = (results.get("verification") or {}).get("sections") or []
    return [{"check": s, **side_by_side(s.get("facts") or {})} for s in sections if s.get("area") == "business"]


def side_by_side(facts: dict) -> dict:
    sides = ("source_", "target_")
    names = list(dict.fromkeys(k.removeprefix(sides[0]).removeprefix(sides[1]) for k in facts if k.startswith(sides)))
    return {"pairs": [{"name": n, "source": facts.get(f"source_{n}"), "target": facts.get(f"target_{n}")}
                      for n in names],
            "others": {k: v for k, v in facts.items() if not k.startswith(sides)}}


def transfer(results: dict) -> dict:
    log = results.get("transfer") or {}
    chunks = [{**c, "scope": field(c, "scope", "database")} for c in log.get("chunks") or []]
    packs = [{**p, "scope": field(p, "scope", "system"), "files": field(p, "files_count", "files")}
             for p in log.get("document_packs") or []]
    return {"chunks": chunks, "packs": packs, "databases": sums(chunks, "rows"), "archives": sums(packs, "files"),
            "rows": total(chunks, "rows"), "chunk_bytes": total(chunks, "bytes"),
            "files": total(packs, "files"), "pack_bytes": total(packs, "bytes")}


def field(item: dict, *names: str):
    """The first of names the record has a value for (the transfer log says scope and
    files_count where other results say database, system and files)."""
    return next((item[n] for n in names if not missing(item.get(n))), None)


def total(items: list[dict], key: str) -> int | None:
    values = [i.get(key) for i in items]
    return sum(values) if values and all(map(integer, values)) else None


def sums(items: list[dict], count: str) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(show(item["scope"]), []).append(item)
    return [{"name": name, "objects": len(members), "count": total(members, count), "bytes": total(members, "bytes")}
            for name, members in groups.items()]


# --- free-form records (rollback, rehearsals) -------------------------------------------------

def records(value) -> bool:
    """A list of objects, shown as a table of its own inside a record."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def columns(items: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for item in items for k in item))


def template_sha256() -> str:
    """The page template's digest: a pack records it, so `evidence verify` knows whether it can
    render the very same page again (a later version of the tool may word it differently)."""
    import hashlib
    from pathlib import Path

    return hashlib.sha256((Path(__file__).with_name(TEMPLATE)).read_bytes()).hexdigest()
