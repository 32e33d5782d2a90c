"""Deterministic synthetic data for the lab: the Comune's HR and attendance databases and its
document archive.

`seed()` drops and recreates the databases `personale` (HR) and `presenze` (attendance),
loads the schema from `sql/`, fills them and writes the personnel-file archive (small, valid
PDF files) with its index in `personale.personnel_document`.

How the data is made:
- the small HR world (people, contracts, careers, families, acts, documents) is generated in
  Python from `random.Random` streams seeded with the seed, and loaded with COPY;
- the big attendance tables (punches, daily balances, justifications, ...) are generated
  inside PostgreSQL by set-based SQL (sql/presenze_fill.sql) where every random choice is a
  hash of (seed, row identity), so no generator state is involved;
- every timestamp derives from the fixed reference day `AS_OF`, never from the clock.
Same seed -> same rows, byte for byte (on the same PostgreSQL major version).

Nothing here logs row values: only phases, counts and durations.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import shutil
import struct
import time
import unicodedata
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Iterator
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = ["AS_OF", "DATABASES", "LEGAL_EVIDENCE", "seed", "tax_code"]

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")
DATABASES = ("personale", "presenze")
# Tables that are legal evidence (false-attendance cases): they must stay provably unaltered.
LEGAL_EVIDENCE = ("presenze.punch", "presenze.monthly_timesheet")

# The synthetic world's "today": data runs up to this day, whatever the real date is.
AS_OF = date(2025, 11, 14)
# CCNL Funzioni Locali 2019-21: the A/B/C/D categories became areas on this day.
REFORM_DATE = date(2023, 4, 1)
ROME = ZoneInfo("Europe/Rome")
# Where the source application host keeps the archive (see CONTRACT.md).
ARCHIVE_URI_PREFIX = "file:///srv/personale/documents/"
COMUNE = "Comune di Valdoria"


# --- public entry point -------------------------------------------------------------------


def seed(*, admin_dsn: str, archive_dir: Path, employees: int, years: int, seed: int,
         owner: str = "hr_owner") -> dict:
    """Recreate `personale` and `presenze` on the cluster of `admin_dsn` with synthetic data.

    admin_dsn: superuser DSN to database `postgres`. The databases are created OWNER `owner`
    (a NOLOGIN role, created if missing) and every object in them belongs to it.
    archive_dir: emptied, then filled with `<year>/<employee_code>/<kind>-<id>.pdf`.
    employees: people in the HR history; years: calendar years of attendance up to AS_OF.
    Returns row counts per "db.table" and {"archive": {"files": n, "bytes": n}}.
    """
    _check_args(employees, years, seed, owner)
    archive_dir = Path(archive_dir)
    start, end = window(years)
    began = time.monotonic()
    hr = build_hr(seed, employees, start, end)
    _recreate_databases(admin_dsn, owner)
    counts: dict = {}
    with _session(admin_dsn, "personale", owner) as conn:
        archive = _fill_personale(conn, hr, archive_dir, seed, start, end)
        counts.update(_count_rows(conn, "personale"))
    with _session(admin_dsn, "presenze", owner) as conn:
        _fill_presenze(conn, hr, seed, start, end)
        counts.update(_count_rows(conn, "presenze"))
    counts["archive"] = archive
    log.info("seeded %d employees x %d years in %.1f s: %d punches, %d archive files",
             employees, years, time.monotonic() - began,
             counts.get("presenze.punch", 0), archive["files"])
    return counts


def window(years: int) -> tuple[date, date]:
    """Attendance window: from 1 January `years - 1` years before AS_OF's year to AS_OF."""
    return date(AS_OF.year - years + 1, 1, 1), AS_OF


def _check_args(employees: int, years: int, seed_value: int, owner: str) -> None:
    if not isinstance(employees, int) or employees < 1:
        raise ValueError("employees must be a positive integer")
    if not isinstance(years, int) or not 1 <= years <= 30:
        raise ValueError("years must be an integer between 1 and 30")
    # The SQL generator multiplies the seed; keep it well inside bigint.
    if not isinstance(seed_value, int) or not 0 <= seed_value < 2**32:
        raise ValueError("seed must be an integer in [0, 2**32)")
    if not owner:
        raise ValueError("owner must be a role name")


# --- reference data -----------------------------------------------------------------------

MALE_NAMES = [
    "Nicolò", "Niccolò", "Giuseppe", "Giovanni", "Antonio", "Marco", "Luca", "Andrea",
    "Francesco", "Alessandro", "Stefano", "Roberto", "Paolo", "Davide", "Simone", "Matteo",
    "Lorenzo", "Gabriele", "Mattia", "Riccardo", "Salvatore", "Vincenzo", "Pietro", "Carlo",
    "Fabrizio", "Massimo", "Gianluca", "Raffaele", "Domenico", "Emanuele", "Michele", "Ciro",
    "Federico", "Daniele", "Gian Maria", "Elia",
]
FEMALE_NAMES = [
    "Maria", "Anna", "Giulia", "Francesca", "Chiara", "Sara", "Lucia", "Paola", "Elena",
    "Federica", "Valentina", "Martina", "Alessandra", "Silvia", "Laura", "Roberta", "Cristina",
    "Simona", "Barbara", "Monica", "Daniela", "Raffaella", "Manuela", "Noemi", "Greta",
    "Beatrice", "Ilaria", "Rosa", "Carmela", "Immacolata", "Maria Grazia", "Anna Maria",
    "Désirée", "Zoe",
]
SURNAMES = [
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
    "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano",
    "Rizzo", "Lombardi", "Moretti", "Barbieri", "Fontana", "Santoro", "Mariani", "Rinaldi",
    "Caruso", "Ferrara", "Galli", "Martini", "Leone", "Longo", "Gentile", "Martinelli",
    "Vitale", "Serra", "Coppola", "De Santis", "D'Angelo", "D'Amico", "D'Alessandro",
    "Dell'Acqua", "Dell'Orto", "Sant'Elia", "D'Urso", "Dall'Ara", "Zappalà", "Cannavò",
    "Gullì", "Nicolò", "Ferrè", "Lo Iacono", "La Rosa", "Dalla Valle", "Di Stefano",
    "Pellegrino", "Palumbo", "Sanna", "Fabbri", "Orlando", "Caputo", "Marchetti", "Farina",
    "Sorrentino", "Parisi", "Cattaneo", "Musumeci",
]
# Foreign-born staff: (country, cadastral code, surnames, male names, female names).
FOREIGN_ORIGINS = [
    ("Spagna", "Z131", ["Fernández", "García", "Muñoz"], ["José", "Jesús"],
     ["Lucía", "Sofía"]),
    ("Romania", "Z129", ["Popescu", "Ionescu"], ["Andrei", "Mihai"], ["Ioana", "Elena"]),
    ("Francia", "Z110", ["Lefèvre", "Dubois"], ["François", "Jérôme"], ["Hélène", "Chloé"]),
    ("Germania", "Z112", ["Müller", "Schäfer"], ["Jürgen", "Lukas"], ["Jördis", "Anna"]),
    ("Albania", "Z100", ["Hoxha", "Shehu"], ["Ardit", "Erion"], ["Elira", "Ana"]),
]
# Italian birth places with their cadastral (Belfiore) codes.
BIRTH_PLACES = [
    ("Roma", "H501"), ("Milano", "F205"), ("Napoli", "F839"), ("Torino", "L219"),
    ("Palermo", "G273"), ("Genova", "D969"), ("Bologna", "A944"), ("Firenze", "D612"),
    ("Bari", "A662"), ("Catania", "C351"), ("Venezia", "L736"), ("Verona", "L781"),
    ("Messina", "F158"), ("Padova", "G224"), ("Brescia", "B157"), ("Forlì", "D704"),
    ("Cantù", "B639"), ("L'Aquila", "A345"), ("Reggio di Calabria", "H224"),
]
RESIDENCES = [
    ("Valdoria", "26900"), ("Valdoria", "26900"), ("Valdoria", "26900"),
    ("Sant'Angelo Lodigiano", "26866"), ("Castell'Arquato", "29014"), ("Cantù", "22063"),
    ("Forlì", "47121"), ("Codogno", "26845"),
]
STREETS = [
    "Via Roma", "Via Giuseppe Garibaldi", "Via dell'Indipendenza", "Piazza Sant'Agostino",
    "Via XX Settembre", "Corso Vittorio Emanuele II", "Via Nicolò Tommaseo",
    "Viale della Libertà", "Via Sant'Antonio", "Vicolo dell'Orto", "Via Papa Giovanni XXIII",
    "Via San Martino", "Largo Cà Rossa",
]

# (code, name, parent code, terminal code, hiring weight)
ORG_UNITS = [
    ("SEG", "Segreteria Generale", None, "T01", 3),
    ("AAG", "Settore Affari Generali", None, "T01", 0),
    ("DEM", "Servizi Demografici e Stato Civile", "AAG", "T02", 10),
    ("PRO", "Ufficio Protocollo e Archivio", "AAG", "T01", 5),
    ("FIN", "Settore Economico-Finanziario", None, "T01", 0),
    ("RAG", "Servizio Ragioneria", "FIN", "T01", 6),
    ("TRI", "Ufficio Tributi", "FIN", "T02", 6),
    ("PER", "Ufficio Personale", "FIN", "T01", 4),
    ("TEC", "Settore Tecnico", None, "T01", 0),
    ("LLP", "Servizio Lavori Pubblici e Manutenzioni", "TEC", "T01", 9),
    ("URB", "Servizio Urbanistica ed Edilizia Privata", "TEC", "T01", 6),
    ("CAN", "Cantiere Comunale", "TEC", "T04", 10),
    ("SOC", "Settore Servizi alla Persona", None, "T05", 0),
    ("SSO", "Servizi Sociali", "SOC", "T05", 8),
    ("SCU", "Servizi Scolastici e Asilo Nido \"L'Aquilone\"", "SOC", "T07", 9),
    ("BIB", "Biblioteca Civica Sant'Agostino", "SOC", "T06", 4),
    ("POL", "Corpo di Polizia Locale", None, "T03", 14),
]
TOP_UNITS_WITH_HEAD = ["AAG", "FIN", "TEC", "SOC", "POL"]

# (code, location, model, ip address or None, installed on)
TERMINALS = [
    ("T01", "Municipio - ingresso dipendenti", "Solari LBX 4000", "10.12.20.11", date(2009, 5, 4)),
    ("T02", "Municipio - piano terra, Demografici", "Solari LBX 4000", "10.12.20.12",
     date(2009, 5, 4)),
    ("T03", "Comando Polizia Locale", "ZKTeco ProCapture", "10.12.21.10", date(2016, 3, 1)),
    ("T04", "Cantiere comunale", "Solari LBX 2000", None, date(2004, 10, 1)),
    ("T05", "Palazzo dei Servizi Sociali", "ZKTeco ProCapture", "10.12.22.10", date(2016, 3, 1)),
    ("T06", "Biblioteca civica", "Solari LBX 2000", "10.12.23.10", date(2011, 9, 12)),
    ("T07", "Asilo nido \"L'Aquilone\"", "ZKTeco SpeedFace", "10.12.24.10", date(2021, 1, 11)),
]

# (code, description, weekly, daily, long-day minutes, long days, start, min lunch, flex)
WORK_PROFILES = [
    ("STD36", "Tempo pieno 36 ore, rientri martedì e giovedì", 2160, 360, 540, [2, 4], "08:00",
     30, 30),
    ("PT30", "Part-time 83,33% (30 ore)", 1800, 360, None, [], "08:00", None, 30),
    ("PT24", "Part-time 66,67% (24 ore)", 1440, 288, None, [], "08:30", None, 30),
    ("PT18", "Part-time 50% (18 ore)", 1080, 216, None, [], "09:00", None, 30),
    ("TURNI", "Turni Polizia Locale 7h12", 2160, 432, None, [], "07:00", None, 15),
]
PROFILE_BY_PART_TIME = {Decimal("100.00"): "STD36", Decimal("83.33"): "PT30",
                        Decimal("66.67"): "PT24", Decimal("50.00"): "PT18"}
SHIFTS = [("M", "Turno mattino", "07:00", "14:12"), ("P", "Turno pomeriggio", "12:48", "20:00")]

# (code, description, kind, special category, GDPR category, counts as work, yearly limit)
REASON_CODES = [
    ("FERIE", "Ferie", "ASSENZA", False, None, True, None),
    ("FESOP", "Festività soppresse", "ASSENZA", False, None, True, 1728),
    ("MAL", "Malattia", "ASSENZA", True, "salute", False, None),
    ("VISMED", "Permesso per visita medica", "PERMESSO", True, "salute", False, 1080),
    ("L104", "Permesso L. 104/1992 - assistenza a familiare con disabilità", "ASSENZA", True,
     "salute (disabilità)", True, None),
    ("PSIND", "Permesso sindacale retribuito", "ASSENZA", True, "appartenenza sindacale", True,
     None),
    ("MATERN", "Congedo di maternità", "ASSENZA", True, "salute", True, None),
    ("DONSAN", "Donazione del sangue", "ASSENZA", True, "salute", True, None),
    ("PBREVE", "Permesso breve da recuperare", "PERMESSO", False, None, False, 2160),
    ("SERV", "Servizio esterno", "SERVIZIO", False, None, True, None),
    ("LAGILE", "Lavoro agile", "LAVORO_AGILE", False, None, True, None),
]

AREAS = {"A": "OPE", "B": "OES", "C": "IST", "D": "FEQ"}
AREA_LABELS = {
    "OPE": "Area degli Operatori",
    "OES": "Area degli Operatori esperti",
    "IST": "Area degli Istruttori",
    "FEQ": "Area dei Funzionari e dell'Elevata Qualificazione",
}
POSITIONS = {"A": 5, "B": 8, "C": 6, "D": 7}  # economic positions per old category
AREA_LETTER = {area: letter for letter, area in AREAS.items()}

UNIONS = ["FP CGIL", "CISL FP", "UIL FPL", "CSA Regioni Autonomie Locali", "USB PI"]
CHARGES = [
    ("Ritardi ripetuti non giustificati", "RIMPROVERO_SCRITTO", False),
    ("Assenza ingiustificata", "MULTA", False),
    ("Comportamento scorretto verso l'utenza", "RIMPROVERO_VERBALE", False),
    ("Falsa attestazione della presenza in servizio (art. 55-quater d.lgs. 165/2001)",
     "SOSPENSIONE", True),
]
DOC_KINDS = ["contratto", "documento-identita", "curriculum", "atto-nomina", "delega-sindacale",
             "verbale-104", "giudizio-idoneita", "valutazione", "provvedimento-disciplinare"]


# --- Italian identifiers --------------------------------------------------------------------

_CF_MONTHS = "ABCDEHLMPRST"
_CF_ODD = dict(zip("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                   [1, 0, 5, 7, 9, 13, 15, 17, 19, 21] +
                   [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16,
                    10, 22, 25, 24, 23]))
_CF_OMOCODE = "LMNPQRSTUV"        # digit -> letter substitution for homocodes
_CF_OMOCODE_POSITIONS = (14, 13, 12, 10, 9, 7, 6)


def _ascii_letters(text: str) -> str:
    """Upper-case A-Z letters of `text`, accents stripped (Nicolò -> NICOLO)."""
    plain = unicodedata.normalize("NFKD", text).upper()
    return "".join(c for c in plain if "A" <= c <= "Z")


def _cf_part(text: str, *, given_name: bool) -> str:
    letters = _ascii_letters(text)
    consonants = [c for c in letters if c not in "AEIOU"]
    vowels = [c for c in letters if c in "AEIOU"]
    # Given names with four or more consonants use the 1st, 3rd and 4th.
    if given_name and len(consonants) >= 4:
        consonants = [consonants[0], consonants[2], consonants[3]]
    return ("".join(consonants + vowels) + "XXX")[:3]


def _cf_check(first15: str) -> str:
    total = 0
    for i, ch in enumerate(first15):
        if i % 2 == 0:                       # odd positions, 1-based
            total += _CF_ODD[ch]
        else:
            total += int(ch) if ch.isdigit() else ord(ch) - ord("A")
    return chr(ord("A") + total % 26)


def tax_code(surname: str, given_name: str, sex: str, birth: date, place_code: str,
             homocode: int = 0) -> str:
    """Italian codice fiscale; `homocode` > 0 applies that many digit->letter substitutions
    (what the revenue agency does when two people would get the same code)."""
    day = birth.day + (40 if sex == "F" else 0)
    chars = list(_cf_part(surname, given_name=False) + _cf_part(given_name, given_name=True)
                 + f"{birth.year % 100:02d}" + _CF_MONTHS[birth.month - 1] + f"{day:02d}"
                 + place_code)
    for pos in _CF_OMOCODE_POSITIONS[:homocode]:
        chars[pos] = _CF_OMOCODE[int(chars[pos])]
    first15 = "".join(chars)
    return first15 + _cf_check(first15)


def _unique_tax_code(used: set[str], *args) -> str:
    for homocode in range(len(_CF_OMOCODE_POSITIONS) + 1):
        code = tax_code(*args, homocode=homocode)
        if code not in used:
            used.add(code)
            return code
    raise RuntimeError("tax code space exhausted")  # needs 8 identical people: not reachable


def _iban(rng: random.Random) -> str:
    """An Italian IBAN with a correct ISO 7064 mod-97 check (CIN is random)."""
    bban = (rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + f"{rng.randrange(10**5):05d}"
            + f"{rng.randrange(10**5):05d}" + f"{rng.randrange(10**12):012d}")
    digits = "".join(str(int(c, 36)) for c in bban + "IT00")
    return f"IT{98 - int(digits) % 97:02d}{bban}"


# --- small binary formats -----------------------------------------------------------------


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
    body = [b"BT /F1 10 Tf 13 TL 56 760 Td"]
    for line in lines[:55]:            # what fits on an A4 page
        body.append(_pdf_string(line) + b" Tj T*")
    body.append(b"ET")
    content = (b"BT /F1 14 Tf 56 790 Td " + _pdf_string(title) + b" Tj ET\n"
               + b"\n".join(body))
    stream_dict = b"<< /Length %d >>"
    if compress:
        content = zlib.compress(content, 9)
        stream_dict = b"<< /Length %d /Filter /FlateDecode >>"
    stamp = created.astimezone(ROME).strftime("D:%Y%m%d%H%M%S").encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        stream_dict % len(content) + b"\nstream\n" + content + b"\nendstream",
        b"<< /Title " + _pdf_string(title) + b" /Producer (" + COMUNE.encode() + b" - sistema "
        b"documentale) /CreationDate (" + stamp + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref_at)
    return bytes(out)


# --- date helpers ---------------------------------------------------------------------------


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:                 # 29 February in a non-leap year
        return day.replace(year=day.year + years, day=28)


def _rand_date(rng: random.Random, low: date, high: date) -> date:
    if high <= low:
        return low
    return low + timedelta(days=rng.randint(0, (high - low).days))


def _local(day: date, seconds: int) -> datetime:
    """A Europe/Rome wall-clock time on `day`, `seconds` after midnight."""
    naive = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)
    return naive.replace(tzinfo=ROME)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _overlaps(start: date, end: date | None, low: date, high: date) -> bool:
    return start <= high and (end is None or end >= low)


def easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l) // 451
    month = (h + l - 7 * m + 114) // 31
    day = (h + l - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def holidays(year: int) -> list[tuple[date, str]]:
    """Italian national holidays plus the patron saint of Valdoria (San Michele, 29/9)."""
    fixed = [((1, 1), "Capodanno"), ((1, 6), "Epifania"), ((4, 25), "Festa della Liberazione"),
             ((5, 1), "Festa del Lavoro"), ((6, 2), "Festa della Repubblica"),
             ((8, 15), "Ferragosto"), ((9, 29), "San Michele, santo patrono"),
             ((11, 1), "Ognissanti"), ((12, 8), "Immacolata Concezione"), ((12, 25), "Natale"),
             ((12, 26), "Santo Stefano")]
    days = [(date(year, m, d), name) for (m, d), name in fixed]
    days.append((easter(year) + timedelta(days=1), "Lunedì dell'Angelo"))
    return sorted(days)


# --- the HR world ---------------------------------------------------------------------------


@dataclass
class Act:
    """An administrative act; id and number are given once all acts are known, in date order."""
    act_type: str
    act_date: date
    subject: str
    act_id: int = 0


@dataclass
class Contract:
    contract_id: int
    employee_id: int
    contract_type: str
    start: date
    end: date | None
    part_time: Decimal
    unit: str
    reason: str | None = None
    hire_act: Act | None = None
    classes: list = field(default_factory=list)   # (category code, differential, from, to)
    units: list = field(default_factory=list)     # (unit code, from, to)
    # (date, type, from category, to category, from unit, to unit, act, notes)
    events: list = field(default_factory=list)


@dataclass
class Person:
    employee_id: int
    code: str
    surname: str
    given_name: str
    sex: str
    birth: date
    birth_place: str
    birth_code: str
    first_hire: date
    tax_code: str = ""
    contracts: list[Contract] = field(default_factory=list)
    family: list = field(default_factory=list)    # rows for family_member (without id)
    row: tuple = ()


@dataclass
class Hr:
    start: date
    end: date
    people: list[Person] = field(default_factory=list)
    acts: list[Act] = field(default_factory=list)
    family: list[tuple] = field(default_factory=list)
    appointments: list[tuple] = field(default_factory=list)
    delegations: list[tuple] = field(default_factory=list)
    disciplinary: list[tuple] = field(default_factory=list)
    documents: list[dict] = field(default_factory=list)
    member_ids: dict = field(default_factory=dict)   # (employee_id, index) -> member_id
    reform_act: Act | None = None

    def act(self, act_type: str, act_date: date, subject: str) -> Act:
        entry = Act(act_type, act_date, subject)
        self.acts.append(entry)
        return entry


# Features every seeded lab must show, whatever its size: employee number -> trait.
SHOWCASE = {1: "apostrophe", 2: "foreign", 3: "law104", 4: "union", 5: "rehired",
            6: "disciplinary", 7: "shift", 8: "part_time"}


def build_hr(seed_value: int, employees: int, start: date, end: date) -> Hr:
    """Generate the whole HR world in memory (deterministic for a seed)."""
    rng = random.Random(f"hr:{seed_value}")
    hr = Hr(start, end)
    used_tax_codes: set[str] = set()
    used_emails: set[str] = set()
    contract_ids = iter(range(1, 10**9))
    for employee_id in range(1, employees + 1):
        trait = SHOWCASE.get(employee_id)
        person = _make_person(rng, employee_id, trait, start, end, used_tax_codes)
        _make_contracts(rng, hr, person, trait, contract_ids)
        _make_family(rng, hr, person, trait, used_tax_codes)
        person.row = _employee_row(rng, person, used_emails)
        hr.people.append(person)
    _number_family(hr)
    _make_appointments(rng, hr)
    _make_delegations(rng, hr)
    _make_disciplinary(rng, hr)
    _make_documents(rng, hr)
    _number_acts(hr)
    return hr


def _make_person(rng: random.Random, employee_id: int, trait: str | None, start: date,
                 end: date, used_tax_codes: set[str]) -> Person:
    sex = rng.choice("MF")
    foreign = trait == "foreign" or (trait is None and rng.random() < 0.06)
    if trait == "apostrophe":
        sex, surname, given = "M", "D'Angelo", "Nicolò"
        place, place_code = "L'Aquila", "A345"
    elif foreign:
        country, place_code, surnames, males, females = (
            FOREIGN_ORIGINS[0] if trait == "foreign" else rng.choice(FOREIGN_ORIGINS))
        if trait == "foreign":
            sex = "F"
        surname = rng.choice(surnames)
        given = "Lucía" if trait == "foreign" else rng.choice(males if sex == "M" else females)
        place = country
    else:
        surname = rng.choice(SURNAMES)
        given = rng.choice(MALE_NAMES if sex == "M" else FEMALE_NAMES)
        place, place_code = rng.choice(BIRTH_PLACES)
    first_hire = _pick_first_hire(rng, trait, start, end)
    birth = _pick_birth(rng, first_hire, start)
    person = Person(employee_id, f"E{employee_id:05d}", surname, given, sex, birth, place,
                    place_code, first_hire)
    person.tax_code = _unique_tax_code(used_tax_codes, surname, given, sex, person.birth,
                                       place_code)
    return person


def _pick_first_hire(rng: random.Random, trait: str | None, start: date, end: date) -> date:
    span = (end - start).days
    if trait == "rehired":
        return start + timedelta(days=min(20, span // 10))
    if rng.random() < 0.72:
        return _rand_date(rng, date(1988, 1, 1), start - timedelta(days=1))
    return _rand_date(rng, start, end - timedelta(days=15))


def _pick_birth(rng: random.Random, hire: date, start: date) -> date:
    age = rng.randint(20, 35) if hire.year < 2000 else rng.randint(22, 50)
    birth = _add_years(hire, -age) - timedelta(days=rng.randint(0, 364))
    # Nobody in the window is past 64 at its start (retirement is at 67).
    oldest = _add_years(start, -64)
    if birth < oldest:
        birth = oldest + timedelta(days=rng.randint(0, 900))
    return birth


def _pick_part_time(rng: random.Random, trait: str | None) -> Decimal:
    if trait == "part_time":
        return Decimal("50.00")
    if trait in ("shift", "rehired") or rng.random() >= 0.14:
        return Decimal("100.00")
    return rng.choice([Decimal("50.00"), Decimal("66.67"), Decimal("83.33")])


def _pick_unit(rng: random.Random, trait: str | None) -> str:
    if trait == "shift":
        return "POL"
    units = [u for u in ORG_UNITS if u[4] > 0]
    unit = rng.choices(units, weights=[u[4] for u in units])[0][0]
    if trait in ("part_time", "rehired") and unit == "POL":
        return "DEM"           # keep showcase employees off the shift rota
    return unit


def _pick_initial_category(rng: random.Random, unit: str, hire: date) -> str:
    if unit == "POL":
        letter = rng.choices("CD", weights=[80, 20])[0]
    elif unit == "CAN":
        letter = rng.choices("AB", weights=[30, 70])[0]
    else:
        letter = rng.choices("ABCD", weights=[5, 25, 50, 20])[0]
    if hire >= REFORM_DATE:
        return AREAS[letter]
    if letter == "B":
        return rng.choice(["B1", "B3"])
    if letter == "D":
        return rng.choices(["D1", "D3"], weights=[70, 30])[0]
    return f"{letter}1"


def _make_contracts(rng: random.Random, hr: Hr, person: Person, trait: str | None,
                    contract_ids: Iterator[int]) -> None:
    start, end = hr.start, hr.end
    hire = person.first_hire
    retirement = _add_years(person.birth, 67)
    unit = _pick_unit(rng, trait)
    part_time = _pick_part_time(rng, trait)
    fixed_term = trait == "rehired" or (
        trait is None and hire >= _add_years(start, -2) and rng.random() < 0.12)
    if fixed_term:
        length = min(rng.randint(300, 900), max(60, (end - hire).days * 2 // 5))
        first_end = hire + timedelta(days=length)
        _add_contract(rng, hr, person, next(contract_ids), "TD", hire, first_end, part_time,
                      unit, "SCADENZA_TERMINE", rehire=False)
        gap_room = (end - first_end).days - 10
        if gap_room > 30 and (trait == "rehired" or rng.random() < 0.35):
            again = first_end + timedelta(days=rng.randint(30, min(300, gap_room)))
            stop, reason = _pick_termination(rng, trait, again, end, retirement)
            _add_contract(rng, hr, person, next(contract_ids), "TI", again, stop, part_time,
                          unit, reason, rehire=True)
        return
    stop, reason = _pick_termination(rng, trait, hire, end, retirement)
    _add_contract(rng, hr, person, next(contract_ids), "TI", hire, stop, part_time, unit,
                  reason, rehire=False)


def _pick_termination(rng: random.Random, trait: str | None, hire: date, end: date,
                      retirement: date) -> tuple[date | None, str | None]:
    if retirement <= end:
        return retirement - timedelta(days=1), "PENSIONAMENTO"
    low = max(hire, end - timedelta(days=3650)) + timedelta(days=60)
    if trait is None and low < end and rng.random() < 0.08:
        return _rand_date(rng, low, end), rng.choice(["DIMISSIONI", "MOBILITA_ESTERNA"])
    return None, None


def _add_contract(rng: random.Random, hr: Hr, person: Person, contract_id: int, kind: str,
                  begin: date, stop: date | None, part_time: Decimal, unit: str,
                  reason: str | None, *, rehire: bool) -> None:
    contract = Contract(contract_id, person.employee_id, kind, begin, stop, part_time, unit,
                        reason if stop is not None else None)
    label = "Riassunzione" if rehire else "Assunzione"
    span = "a tempo determinato" if kind == "TD" else "a tempo indeterminato"
    contract.hire_act = hr.act("DETERMINA", begin - timedelta(days=rng.randint(5, 30)),
                               f"{label} {span} - matricola {person.code}")
    category = _pick_initial_category(rng, unit, begin)
    contract.events.append((begin, "RIASSUNZIONE" if rehire else "ASSUNZIONE", None, category,
                            None, unit, contract.hire_act, None))
    _classification_history(rng, hr, person, contract, category)
    _unit_history(rng, hr, person, contract)
    if stop is not None and stop <= hr.end:
        act = hr.act("DETERMINA", stop - timedelta(days=rng.randint(10, 60)),
                     f"Cessazione dal servizio ({reason}) - matricola {person.code}")
        contract.events.append((stop, "CESSAZIONE", None, None, None, None, act, None))
    contract.events.sort(key=lambda e: (e[0], e[1]))
    person.contracts.append(contract)


def _next_category(rng: random.Random, code: str) -> tuple[str, str]:
    """An old-system career step: next economic position, rarely a vertical one."""
    letter, position = code[0], int(code[1:])
    if letter in "BC" and rng.random() < 0.06:
        upper = "C" if letter == "B" else "D"
        return f"{upper}1", "PROGRESSIONE_VERTICALE"
    if position < POSITIONS[letter]:
        return f"{letter}{position + 1}", "PROGRESSIONE_ECONOMICA"
    return code, ""


def _classification_history(rng: random.Random, hr: Hr, person: Person, contract: Contract,
                            category: str) -> None:
    """Career steps every 4-8 years; old categories become areas on REFORM_DATE."""
    limit = contract.end or hr.end
    code, differential = category, (0 if category in AREA_LABELS else None)
    since = contract.start
    reform_pending = category not in AREA_LABELS and contract.start < REFORM_DATE <= limit
    step = _add_years(contract.start, rng.randint(4, 8))
    while True:
        due = [d for d in (REFORM_DATE if reform_pending else None, step) if d and d <= limit]
        if not due:
            break
        when = min(due)
        if reform_pending and when == REFORM_DATE:
            new_code, new_diff, event, act, notes = (
                AREAS[code[0]], 0, "RIORDINO_AREE", _reform_act(hr),
                "Art. 13 CCNL Funzioni Locali 16/11/2022")
            reform_pending = False
            if step <= when:            # no second step on the reform day itself
                step = _add_years(when, 1)
        else:
            step = _add_years(when, rng.randint(4, 8))
            if code in AREA_LABELS:
                new_code, new_diff, event = code, differential + 1, "DIFFERENZIALE_STIPENDIALE"
            else:
                (new_code, event), new_diff = _next_category(rng, code), None
            if not event:
                continue
            act = hr.act("DETERMINA", when - timedelta(days=rng.randint(15, 90)),
                         f"{event.replace('_', ' ').capitalize()} - matricola {person.code}")
            notes = None
        contract.classes.append((code, differential, since, when - timedelta(days=1)))
        contract.events.append((when, event, code, new_code, None, None, act, notes))
        code, differential, since = new_code, new_diff, when
    contract.classes.append((code, differential, since, contract.end))


def _reform_act(hr: Hr) -> Act:
    """The one council resolution that took note of the new classification system."""
    if hr.reform_act is None:
        hr.reform_act = hr.act("DELIBERA_GC", date(2023, 3, 28),
                               "Presa d'atto del nuovo sistema di classificazione del personale "
                               "(CCNL Funzioni Locali 2019-2021)")
    return hr.reform_act


def _unit_history(rng: random.Random, hr: Hr, person: Person, contract: Contract) -> None:
    """Most people stay in one unit; some move once (never into or out of the police)."""
    limit = contract.end or hr.end
    unit = contract.unit
    if unit != "POL" and (limit - contract.start).days > 730 and rng.random() < 0.18:
        when = _rand_date(rng, contract.start + timedelta(days=365), limit - timedelta(days=30))
        choices = [u[0] for u in ORG_UNITS if u[4] > 0 and u[0] not in (unit, "POL")]
        new_unit = rng.choice(choices)
        act = hr.act("DETERMINA", when - timedelta(days=rng.randint(5, 40)),
                     f"Mobilità interna - matricola {person.code}")
        contract.units.append((unit, contract.start, when - timedelta(days=1)))
        contract.events.append((when, "TRASFERIMENTO", None, None, unit, new_unit, act, None))
        unit = new_unit
    contract.units.append((unit, contract.units[-1][2] + timedelta(days=1)
                           if contract.units else contract.start, contract.end))


def _make_family(rng: random.Random, hr: Hr, person: Person, trait: str | None,
                 used_tax_codes: set[str]) -> None:
    members = []
    if rng.random() < 0.55:
        sex = "F" if person.sex == "M" else "M"
        birth = _add_years(person.birth, rng.randint(-5, 5)) + timedelta(days=rng.randint(0, 300))
        members.append(("CONIUGE", sex, birth, False, rng.random() < 0.2))
    for _ in range(rng.choices([0, 1, 2, 3], weights=[35, 25, 30, 10])[0]):
        birth = _add_years(person.birth, rng.randint(24, 45)) + timedelta(days=rng.randint(0, 364))
        if birth < AS_OF:
            members.append(("FIGLIO", rng.choice("MF"), birth, rng.random() < 0.04,
                            birth > _add_years(AS_OF, -24)))
    if trait == "law104" or rng.random() < 0.12:
        birth = _add_years(person.birth, -rng.randint(25, 35)) - timedelta(days=rng.randint(0, 364))
        disabled = trait == "law104" or rng.random() < 0.55
        members.append(("GENITORE", rng.choice("MF"), birth, disabled, disabled))
    for relation, sex, birth, disability, dependent in members:
        surname = person.surname if relation != "CONIUGE" else rng.choice(SURNAMES)
        given = rng.choice(MALE_NAMES if sex == "M" else FEMALE_NAMES)
        place, place_code = rng.choice(BIRTH_PLACES)
        code = None
        if rng.random() >= 0.05:                # old records without the tax code
            code = _unique_tax_code(used_tax_codes, surname, given, sex, birth, place_code)
        pct = rng.choice([Decimal("50.00"), Decimal("100.00")]) if dependent else None
        notes = "Convivente" if relation == "GENITORE" and rng.random() < 0.3 else None
        person.family.append((person.employee_id, relation, surname, given, code, birth,
                              disability, dependent, pct, notes))


def _employee_row(rng: random.Random, person: Person, used_emails: set[str]) -> tuple:
    local = ".".join(_ascii_letters(p).lower() for p in (person.given_name.split()[0],
                                                         person.surname))
    email = f"{local}@comune.valdoria.it"
    if email in used_emails:
        email = f"{local}{person.employee_id}@comune.valdoria.it"
    used_emails.add(email)
    city, postal = rng.choice(RESIDENCES)
    street = f"{rng.choice(STREETS)} {rng.randint(1, 120)}{rng.choice(['', '', '', '/A', '/B'])}"
    first_hire = person.contracts[0].start
    created = _local(max(first_hire, date(2004, 9, 1)), 32400 + rng.randint(0, 28000))
    updated = created
    if rng.random() < 0.4:
        updated = _local(_rand_date(rng, created.date(), AS_OF), 32400 + rng.randint(0, 28000))
    return (
        person.employee_id, person.code, person.tax_code, person.surname, person.given_name,
        person.sex, person.birth, person.birth_place, person.birth_code, street, postal, city,
        email,
        f"{local}{rng.randint(1, 99)}@example.org" if rng.random() < 0.25 else None,
        f"{local}@pec.example.it" if rng.random() < 0.08 else None,
        f"+39 3{rng.randint(20, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
        if rng.random() < 0.65 else None,
        _iban(rng) if rng.random() < 0.88 else None,
        make_signature_png(rng) if rng.random() < 0.6 else None,
        rng.choice(["Richiesta di trasferimento presentata", "Dati anagrafici verificati"])
        if rng.random() < 0.05 else None,
        created, updated,
    )


def _employed_in_window(person: Person, hr: Hr) -> list[Contract]:
    return [c for c in person.contracts if _overlaps(c.start, c.end, hr.start, hr.end)]


def _category_letter(code: str) -> str:
    return AREA_LETTER.get(code, code[0])


def _make_appointments(rng: random.Random, hr: Hr) -> None:
    """A head for each sector: organisational positions, EQ appointments after 2023."""
    taken: set[int] = set()
    for top in TOP_UNITS_WITH_HEAD:
        family = {u[0] for u in ORG_UNITS if u[0] == top or u[2] == top}
        candidates = [
            (p, c) for p in hr.people for c in _employed_in_window(p, hr)
            if p.employee_id not in taken and c.units[-1][0] in family
            and any(_category_letter(k[0]) == "D" for k in c.classes)]
        if not candidates:
            continue
        person, contract = rng.choice(candidates)
        taken.add(person.employee_id)
        first_d = min(k[2] for k in contract.classes if _category_letter(k[0]) == "D")
        begin = max(contract.start, first_d, hr.start - timedelta(days=730))
        stop = contract.end if contract.end and contract.end <= hr.end else None
        unit_id = _unit_id(top)
        while begin <= (stop or hr.end):
            term_end = _add_years(begin, 3) - timedelta(days=1)
            if begin < REFORM_DATE <= term_end:
                # Organisational positions became EQ appointments with the new contract.
                term_end = REFORM_DATE - timedelta(days=1)
            if term_end >= (stop or hr.end):
                term_end = stop
            role = ("COMANDANTE_POLIZIA_LOCALE" if top == "POL" else
                    "TITOLARE_POSIZIONE_ORGANIZZATIVA" if begin < REFORM_DATE else
                    "TITOLARE_INCARICO_EQ")
            act = hr.act("DECRETO_SINDACO", begin - timedelta(days=rng.randint(1, 10)),
                         f"Conferimento incarico {role.replace('_', ' ').lower()}")
            allowance = Decimal(rng.randint(500000, 1600000)) / 100
            hr.appointments.append((person.employee_id, unit_id, role, begin, term_end,
                                    allowance, act))
            if term_end is None:
                break
            begin = term_end + timedelta(days=1)


def _make_delegations(rng: random.Random, hr: Hr) -> None:
    for person in hr.people:
        contracts = _employed_in_window(person, hr)
        showcase = SHOWCASE.get(person.employee_id) == "union"
        if not contracts or not (showcase or rng.random() < 0.06):
            continue
        contract = contracts[-1]
        low = max(contract.start, hr.start)
        high = min(contract.end or hr.end, hr.end) - timedelta(days=30)
        begin = _rand_date(rng, low, high)
        stop = None
        if rng.random() < 0.3 and (hr.end - begin).days > 200:
            stop = _rand_date(rng, begin + timedelta(days=180), hr.end)
        hr.delegations.append((person.employee_id, rng.choice(UNIONS),
                               rng.choice(["RSU", "RSA", "DIRIGENTE_SINDACALE"]), begin, stop,
                               Decimal(rng.randint(1200, 4800)) / 100))


def _make_disciplinary(rng: random.Random, hr: Hr) -> None:
    for person in hr.people:
        contracts = _employed_in_window(person, hr)
        showcase = SHOWCASE.get(person.employee_id) == "disciplinary"
        if not contracts or not (showcase or rng.random() < 0.03):
            continue
        contract = contracts[-1]
        opened = _rand_date(rng, max(contract.start, hr.start), min(contract.end or hr.end, hr.end))
        charge, sanction, criminal = CHARGES[-1] if showcase else rng.choice(CHARGES)
        closed = opened + timedelta(days=rng.randint(30, 120))
        act = None
        if closed > hr.end:
            closed, sanction = None, None
        elif sanction != "RIMPROVERO_VERBALE":
            act = hr.act("DETERMINA", closed,
                         f"Provvedimento disciplinare - matricola {person.code}")
        notes = "Segnalazione all'autorità giudiziaria" if criminal else None
        hr.disciplinary.append((person.employee_id, opened, charge, sanction, closed, criminal,
                                act, notes))


def _make_documents(rng: random.Random, hr: Hr) -> None:
    """What each personnel file holds; files are written later, once ids are known."""
    for person in hr.people:
        first = person.contracts[0]
        _doc(hr, person, "documento-identita", first.start, "Documento di identità")
        if rng.random() < 0.6:
            _doc(hr, person, "curriculum", first.start - timedelta(days=rng.randint(20, 90)),
                 "Curriculum vitae")
        for contract in person.contracts:
            _doc(hr, person, "contratto", contract.start,
                 f"Contratto individuale di lavoro ({contract.contract_type})")
            for year in range(max(contract.start.year, hr.start.year), hr.end.year):
                if _overlaps(contract.start, contract.end, date(year, 12, 31), date(year, 12, 31)):
                    _doc(hr, person, "valutazione",
                         date(year + 1, 2, 15) + timedelta(days=rng.randint(0, 40)),
                         f"Scheda di valutazione della performance {year}")
            if rng.random() < 0.2:
                when = _rand_date(rng, max(contract.start, hr.start),
                                  min(contract.end or hr.end, hr.end))
                _doc(hr, person, "giudizio-idoneita", when,
                     "Giudizio di idoneità alla mansione (medico competente)")
        for index, member in enumerate(person.family):
            if member[6]:                                   # disability flag
                _doc(hr, person, "verbale-104",
                     _rand_date(rng, max(first.start, hr.start), hr.end),
                     "Verbale di accertamento L. 104/1992", member_index=index)
    for appointment in hr.appointments:
        _doc(hr, _person(hr, appointment[0]), "atto-nomina", appointment[3], "Atto di nomina")
    for delegation in hr.delegations:
        _doc(hr, _person(hr, delegation[0]), "delega-sindacale", delegation[3], "Delega sindacale")
    for record in hr.disciplinary:
        if record[4] is not None:
            _doc(hr, _person(hr, record[0]), "provvedimento-disciplinare", record[4],
                 "Provvedimento disciplinare")


def _doc(hr: Hr, person: Person, kind: str, when: date, title: str,
         member_index: int | None = None) -> None:
    hr.documents.append({"person": person, "kind": kind, "date": min(when, hr.end),
                         "title": title, "member_index": member_index})


def _person(hr: Hr, employee_id: int) -> Person:
    return hr.people[employee_id - 1]


def _number_family(hr: Hr) -> None:
    """Family members get ids in employee order; documents refer to them."""
    for person in hr.people:
        for index in range(len(person.family)):
            hr.member_ids[(person.employee_id, index)] = len(hr.member_ids) + 1


def _number_acts(hr: Hr) -> None:
    """Acts are numbered per type and year in date order, like a real register."""
    ordered = sorted(enumerate(hr.acts), key=lambda ia: (ia[1].act_date, ia[1].act_type, ia[0]))
    for act_id, (_, act) in enumerate(ordered, start=1):
        act.act_id = act_id
    hr.acts = [act for _, act in ordered]


def _unit_id(code: str) -> int:
    return [u[0] for u in ORG_UNITS].index(code) + 1


# --- HR rows --------------------------------------------------------------------------------


def _category_rows() -> list[tuple]:
    rows = []
    for area, label in AREA_LABELS.items():
        rows.append((len(rows) + 1, area, "CCNL_2019_21", label, None, REFORM_DATE, None))
    area_ids = {row[1]: row[0] for row in rows}
    for letter, top in POSITIONS.items():
        for position in range(1, top + 1):
            rows.append((len(rows) + 1, f"{letter}{position}", "CCNL_1999",
                         f"Categoria {letter} - posizione economica {letter}{position}",
                         area_ids[AREAS[letter]], date(1999, 3, 31),
                         REFORM_DATE - timedelta(days=1)))
    return rows


def _org_unit_rows() -> list[tuple]:
    rows = []
    for index, (code, name, parent, _, _) in enumerate(ORG_UNITS, start=1):
        parent_id = _unit_id(parent) if parent else None
        cost_center = f"CDC{index:03d}" if parent is None else None
        rows.append((index, code, name, parent_id, cost_center, date(2001, 1, 1), None))
    return rows


def _hr_tables(hr: Hr) -> list[tuple[str, list[str], list[tuple]]]:
    """(table, columns, rows) for every Python-generated personale table, in load order."""
    categories = _category_rows()
    category_id = {row[1]: row[0] for row in categories}
    people = hr.people
    family = [(hr.member_ids[(person.employee_id, index)], *member)
              for person in people for index, member in enumerate(person.family)]
    contracts, classes, units, events = [], [], [], []
    for person in people:
        for c in person.contracts:
            weekly_hours = (Decimal(36) * c.part_time / 100).quantize(Decimal("0.01"))
            contracts.append((c.contract_id, c.employee_id, c.contract_type, c.start, c.end,
                              c.part_time, weekly_hours, c.reason, c.hire_act.act_id))
            for code, differential, since, until in c.classes:
                classes.append((len(classes) + 1, c.contract_id, category_id[code], differential,
                                since, until))
            for code, since, until in c.units:
                units.append((len(units) + 1, c.contract_id, _unit_id(code), since, until))
            for when, kind, from_cat, to_cat, from_unit, to_unit, act, notes in c.events:
                events.append((len(events) + 1, c.employee_id, c.contract_id, when, kind,
                               category_id.get(from_cat), category_id.get(to_cat),
                               _unit_id(from_unit) if from_unit else None,
                               _unit_id(to_unit) if to_unit else None,
                               act.act_id if act else None, notes))
    return [
        ("org_unit", ["org_unit_id", "code", "name", "parent_id", "cost_center", "valid_from",
                      "valid_to"], _org_unit_rows()),
        ("job_category", ["category_id", "code", "system", "label", "maps_to_id", "valid_from",
                          "valid_to"], categories),
        ("administrative_act", ["act_id", "act_type", "act_year", "act_number", "act_date",
                                "subject", "signed_by"], _act_rows(hr)),
        ("employee", ["employee_id", "employee_code", "tax_code", "surname", "given_name", "sex",
                      "birth_date", "birth_place", "birth_place_code", "address", "postal_code",
                      "city", "work_email", "personal_email", "pec", "phone", "iban",
                      "signature_image", "notes", "created_at", "updated_at"],
         [p.row for p in people]),
        ("family_member", ["member_id", "employee_id", "relation", "surname", "given_name",
                           "tax_code", "birth_date", "disability", "dependent", "dependent_pct",
                           "notes"], family),
        ("employment_contract", ["contract_id", "employee_id", "contract_type", "start_date",
                                 "end_date", "part_time_pct", "weekly_hours",
                                 "termination_reason", "hire_act_id"], contracts),
        ("classification", ["classification_id", "contract_id", "category_id", "differential",
                            "valid_from", "valid_to"], classes),
        ("unit_assignment", ["assignment_id", "contract_id", "org_unit_id", "valid_from",
                             "valid_to"], units),
        ("career_event", ["event_id", "employee_id", "contract_id", "event_date", "event_type",
                          "from_category_id", "to_category_id", "from_unit_id", "to_unit_id",
                          "act_id", "notes"], events),
        ("appointment", ["appointment_id", "employee_id", "org_unit_id", "role", "start_date",
                         "end_date", "allowance", "act_id"],
         [(i, *a[:6], a[6].act_id) for i, a in enumerate(hr.appointments, start=1)]),
        ("union_delegation", ["delegation_id", "employee_id", "union_name", "role", "start_date",
                              "end_date", "hours_quota"],
         [(i, *d) for i, d in enumerate(hr.delegations, start=1)]),
        ("disciplinary_record", ["record_id", "employee_id", "opened_on", "charge", "sanction",
                                 "closed_on", "criminal_proceeding", "act_id", "notes"],
         [(i, *r[:6], r[6].act_id if r[6] else None, r[7])
          for i, r in enumerate(hr.disciplinary, start=1)]),
    ]


def _act_rows(hr: Hr) -> list[tuple]:
    numbers: dict[tuple[str, int], int] = {}
    rows = []
    signers = {"DETERMINA": "Responsabile del Settore Economico-Finanziario",
               "DELIBERA_GC": None, "DECRETO_SINDACO": "Il Sindaco"}
    for act in hr.acts:
        key = (act.act_type, act.act_date.year)
        numbers[key] = numbers.get(key, 0) + 1
        rows.append((act.act_id, act.act_type, act.act_date.year, numbers[key], act.act_date,
                     act.subject, signers[act.act_type]))
    return rows


# --- document archive ---------------------------------------------------------------------

_DOC_PHRASES = [
    "Visto il d.lgs. 30 marzo 2001, n. 165 e successive modificazioni;",
    "Visto il CCNL Funzioni Locali 2019-2021 sottoscritto il 16 novembre 2022;",
    "Richiamato il regolamento sull'ordinamento degli uffici e dei servizi;",
    "Dato atto che il presente documento è conservato nel fascicolo personale elettronico;",
    "Accertata la regolarità della documentazione prodotta dall'interessato;",
    "Vista la dotazione organica approvata dalla Giunta comunale;",
    "Considerato che l'istruttoria si è conclusa senza rilievi;",
    "Il/la dipendente ha preso visione dell'informativa sul trattamento dei dati personali.",
    "Firmato digitalmente ai sensi del d.lgs. 82/2005 (Codice dell'amministrazione digitale).",
]


def _document_pdf(doc: dict, document_id: int, protocol: int, seed_value: int) -> bytes:
    rng = random.Random(f"doc:{seed_value}:{document_id}")
    person = doc["person"]
    lines = [f"{COMUNE} - Servizio Personale",
             f"Protocollo n. {protocol} del {doc['date']:%d/%m/%Y}",
             f"Dipendente: {person.surname} {person.given_name} (matricola {person.code})",
             f"Codice fiscale: {person.tax_code}", ""]
    lines += [rng.choice(_DOC_PHRASES) for _ in range(rng.randint(3, 45))]
    if doc["kind"] == "valutazione":
        lines.append(f"Punteggio complessivo: {rng.randint(60, 100)}/100")
    lines += ["", "Il Responsabile del Servizio Personale"]
    return make_pdf(doc["title"], lines, _local(doc["date"], 43200))


def _empty_dir(path: Path) -> None:
    resolved = path.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise ValueError(f"refusing to empty {resolved}")
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def write_archive(hr: Hr, archive_dir: Path, seed_value: int) -> tuple[list[tuple], dict]:
    """Write every document as a PDF; return personnel_document rows and the totals."""
    _empty_dir(archive_dir)
    # Ids and protocol numbers follow the date order, as a protocol register would.
    ordered = sorted(hr.documents, key=lambda d: (d["date"], d["person"].employee_id,
                                                   DOC_KINDS.index(d["kind"]), d["title"]))
    rows, total_bytes = [], 0
    for document_id, doc in enumerate(ordered, start=1):
        person = doc["person"]
        protocol = 100000 + document_id
        blob = _document_pdf(doc, document_id, protocol, seed_value)
        rel_path = f"{doc['date'].year}/{person.code}/{doc['kind']}-{document_id}.pdf"
        target = archive_dir / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
        # A stable mtime: rsync-style comparisons see the same tree on every seed.
        stamp = _local(doc["date"], 43200).timestamp()
        os.utime(target, (stamp, stamp))
        member = (hr.member_ids[(person.employee_id, doc["member_index"])]
                  if doc["member_index"] is not None else None)
        rows.append((document_id, person.employee_id, member, doc["kind"], doc["title"],
                     doc["date"], protocol, rel_path, len(blob),
                     hashlib.sha256(blob).hexdigest(), ARCHIVE_URI_PREFIX + rel_path,
                     "application/pdf", _local(doc["date"], 39600 + document_id % 7200)))
        total_bytes += len(blob)
    return rows, {"files": len(rows), "bytes": total_bytes}


DOCUMENT_COLUMNS = ["document_id", "employee_id", "family_member_id", "kind", "title",
                    "doc_date", "protocol_number", "rel_path", "size_bytes", "sha256",
                    "storage_uri", "mime_type", "created_at"]


# --- attendance reference rows ---------------------------------------------------------------


def _profile_code(contract: Contract) -> str:
    if contract.units[-1][0] == "POL" and contract.part_time == 100:
        return "TURNI"
    return PROFILE_BY_PART_TIME[contract.part_time]


def _attendance_tables(hr: Hr, seed_value: int) -> list[tuple[str, list[str], list[tuple]]]:
    """Reference rows of presenze, derived from the HR world."""
    rng = random.Random(f"presenze:{seed_value}")
    profile_id = {p[0]: i for i, p in enumerate(WORK_PROFILES, start=1)}
    terminal_id = {t[0]: i for i, t in enumerate(TERMINALS, start=1)}
    unit_terminal = {u[0]: u[3] for u in ORG_UNITS}
    law104 = {p.employee_id for p in hr.people if any(m[6] for m in p.family)}
    delegates = {d[0] for d in hr.delegations if _overlaps(d[3], d[4], hr.start, hr.end)}
    staff, periods, badges = [], [], []
    used_badges: set[str] = set()
    for person in hr.people:
        contracts = _employed_in_window(person, hr)
        if not contracts:
            continue          # left before the attendance system's window
        last = contracts[-1]
        staff.append((person.employee_id, person.code, person.tax_code, person.surname,
                      person.given_name, profile_id[_profile_code(last)],
                      terminal_id[unit_terminal[last.units[-1][0]]],
                      _profile_code(last) == "TURNI", person.employee_id in law104,
                      person.employee_id in delegates, last.end is None or last.end > hr.end))
        for contract in contracts:
            periods.append((len(periods) + 1, person.employee_id, contract.contract_id,
                            profile_id[_profile_code(contract)], contract.start, contract.end))
            badges += _badges(rng, hr, person, contract, used_badges, len(badges))
    return [
        ("terminal", ["terminal_id", "code", "location", "model", "ip_address", "installed_on",
                      "active"],
         [(i, *t, True) for i, t in enumerate(TERMINALS, start=1)]),
        ("work_profile", ["profile_id", "code", "description", "weekly_minutes", "daily_minutes",
                          "long_day_minutes", "long_days", "start_time", "min_lunch_minutes",
                          "flex_minutes"],
         [(i, *p) for i, p in enumerate(WORK_PROFILES, start=1)]),
        ("shift", ["shift_id", "code", "description", "start_time", "end_time"],
         [(i, *s) for i, s in enumerate(SHIFTS, start=1)]),
        ("holiday", ["holiday_date", "description"],
         [h for year in range(hr.start.year, hr.end.year + 2) for h in holidays(year)]),
        ("reason_code", ["code", "description", "kind", "special_category", "gdpr_category",
                         "counts_as_work", "yearly_limit_min"], REASON_CODES),
        ("staff", ["employee_id", "employee_code", "tax_code", "surname", "given_name",
                   "profile_id", "home_terminal_id", "shift_worker", "law104_entitled",
                   "union_delegate", "active"], staff),
        ("employment_period", ["period_id", "employee_id", "contract_ref", "profile_id",
                               "start_date", "end_date"], periods),
        ("badge", ["badge_id", "badge_number", "employee_id", "valid_from", "valid_to", "lost"],
         badges),
    ]


def _badges(rng: random.Random, hr: Hr, person: Person, contract: Contract,
            used: set[str], issued: int) -> list[tuple]:
    """One badge per contract; 12% were lost and replaced during the window."""
    def number() -> str:
        while True:
            candidate = f"{rng.randrange(10**10):010d}"
            if candidate not in used:
                used.add(candidate)
                return candidate
    low = max(contract.start, hr.start) + timedelta(days=30)
    high = min(contract.end or hr.end, hr.end) - timedelta(days=30)
    if high > low and rng.random() < 0.12:
        lost_on = _rand_date(rng, low, high)
        return [(issued + 1, number(), person.employee_id, contract.start,
                 lost_on - timedelta(days=1), True),
                (issued + 2, number(), person.employee_id, lost_on, contract.end, False)]
    return [(issued + 1, number(), person.employee_id, contract.start, contract.end, False)]


# --- monthly time sheets --------------------------------------------------------------------

TIMESHEET_QUERY = """
WITH days AS (
    SELECT employee_id, date_trunc('month', work_date)::date AS period_month,
           count(*) FILTER (WHERE coalesce(worked_minutes, 0) > 0) AS days_present,
           sum(expected_minutes) AS expected, sum(coalesce(worked_minutes, 0)) AS worked,
           sum(absence_minutes) AS absence
    FROM daily_balance GROUP BY 1, 2
), extra AS (
    SELECT employee_id, date_trunc('month', work_date)::date AS period_month,
           sum(minutes) AS minutes
    FROM overtime GROUP BY 1, 2
), reasons AS (
    SELECT employee_id, period_month,
           string_agg(reason_code || ' ' || minutes, ',' ORDER BY reason_code) AS detail
    FROM (SELECT employee_id, date_trunc('month', work_date)::date AS period_month, reason_code,
                 sum(absence_minutes) AS minutes
          FROM daily_balance WHERE absence_minutes > 0 GROUP BY 1, 2, 3) r
    GROUP BY 1, 2
)
SELECT d.employee_id, s.employee_code, s.surname, s.given_name, d.period_month,
       d.days_present, d.expected, d.worked, d.absence, coalesce(e.minutes, 0), r.detail
FROM days d
JOIN staff s ON s.employee_id = d.employee_id
LEFT JOIN extra e ON e.employee_id = d.employee_id AND e.period_month = d.period_month
LEFT JOIN reasons r ON r.employee_id = d.employee_id AND r.period_month = d.period_month
ORDER BY d.employee_id, d.period_month
"""

TIMESHEET_COLUMNS = ["timesheet_id", "employee_id", "period_month", "state", "days_present",
                     "expected_minutes", "worked_minutes", "absence_minutes", "overtime_minutes",
                     "pdf", "pdf_sha256", "closed_at", "closed_by", "sent_at", "updated_at"]

_MONTHS_IT = ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
              "settembre", "ottobre", "novembre", "dicembre"]


def _hours(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _timesheet_pdf(row: tuple, state: str, closed_at: datetime) -> bytes:
    (_, code, surname, given, month, days, expected, worked, absence, overtime, detail) = row
    lines = [f"{COMUNE} - Rilevazione presenze",
             f"Dipendente: {surname} {given} (matricola {code})",
             f"Periodo: {_MONTHS_IT[month.month - 1]} {month.year}", "",
             f"Giorni di presenza: {days}",
             f"Ore previste: {_hours(expected)}",
             f"Ore lavorate: {_hours(worked)}",
             f"Ore di assenza: {_hours(absence)}",
             f"Lavoro straordinario: {_hours(overtime)}", ""]
    for item in (detail.split(",") if detail else []):
        reason, minutes = item.split(" ")
        lines.append(f"Assenze {reason}: {_hours(int(minutes))}")
    lines += ["", f"Stato: {state} - chiuso il {closed_at.astimezone(ROME):%d/%m/%Y %H:%M}",
              "Documento con valore di prova: non modificabile."]
    return make_pdf(f"Cartellino mensile - {_MONTHS_IT[month.month - 1]} {month.year}", lines,
                    closed_at, compress=True)


def _timesheet_rows(rows: Iterable[tuple], seed_value: int) -> Iterator[tuple]:
    """State, timestamps and PDF of each month: the current month is open, the previous one
    closed, older ones sent to payroll (a few reopened after a dispute)."""
    rng = random.Random(f"timesheet:{seed_value}")
    current = _month_start(AS_OF)
    previous = _month_start(current - timedelta(days=1))
    operators = ["ufficio.personale", "a.bianchi", "l.esposito"]
    for timesheet_id, row in enumerate(rows, start=1):
        month = row[4]
        closed_at = sent_at = closed_by = pdf = digest = None
        updated_at = _local(AS_OF, 8100)
        if month == current:
            state = "OPEN"
        else:
            closed_on = _next_month(month) + timedelta(days=rng.randint(2, 6))
            closed_at = _local(closed_on, 32400 + rng.randint(0, 25000))
            closed_by = rng.choice(operators)
            state, updated_at = "CLOSED", closed_at
            if month != previous:
                sent_at = closed_at + timedelta(days=rng.randint(1, 3),
                                                seconds=rng.randint(0, 3600))
                state, updated_at = "SENT", sent_at
                if rng.random() < 0.003:
                    state = "REOPENED"
                    updated_at = min(sent_at + timedelta(days=rng.randint(5, 40)),
                                     _local(AS_OF, 36000))
            pdf = _timesheet_pdf(row, "CHIUSO", closed_at)
            digest = hashlib.sha256(pdf).hexdigest()
        yield (timesheet_id, row[0], month, state, row[5], row[6], row[7], row[8], row[9], pdf,
               digest, closed_at, closed_by, sent_at, updated_at)


# --- database plumbing --------------------------------------------------------------------


def _conninfo(admin_dsn: str, dbname: str) -> str:
    return make_conninfo(admin_dsn, dbname=dbname)


def _recreate_databases(admin_dsn: str, owner: str) -> None:
    with psycopg.connect(_conninfo(admin_dsn, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        for db in DATABASES:
            # FORCE: a session left open by an earlier run must not block the reseed.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(db)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'")
                         .format(sql.Identifier(db), sql.Identifier(owner)))
            # A per-database setting, as Italian installations have: a migration that only
            # copies tables would lose it.
            conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'Europe/Rome'")
                         .format(sql.Identifier(db)))


@contextlib.contextmanager
def _session(admin_dsn: str, dbname: str, owner: str) -> Iterator[psycopg.Connection]:
    """One transaction as `owner` (so it owns every object); committed only on success."""
    conn = psycopg.connect(_conninfo(admin_dsn, dbname))
    try:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        # Set before any temp table is touched: the generator's work tables stay in memory.
        conn.execute("SET temp_buffers = '512MB'")
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")
        # The generator's expressions are long: JIT would spend more compiling than it saves.
        conn.execute("SET jit = off")
        conn.execute("SET TimeZone = 'Europe/Rome'")
        yield conn
        conn.commit()
    finally:
        conn.close()


def _run_sql(conn: psycopg.Connection, name: str) -> None:
    began = time.monotonic()
    conn.execute((SQL_DIR / name).read_text(encoding="utf-8"))
    log.debug("%s ran in %.1f s", name, time.monotonic() - began)


def _copy(conn: psycopg.Connection, table: str, columns: list[str], rows: Iterable[tuple]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _install_parameters(conn: psycopg.Connection, seed_value: int, start: date, end: date) -> None:
    """Session-local constant functions the SQL files read their parameters from."""
    constants = {"p_seed": ("bigint", f"SELECT {seed_value}::bigint"),
                 "p_start": ("date", f"SELECT DATE '{start.isoformat()}'"),
                 "p_end": ("date", f"SELECT DATE '{end.isoformat()}'"),
                 "p_terminals": ("integer", f"SELECT {len(TERMINALS)}")}
    for name, (kind, body) in constants.items():
        conn.execute(sql.SQL("CREATE FUNCTION pg_temp.{}() RETURNS {} LANGUAGE sql IMMUTABLE "
                             "PARALLEL SAFE AS {}").format(sql.Identifier(name), sql.SQL(kind),
                                                            sql.Literal(body)))
    _run_sql(conn, "generator.sql")


def _sync_sequences(conn: psycopg.Connection) -> None:
    """Ids were loaded explicitly: move every owned sequence past its column's maximum."""
    owned = conn.execute("""
        SELECT s.oid::regclass::text, t.oid::regclass::text, a.attname
        FROM pg_class s
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE s.relkind = 'S' ORDER BY 1""").fetchall()
    for sequence, table, column in owned:
        statement = sql.SQL("SELECT setval(%s::regclass, "
                            "coalesce((SELECT max({}) FROM {}), 0) + 1, false)")
        conn.execute(statement.format(sql.Identifier(column), sql.SQL(table)), (sequence,))


def _count_rows(conn: psycopg.Connection, db: str) -> dict[str, int]:
    tables = conn.execute("SELECT relname FROM pg_class WHERE relkind = 'r' "
                          "AND relnamespace = 'public'::regnamespace ORDER BY relname").fetchall()
    counts = {}
    for (table,) in tables:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        counts[f"{db}.{table}"] = conn.execute(query).fetchone()[0]
    return counts


# --- the two databases ----------------------------------------------------------------------


def _fill_personale(conn: psycopg.Connection, hr: Hr, archive_dir: Path, seed_value: int,
                    start: date, end: date) -> dict:
    began = time.monotonic()
    _run_sql(conn, "personale_schema.sql")
    for table, columns, rows in _hr_tables(hr):
        _copy(conn, table, columns, rows)
    documents, archive = write_archive(hr, archive_dir, seed_value)
    _copy(conn, "personnel_document", DOCUMENT_COLUMNS, documents)
    _install_parameters(conn, seed_value, start, end)
    _run_sql(conn, "personale_post.sql")
    _sync_sequences(conn)
    conn.execute("ANALYZE")
    log.info("personale filled in %.1f s (%d files in the archive)",
             time.monotonic() - began, archive["files"])
    return archive


def _fill_presenze(conn: psycopg.Connection, hr: Hr, seed_value: int, start: date,
                   end: date) -> None:
    began = time.monotonic()
    _run_sql(conn, "presenze_schema.sql")
    for table, columns, rows in _attendance_tables(hr, seed_value):
        _copy(conn, table, columns, rows)
    _install_parameters(conn, seed_value, start, end)
    _run_sql(conn, "presenze_fill.sql")
    log.info("presenze generated in %.1f s", time.monotonic() - began)
    # Aggregates first, COPY second: the connection cannot stream both ways at once.
    months = conn.execute(TIMESHEET_QUERY).fetchall()
    _copy(conn, "monthly_timesheet", TIMESHEET_COLUMNS, _timesheet_rows(months, seed_value))
    _run_sql(conn, "presenze_audit.sql")
    _run_sql(conn, "presenze_post.sql")
    _sync_sequences(conn)
    conn.execute("ANALYZE")
    log.info("presenze filled in %.1f s", time.monotonic() - began)
