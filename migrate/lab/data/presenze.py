"""The attendance database `presenze`: reference rows derived from the HR world, then the
set-based SQL that generates punches, balances, justifications and leave
(sql/presenze_fill.sql, where every random choice is a hash of the seed and the row), the
monthly time sheets, the audit history (sql/presenze_audit.sql) and the keys, indexes and
triggers (sql/presenze_post.sql)."""

from __future__ import annotations

import logging
import random
import time
from datetime import date, timedelta

import psycopg

from migrate.lab.data.dates import holidays, overlaps, rand_date
from migrate.lab.data.loading import copy_rows, install_parameters, run_sql, sync_sequences
from migrate.lab.data.model import Contract, Hr, Person, employed_in_window
from migrate.lab.data.reference import (ORG_UNITS, PROFILE_BY_PART_TIME, REASON_CODES, SHIFTS,
                                        TERMINALS, WORK_PROFILES)
from migrate.lab.data.timesheets import TIMESHEET_COLUMNS, TIMESHEET_QUERY, timesheet_rows

log = logging.getLogger(__name__)


def fill_presenze(conn: psycopg.Connection, hr: Hr, seed_value: int, start: date,
                  end: date) -> None:
    began = time.monotonic()
    run_sql(conn, "presenze_schema.sql")
    for table, columns, rows in _attendance_tables(hr, seed_value):
        copy_rows(conn, table, columns, rows)
    install_parameters(conn, seed_value, start, end)
    run_sql(conn, "presenze_fill.sql")
    log.info("presenze generated in %.1f s", time.monotonic() - began)
    # Aggregates first, COPY second: the connection cannot stream both ways at once.
    months = conn.execute(TIMESHEET_QUERY).fetchall()
    copy_rows(conn, "monthly_timesheet", TIMESHEET_COLUMNS, timesheet_rows(months, seed_value))
    run_sql(conn, "presenze_audit.sql")
    run_sql(conn, "presenze_post.sql")
    sync_sequences(conn)
    conn.execute("ANALYZE")
    log.info("presenze filled in %.1f s", time.monotonic() - began)


def _attendance_tables(hr: Hr, seed_value: int) -> list[tuple[str, list[str], list[tuple]]]:
    """Reference rows of presenze, derived from the HR world."""
    rng = random.Random(f"presenze:{seed_value}")
    profile_id = {p[0]: i for i, p in enumerate(WORK_PROFILES, start=1)}
    terminal_id = {t[0]: i for i, t in enumerate(TERMINALS, start=1)}
    unit_terminal = {u[0]: u[3] for u in ORG_UNITS}
    law104 = {p.employee_id for p in hr.people if any(m[6] for m in p.family)}
    delegates = {d[0] for d in hr.delegations if overlaps(d[3], d[4], hr.start, hr.end)}
    staff, periods, badges = [], [], []
    used_badges: set[str] = set()
    for person in hr.people:
        contracts = employed_in_window(person, hr)
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


def _profile_code(contract: Contract) -> str:
    if contract.units[-1][0] == "POL" and contract.part_time == 100:
        return "TURNI"
    return PROFILE_BY_PART_TIME[contract.part_time]


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
        lost_on = rand_date(rng, low, high)
        return [(issued + 1, number(), person.employee_id, contract.start,
                 lost_on - timedelta(days=1), True),
                (issued + 2, number(), person.employee_id, lost_on, contract.end, False)]
    return [(issued + 1, number(), person.employee_id, contract.start, contract.end, False)]
