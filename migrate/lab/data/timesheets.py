"""Monthly time sheets (legal evidence): each month's totals from the generated attendance, its
state (open, closed, sent to payroll, rarely reopened) and its PDF with a SHA-256."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta
from typing import Iterable, Iterator

from migrate.lab.data.dates import AS_OF, ROME, local_time, month_start, next_month
from migrate.lab.data.formats import make_pdf
from migrate.lab.data.reference import COMUNE, MONTHS_IT

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


def _hours(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _timesheet_pdf(row: tuple, state: str, closed_at: datetime) -> bytes:
    (_, code, surname, given, month, days, expected, worked, absence, overtime, detail) = row
    lines = [f"{COMUNE} - Rilevazione presenze",
             f"Dipendente: {surname} {given} (matricola {code})",
             f"Periodo: {MONTHS_IT[month.month - 1]} {month.year}", "",
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
    return make_pdf(f"Cartellino mensile - {MONTHS_IT[month.month - 1]} {month.year}", lines,
                    closed_at, compress=True)


def timesheet_rows(rows: Iterable[tuple], seed_value: int) -> Iterator[tuple]:
    """State, timestamps and PDF of each month: the current month is open, the previous one
    closed, older ones sent to payroll (a few reopened after a dispute)."""
    rng = random.Random(f"timesheet:{seed_value}")
    current = month_start(AS_OF)
    previous = month_start(current - timedelta(days=1))
    operators = ["ufficio.personale", "a.bianchi", "l.esposito"]
    for timesheet_id, row in enumerate(rows, start=1):
        month = row[4]
        closed_at = sent_at = closed_by = pdf = digest = None
        updated_at = local_time(AS_OF, 8100)
        if month == current:
            state = "OPEN"
        else:
            closed_on = next_month(month) + timedelta(days=rng.randint(2, 6))
            closed_at = local_time(closed_on, 32400 + rng.randint(0, 25000))
            closed_by = rng.choice(operators)
            state, updated_at = "CLOSED", closed_at
            if month != previous:
                sent_at = closed_at + timedelta(days=rng.randint(1, 3),
                                                seconds=rng.randint(0, 3600))
                state, updated_at = "SENT", sent_at
                if rng.random() < 0.003:
                    state = "REOPENED"
                    updated_at = min(sent_at + timedelta(days=rng.randint(5, 40)),
                                     local_time(AS_OF, 36000))
            pdf = _timesheet_pdf(row, "CHIUSO", closed_at)
            digest = hashlib.sha256(pdf).hexdigest()
        yield (timesheet_id, row[0], month, state, row[5], row[6], row[7], row[8], row[9], pdf,
               digest, closed_at, closed_by, sent_at, updated_at)
