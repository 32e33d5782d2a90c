"""The HR database `personale`: its schema, its tables filled from the HR world, its document
archive written and indexed, then what comes after the bulk load (sql/personale_post.sql)."""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from migrate.lab.data.dates import REFORM_DATE
from migrate.lab.data.documents import DOCUMENT_COLUMNS, write_archive
from migrate.lab.data.loading import copy_rows, install_parameters, run_sql, sync_sequences
from migrate.lab.data.model import Hr, org_unit_id
from migrate.lab.data.reference import AREA_LABELS, AREAS, ORG_UNITS, POSITIONS

log = logging.getLogger(__name__)


def fill_personale(conn: psycopg.Connection, hr: Hr, archive_dir: Path, seed_value: int,
                   start: date, end: date) -> dict:
    began = time.monotonic()
    run_sql(conn, "personale_schema.sql")
    for table, columns, rows in _hr_tables(hr):
        copy_rows(conn, table, columns, rows)
    documents, archive = write_archive(hr, archive_dir, seed_value)
    copy_rows(conn, "personnel_document", DOCUMENT_COLUMNS, documents)
    install_parameters(conn, seed_value, start, end)
    run_sql(conn, "personale_post.sql")
    sync_sequences(conn)
    conn.execute("ANALYZE")
    log.info("personale filled in %.1f s (%d files in the archive)",
             time.monotonic() - began, archive["files"])
    return archive


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
                units.append((len(units) + 1, c.contract_id, org_unit_id(code), since, until))
            for when, kind, from_cat, to_cat, from_unit, to_unit, act, notes in c.events:
                events.append((len(events) + 1, c.employee_id, c.contract_id, when, kind,
                               category_id.get(from_cat), category_id.get(to_cat),
                               org_unit_id(from_unit) if from_unit else None,
                               org_unit_id(to_unit) if to_unit else None,
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
        parent_id = org_unit_id(parent) if parent else None
        cost_center = f"CDC{index:03d}" if parent is None else None
        rows.append((index, code, name, parent_id, cost_center, date(2001, 1, 1), None))
    return rows


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
