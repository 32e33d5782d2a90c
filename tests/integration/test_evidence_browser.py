"""The evidence page in a real browser: headless Chromium opens it offline, and it must render
without a console message, with the timeline and the tables in its DOM; a screenshot and the
print layout (print-to-PDF on A4, page 1 as a PNG) are kept under tests/output/evidence/.

check_in_browser() is the reusable part: it takes any report.html (the sample's today, a lab
wave's pack later) and returns what the browser saw."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from migrate.evidence import html
from tests.unit import evidence_sample as sample

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[1] / "output" / "evidence"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
A4_POINTS = (595, 842)
WINDOW = (1280, 2000)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars",
         # Offline on purpose: a page that needed the network would show it here.
         "--host-resolver-rules=MAP * ~NOTFOUND"]
# Chromium logs each console message of the page as `...:INFO:CONSOLE:<line>] "<text>", source: ...`
# whatever its level; the page has no script, so any console message at all is a defect.
CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))\] (.*)")
TIMEOUT = 180

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (Debian's chromium package;"
                                                     " scripts/bootstrap.sh installs it)"),
    pytest.mark.skipif(not (shutil.which("pdftoppm") and shutil.which("pdfinfo") and shutil.which("pdftotext")),
                       reason="pdftoppm, pdfinfo or pdftotext is missing (Debian's poppler-utils package;"
                              " scripts/bootstrap.sh installs it)"),
]


class Dom(HTMLParser):
    """What the tests look for in the DOM Chromium serialised."""

    def __init__(self, dom: str):
        super().__init__()
        self.svgs = self.bars = self.freeze = self.tables = self.scripts = 0
        self.sections: list[str] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        self.svgs += tag == "svg" and "timeline" in classes
        self.bars += tag == "rect" and "bar" in classes
        self.freeze += tag == "rect" and "freeze" in classes
        self.tables += tag == "table"
        self.scripts += tag == "script"
        if tag in ("section", "header") and attrs.get("id"):
            self.sections.append(attrs["id"])


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=TIMEOUT, check=True)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def pdf_info(path: Path) -> dict:
    text = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    width, height = re.search(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", text, re.MULTILINE).groups()
    pages = re.search(r"^Pages:\s+(\d+)", text, re.MULTILINE).group(1)
    return {"page_size": (round(float(width)), round(float(height))), "pages": int(pages)}


def look(url: str) -> dict:
    run = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", url)
    dom = Dom(run.stdout)
    return {"dom_bytes": len(run.stdout), "console": CONSOLE.findall(run.stderr), "timeline_svgs": dom.svgs,
            "bars": dom.bars, "freeze_bands": dom.freeze, "tables": dom.tables, "scripts": dom.scripts,
            "sections": dom.sections}


def screenshot(url: str, out: Path) -> dict:
    chromium(f"--screenshot={out}", f"--window-size={WINDOW[0]},{WINDOW[1]}", url)
    return {"screenshot": out, "screenshot_bytes": out.stat().st_size, "screenshot_size": png_size(out)}


def print_layout(url: str, pdf: Path, page_one: Path) -> dict:
    chromium(f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url)
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                    str(page_one.with_suffix(""))], check=True, capture_output=True, timeout=TIMEOUT)
    text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    return {"pdf": pdf, **pdf_info(pdf), "print_page_one": page_one, "print_page_one_bytes": page_one.stat().st_size,
            "print_page_one_size": png_size(page_one), "print_page_one_text": text}


def check_in_browser(html_path: Path, *, out_dir: Path = OUTPUT, name: str | None = None) -> dict:
    """Open html_path in headless Chromium three times (DOM and console, screenshot, print to
    PDF) and return what it saw; the images and the PDF are written to out_dir as <name>.png,
    <name>-print.pdf and <name>-print-page1.png (name: the file's stem by default)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or html_path.stem
    url = html_path.resolve().as_uri()
    return {**look(url), **screenshot(url, out_dir / f"{name}.png"),
            **print_layout(url, out_dir / f"{name}-print.pdf", out_dir / f"{name}-print-page1.png")}


def test_the_sample_page_renders_in_chromium_and_prints_on_a4(tmp_path):
    manifest = sample.manifest()
    path = tmp_path / "report.html"
    path.write_text(html.render(manifest, sample.results()), encoding="utf-8")

    seen = check_in_browser(path, name="sample-report")

    assert seen["console"] == []
    assert seen["scripts"] == 0
    assert seen["timeline_svgs"] == 1 and seen["freeze_bands"] == 1
    assert seen["bars"] == sum(1 for p in manifest["phases"] if p["started"] and p["ended"])
    assert seen["sections"] == ["summary", "timeline", "services", "preflight", "reconciliation", "business",
                                "legal-evidence", "documents", "transfer", "rollback", "verify-offline"]
    assert seen["tables"] >= 15
    assert seen["screenshot_size"] == WINDOW and seen["screenshot_bytes"] > 10_000
    assert seen["page_size"] == A4_POINTS and seen["pages"] >= 2
    assert seen["print_page_one_bytes"] > 10_000
    width, height = seen["print_page_one_size"]
    assert abs(width / height - A4_POINTS[0] / A4_POINTS[1]) < 0.01
    first_page = " ".join(seen["print_page_one_text"].split())
    assert "PACCHETTO NON FIRMATO / THIS PACK IS NOT SIGNED" in first_page
    assert "Riepilogo / Summary" in first_page and "What moved where" in first_page


def test_a_console_message_is_caught(tmp_path):
    """The console check itself can fail: a page with a script error must show one."""
    path = tmp_path / "broken.html"
    path.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefinedAnywhere();</script></body></html>")
    seen = look(path.resolve().as_uri())
    assert seen["scripts"] == 1
    assert any("notDefinedAnywhere" in message for message in seen["console"])
