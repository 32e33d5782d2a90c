"""The evidence pack's HTML page, rendered from a made-up pack: what it shows, what it must never
contain (scripts, external resources, unescaped values, invented figures)."""

import copy
import json
import re
from html.parser import HTMLParser
from importlib import resources

import jsonschema
import pytest
from markupsafe import escape

from migrate.evidence import html
from tests.unit import evidence_sample as sample

HEADINGS = [
    "Riepilogo <span class=\"en\">/ Summary</span>",
    "Cosa è stato migrato e dove <span class=\"en\">/ What moved where</span>",
    "Quando e con quale completezza <span class=\"en\">/ When, and how complete</span>",
    "Cronologia dell'ondata <span class=\"en\">/ Wave timeline</span>",
    "Schede dei servizi migrati (PNRR) <span class=\"en\">/ Migrated service records (PNRR)</span>",
    "Verifiche preliminari <span class=\"en\">/ Preflight findings</span>",
    "Riconciliazione per unità di migrazione <span class=\"en\">/ Reconciliation per unit of migration</span>",
    "Controlli di business a confronto <span class=\"en\">/ Business checks side by side</span>",
    "Impronte delle tabelle probatorie <span class=\"en\">/ Legal-evidence digests</span>",
    "Documenti <span class=\"en\">/ Documents</span>",
    "Trasferimento <span class=\"en\">/ Transfer</span>",
    "Rollback e prove di ripristino <span class=\"en\">/ Rollback and restore rehearsals</span>",
    "Come verificare questo pacchetto offline <span class=\"en\">/ How to verify this pack offline</span>",
]
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, of a page."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def page(manifest=None, results=None) -> str:
    return html.render(manifest or sample.manifest(), sample.results() if results is None else results)


def bars(text: str) -> list[str]:
    return re.findall(r'<rect class="bar[^"]*"', text)


def schema() -> dict:
    return json.loads(resources.files("migrate.evidence").joinpath("manifest.schema.json").read_text())


@pytest.mark.parametrize("signed, rolled_back", [(False, False), (True, False), (False, True)])
def test_sample_manifest_is_valid_against_the_shipped_schema(signed, rolled_back):
    jsonschema.validate(sample.manifest(signed=signed, rolled_back=rolled_back), schema())


def test_every_section_heading_is_there_in_italian_and_english():
    text = page()
    missing = [h for h in HEADINGS if h not in text]
    assert not missing


def test_the_page_is_one_file_with_no_script_and_no_external_resource():
    text = page()
    tags = Tags(text).tags
    assert "<script" not in text.lower()
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed", "img")]
    refs = [a.get(k) for _, a in tags for k in ("src", "href", "xlink:href") if a.get(k)]
    assert refs == []
    assert not re.search(r"url\(|@import", text)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "http://" not in text and "https://" not in text


def test_the_page_prints_on_a4():
    assert "@page { size: A4;" in page()


def test_the_timeline_draws_one_bar_per_timed_phase_and_lists_the_others():
    manifest = sample.manifest()
    timed = [p for p in manifest["phases"] if p["started"] and p["ended"]]
    untimed = [p for p in manifest["phases"] if not (p["started"] and p["ended"])]
    text = page(manifest)
    svg = text[text.index("<svg"):text.index("</svg>")]
    assert untimed and len(bars(svg)) == len(timed)
    for p in untimed:
        assert f"<code>{p['step']}</code><br><span class=\"en\">non disegnata / not drawn</span>" in text
        assert p["step"] not in svg


def test_the_timeline_highlights_the_freeze_and_marks_the_gate_with_its_approver():
    text = page()
    svg = text[text.index("<svg"):text.index("</svg>")]
    assert len(re.findall(r'<rect class="freeze"', svg)) == 1
    assert "Congelamento / Freeze" in svg
    assert len(re.findall(r'<rect class="bar in-freeze gate"', svg)) == 1
    assert "go/no-go: go — approvato da / approved by Responsabile ICT (A. Bianchi)" in svg


def test_the_timeline_scales_to_the_wave_span():
    manifest = sample.manifest()
    geometry = html.timeline(manifest)
    rights = [b["x"] + b["width"] for b in geometry["bars"]]
    assert min(b["x"] for b in geometry["bars"]) == html.LABEL_WIDTH
    assert max(rights) == pytest.approx(html.WIDTH - html.RIGHT, abs=0.2)
    assert geometry["seconds"] == 6725.0
    freeze = geometry["freeze"]
    assert html.LABEL_WIDTH < freeze["x"] < freeze["x"] + freeze["width"] < html.WIDTH - html.RIGHT
    assert [t["label"] for t in geometry["ticks"]] == ["17:15", "17:30", "17:45", "18:00", "18:15", "18:30", "18:45"]


def test_a_gate_decided_before_the_first_phase_widens_the_span_instead_of_leaving_it():
    manifest = sample.manifest()
    manifest["gate"]["at"] = "2025-03-08T16:30:00Z"
    geometry = html.timeline(manifest)
    assert geometry["gate"]["x"] == html.LABEL_WIDTH
    assert geometry["start"] == "2025-03-08 16:30:00 UTC"


def test_no_timed_phase_means_no_timeline_drawn_but_the_phases_listed():
    manifest = sample.manifest()
    for p in manifest["phases"]:
        p.update(started=None, ended=None, seconds=None)
    manifest["freeze"] = None
    text = page(manifest)
    assert "<svg" not in text
    assert "No phase has times: nothing to draw." in text
    assert text.count("non disegnata / not drawn") == len(manifest["phases"])


@pytest.mark.parametrize("signed, shown", [(False, True), (True, False)])
def test_an_unsigned_pack_says_so_on_its_first_page(signed, shown):
    manifest = sample.manifest(signed=signed)
    text = page(manifest)
    first_page = text[:text.index('<section id="timeline"')]
    banner = re.search(r'<div class="unsigned".*?</div>', first_page, re.DOTALL)
    assert ("PACCHETTO NON FIRMATO / THIS PACK IS NOT SIGNED" in text) is shown
    assert bool(banner) is shown
    if shown:
        assert f"Nota / Note: {escape(manifest['signing']['note'])}" in banner.group()
    assert escape(manifest["signing"]["note"]) in first_page
    assert escape(manifest["timestamp"]["note"]) in first_page


def test_the_first_page_summarises_for_the_assessor():
    text = page()
    first_page = text[:text.index('<section id="timeline"')]
    for fact in ["hr-core", sample.RUN_ID, ">completed<", "cold", "sysadmin@hr-ops-01", "onprem-pg/presenze",
                 "cloud-pg/presenze", "hr-cloud-app-01:/srv/personale/documents", "2025-03-08 18:48:52 UTC",
                 ">complete<", "4 table(s), 4,102,997 row(s) equal on source and target", ">passed<", ">go<", "Responsabile ICT (A. Bianchi)"]:
        assert fact in first_page, fact


def test_values_are_escaped():
    manifest = sample.manifest()
    manifest["services"][0]["justification"] = HOSTILE
    manifest["operator"] = HOSTILE
    manifest["phases"][0]["step"] = HOSTILE
    results = sample.results()
    results["reconciliation"]["units"][0]["table"] = HOSTILE
    results["verification"]["sections"][0]["facts"] = {"note": HOSTILE}
    text = page(manifest, results)
    assert "<script" not in text and "<img" not in text
    assert text.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 5


def test_missing_results_and_null_values_show_a_dash_never_a_figure():
    manifest = sample.manifest()
    manifest["gate"] = {"decision": "pending", "approver": None, "operator": None, "at": None}
    manifest["services"][0]["go_live"] = None
    text = page(manifest, {})
    assert "None" not in " ".join(Tags(text).text)
    for section in ["preflight", "reconciliation", "business", "legal-evidence", "documents"]:
        body = text[text.index(f'<section id="{section}"'):]
        body = body[:body.index("</section>")]
        assert 'colspan' in body and ">—</td>" in body, section
    assert "<tr><th>Approvato da / Approved by</th><td>—" in text


@pytest.mark.parametrize("source, target, duplicates, failed, holds", [
    (3_712_408, 3_712_405, 3, 0, True),
    (100, 98, 0, 0, False),
    (100, 100, 0, 0, True),
    (100, None, 0, 0, None),
])
def test_reconciliation_equation(source, target, duplicates, failed, holds):
    unit = {"unit": "presenze.public.punch", "source": source, "target": target,
            "duplicates_removed": duplicates, "failed": failed, "status": "ok"}
    rows = html.reconciliation({"reconciliation": {"units": [unit]}})
    assert rows[0]["holds"] is holds


def test_reconciliation_shows_what_the_results_say_when_they_say_it():
    unit = {"source": 100, "target": 100, "duplicates_removed": 0, "failed": 0, "holds": False}
    assert html.reconciliation({"reconciliation": {"units": [unit]}})[0]["holds"] is False


def test_a_unit_that_does_not_reconcile_is_shown_so():
    results = sample.results()
    del results["reconciliation"]["units"][0]["holds"]
    results["reconciliation"]["units"][0].update(target=683, status="differs")
    text = page(results=results)
    assert "684 = 683 + 0 − 0</td>" in text
    assert '<span class="badge bad">no / no</span>' in text
    assert '<span class="badge bad">differs</span>' in text


def test_business_checks_put_source_and_target_side_by_side_and_only_business():
    results = sample.results()
    results["verification"]["sections"][0]["facts"] = {"source_rows": 12, "target_rows": 11, "query_ms": 40}
    checks = html.business_checks(results)
    assert [c["check"]["name"] for c in checks] == [
        "punches per month", "absence minutes per category", "overtime minutes per month", "staff per area"]
    assert checks[0]["pairs"] == [{"name": "rows", "source": 12, "target": 11}]
    assert checks[0]["others"] == {"query_ms": 40}


def test_legal_evidence_documents_and_preflight_are_shown():
    results = sample.results()
    text = page(results=results)
    digest = results["legal_evidence"]["digests"][0]
    archive = results["documents"]["archives"][0]
    assert f'<td class="hash">{digest["before"]}</td><td class="hash">{digest["after"]}</td>' in text
    assert f'<td class="hash">{archive["manifest_sha256"]}</td>' in text
    assert "912\u202f337\u202f408 B (870.1 MiB)" in text
    assert "38% free after the copy (estimate)" in text and '<span class="badge warn">warn</span>' in text


def test_thousands_of_chunks_are_summed_per_database_and_only_the_first_listed():
    results = sample.results(chunk_count=3000)
    text = page(results=results)
    summary = html.transfer(results)
    assert summary["rows"] == 3000 * 100_000
    assert {d["name"]: d["objects"] for d in summary["databases"]} == {"personnel/personale": 1000,
                                                                       "attendance/presenze": 2000}
    assert [(a["name"], a["objects"], a["count"]) for a in summary["archives"]] == [("personnel", 4, 1834)]
    assert len(re.findall(r"<td><code>public\.punch:\d+</code>", text)) == html.FIRST_CHUNKS
    assert "first 20 of 3\u202f000 (all in results/transfer.json)" in text
    assert ">300\u202f000\u202f000</td>" in text


def test_a_rollback_record_is_shown_when_the_results_have_one():
    assert "Registro del rollback" not in page()
    text = page(sample.manifest(rolled_back=True), sample.results(rollback=True))
    record = text[text.index("Registro del rollback <span class=\"en\">/ Rollback record</span>"):]
    record = record[:record.index("Prove di ripristino")]
    assert "<thead><tr><th>step</th><th>effect</th><th>at</th></tr></thead>" in record
    assert record.count("<tr><td>") == len(sample.undone())
    assert "<td>freeze:hr-app-01</td>" in record
    first_page = text[:text.index('<section id="timeline"')]
    assert "7 effetti annullati / effects undone" in first_page and ">rolled_back<" in first_page


def test_the_last_section_explains_offline_verification():
    manifest = sample.manifest()
    text = page(manifest)
    last = text[text.index('<section id="verify-offline"'):]
    for fact in ["migrate evidence verify DIR", "sha256sum -c SHA256SUMS", "journal.jsonl",
                 "[prev_hash, seq, run_id, wave, step, kind, body, repr(at)]", "attestations/*.dsse.json",
                 "in-toto Statement v1", "DSSE", "ed25519", "keys/", manifest["journal"]["head_hash"],
                 "<code>manifest.json</code> and <code>results/</code>"]:
        assert fact in last, fact


def test_the_page_does_not_change_its_inputs():
    manifest, results = sample.manifest(), sample.results(rollback=True)
    before = copy.deepcopy((manifest, results))
    html.render(manifest, results)
    assert (manifest, results) == before


@pytest.mark.parametrize("value, text", [
    (None, "—"), ("", "—"), (0, "0"), (1_234_567, "1\u202f234\u202f567"), (6301.2, "6\u202f301.2"),
    (True, "sì / yes"), (False, "no / no"), ("D'Angelo", "D'Angelo"),
])
def test_show(value, text):
    assert html.show(value) == text


@pytest.mark.parametrize("value, text", [
    ("2025-03-08T17:00:02Z", "2025-03-08 17:00:02 UTC"), ("2025-03-08T17:00:02.250000Z", "2025-03-08 17:00:02 UTC"),
    (None, "—"),
])
def test_when(value, text):
    assert html.when(value) == text
