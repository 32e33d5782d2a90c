"""Small valid binary files, made by hand: a PNG signature scribble and one-page PDFs (plain,
or over a scan of a given size)."""

from __future__ import annotations

import random
import struct
import zlib
from datetime import datetime

from migrate.lab.data.dates import ROME
from migrate.lab.data.reference import COMUNE


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def make_signature_png(rng: random.Random) -> bytes:
    """A tiny grayscale PNG with a scribble: stands in for a scanned signature."""
    width, height = 64, 16
    pixels = [[255] * width for _ in range(height)]
    y = rng.randrange(4, 12)
    for x in range(4, width - 4):
        y = min(height - 2, max(1, y + rng.choice((-1, 0, 0, 1))))
        pixels[y][x] = pixels[y + 1][x] = 20
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw, 9))
            + _png_chunk(b"IEND", b""))


def _pdf_string(text: str) -> bytes:
    # Standard fonts use WinAnsiEncoding (cp1252): accents survive, other letters become '?'.
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def make_pdf(title: str, lines: list[str], created: datetime, *, compress: bool = False) -> bytes:
    """A minimal one-page PDF 1.4 (Helvetica text) with a correct xref table.
    compress: Flate-encode the page content, as most producers do (smaller bytea rows)."""
    return _assemble(_objects(title, lines, created, compress=compress))


def make_scanned_pdf(title: str, lines: list[str], created: datetime, *, size: int,
                     noise: bytes) -> bytes:
    """The page of make_pdf over a grayscale scan, exactly `size` bytes long.

    The scan's pixels are the first bytes of `noise` (random bytes: as incompressible as a real
    scan); its rows are as many as fit, and blanks in the trailer make up the last few bytes.
    ValueError if `size` is smaller than the page with a one-row scan, or `noise` too short."""
    width = _scan_width(size)
    objects = _objects(title, lines, created, scanned=True)
    smallest = len(_assemble(objects + [_scan(width, 1, noise)]))
    rows = 1 + max(0, size - smallest) // width
    pdf = _assemble(objects + [_scan(width, rows, noise)], size=size)
    if len(pdf) > size and rows > 1:   # the longer numbers of a taller scan did not fit
        pdf = _assemble(objects + [_scan(width, rows - 1, noise)], size=size)
    if len(pdf) != size:
        raise ValueError(f"a scanned page needs at least {smallest} bytes, not {size}")
    return pdf


def _scan_width(size: int) -> int:
    # An A4 page at 300 dpi for a large scan; narrower for a small file, so the rows come
    # close to its size and few blanks are needed.
    return max(16, min(2480, size // 48))


def _scan(width: int, rows: int, noise: bytes) -> bytes:
    pixels = noise[:width * rows]
    if len(pixels) < width * rows:
        raise ValueError(f"{width * rows} bytes of noise needed, {len(noise)} given")
    return (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 8 /Length %d >>\nstream\n" % (width, rows, len(pixels))
            + pixels + b"\nendstream")


def _objects(title: str, lines: list[str], created: datetime, *, compress: bool = False,
             scanned: bool = False) -> list[bytes]:
    """Catalog, page tree, page, font, content and info: objects 1 to 6, in that order; a
    scanned page also draws image 7 (the caller's) under its text."""
    body = [b"BT /F1 10 Tf 13 TL 56 760 Td"]
    for line in lines[:55]:            # what fits on an A4 page
        body.append(_pdf_string(line) + b" Tj T*")
    body.append(b"ET")
    content = (b"BT /F1 14 Tf 56 790 Td " + _pdf_string(title) + b" Tj ET\n"
               + b"\n".join(body))
    resources = b"/Font << /F1 4 0 R >>"
    if scanned:
        content = b"q 595 0 0 842 0 0 cm /Im1 Do Q\n" + content
        resources += b" /XObject << /Im1 7 0 R >>"
    stream_dict = b"<< /Length %d >>"
    if compress:
        content = zlib.compress(content, 9)
        stream_dict = b"<< /Length %d /Filter /FlateDecode >>"
    stamp = created.astimezone(ROME).strftime("D:%Y%m%d%H%M%S").encode()
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << " + resources + b" >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        stream_dict % len(content) + b"\nstream\n" + content + b"\nendstream",
        b"<< /Title " + _pdf_string(title) + b" /Producer (" + COMUNE.encode() + b" - sistema "
        b"documentale) /CreationDate (" + stamp + b") >>",
    ]


def _assemble(objects: list[bytes], *, size: int = 0) -> bytes:
    """The file: header, numbered objects, xref table, trailer; blanks up to `size` bytes."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    head = b"trailer\n<< /Size %d" % (len(objects) + 1)
    tail = b" /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref_at
    # Blanks inside the trailer dictionary come after the xref table: they move no offset.
    blanks = max(0, size - len(out) - len(head) - len(tail))
    out += head + b" " * blanks + tail
    return bytes(out)
