"""Deterministic synthetic data for the lab: the Comune's HR and attendance databases and its
document archive.

`seed()` drops and recreates the databases `personale` (HR) and `presenze` (attendance),
loads the schema from `migrate/lab/sql/`, fills them and writes the personnel-file archive
(small, valid PDF files) with its index in `personale.personnel_document`.
`write_bulk_archive()` adds, on request, a large historical archive beside it (many more PDFs,
no index rows) and `restore_bulk_archive()` puts it back; see bulk_archive.

How the data is made:
- the small HR world (people, contracts, careers, families, acts, documents) is generated in
  Python from `random.Random` streams seeded with the seed, and loaded with COPY;
- the big attendance tables (punches, daily balances, justifications, ...) are generated
  inside PostgreSQL by set-based SQL (sql/presenze_fill.sql) where every random choice is a
  hash of (seed, row identity), so no generator state is involved;
- every timestamp derives from the fixed reference day `AS_OF`, never from the clock.
Same seed -> same rows, byte for byte (on the same PostgreSQL major version).

The modules, by kind of data: reference (names, places, units, terminals, codes), dates,
identifiers (tax codes, IBANs), formats (PNG, PDF), model (the HR world in memory), hr with
people, careers, records and documents (generating it), personale, presenze and timesheets
(the two databases), loading (sessions, COPY, the SQL files), bulk_archive (the historical
personnel files).

Nothing here logs row values: only phases, counts and durations.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from migrate.lab.data.bulk_archive import BULK_DIR, restore_bulk_archive, write_bulk_archive
from migrate.lab.data.dates import AS_OF, window
from migrate.lab.data.hr import build_hr
from migrate.lab.data.identifiers import tax_code
from migrate.lab.data.loading import DATABASES, count_rows, recreate_databases, session
from migrate.lab.data.personale import fill_personale
from migrate.lab.data.presenze import fill_presenze

__all__ = ["AS_OF", "BULK_DIR", "DATABASES", "LEGAL_EVIDENCE", "restore_bulk_archive", "seed",
           "tax_code", "window", "write_bulk_archive"]

log = logging.getLogger(__name__)

# Tables that are legal evidence (false-attendance cases): they must stay provably unaltered.
LEGAL_EVIDENCE = ("presenze.punch", "presenze.monthly_timesheet")


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
    recreate_databases(admin_dsn, owner)
    counts: dict = {}
    with session(admin_dsn, "personale", owner) as conn:
        archive = fill_personale(conn, hr, archive_dir, seed, start, end)
        counts.update(count_rows(conn, "personale"))
    with session(admin_dsn, "presenze", owner) as conn:
        fill_presenze(conn, hr, seed, start, end)
        counts.update(count_rows(conn, "presenze"))
    counts["archive"] = archive
    log.info("seeded %d employees x %d years in %.1f s: %d punches, %d archive files",
             employees, years, time.monotonic() - began,
             counts.get("presenze.punch", 0), archive["files"])
    return counts


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
