"""What happens to people already hired: appointments to head a sector, union delegations and
disciplinary records."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from migrate.lab.data.dates import REFORM_DATE, add_years, rand_date
from migrate.lab.data.model import (SHOWCASE, Hr, category_letter, employed_in_window,
                                    org_unit_id)
from migrate.lab.data.reference import CHARGES, ORG_UNITS, TOP_UNITS_WITH_HEAD, UNIONS


def make_appointments(rng: random.Random, hr: Hr) -> None:
    """A head for each sector: organisational positions, EQ appointments after 2023."""
    taken: set[int] = set()
    for top in TOP_UNITS_WITH_HEAD:
        family = {u[0] for u in ORG_UNITS if u[0] == top or u[2] == top}
        candidates = [
            (p, c) for p in hr.people for c in employed_in_window(p, hr)
            if p.employee_id not in taken and c.units[-1][0] in family
            and any(category_letter(k[0]) == "D" for k in c.classes)]
        if not candidates:
            continue
        person, contract = rng.choice(candidates)
        taken.add(person.employee_id)
        first_d = min(k[2] for k in contract.classes if category_letter(k[0]) == "D")
        begin = max(contract.start, first_d, hr.start - timedelta(days=730))
        stop = contract.end if contract.end and contract.end <= hr.end else None
        unit_id = org_unit_id(top)
        while begin <= (stop or hr.end):
            term_end = add_years(begin, 3) - timedelta(days=1)
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


def make_delegations(rng: random.Random, hr: Hr) -> None:
    for person in hr.people:
        contracts = employed_in_window(person, hr)
        showcase = SHOWCASE.get(person.employee_id) == "union"
        if not contracts or not (showcase or rng.random() < 0.06):
            continue
        contract = contracts[-1]
        low = max(contract.start, hr.start)
        high = min(contract.end or hr.end, hr.end) - timedelta(days=30)
        begin = rand_date(rng, low, high)
        stop = None
        if rng.random() < 0.3 and (hr.end - begin).days > 200:
            stop = rand_date(rng, begin + timedelta(days=180), hr.end)
        hr.delegations.append((person.employee_id, rng.choice(UNIONS),
                               rng.choice(["RSU", "RSA", "DIRIGENTE_SINDACALE"]), begin, stop,
                               Decimal(rng.randint(1200, 4800)) / 100))


def make_disciplinary(rng: random.Random, hr: Hr) -> None:
    for person in hr.people:
        contracts = employed_in_window(person, hr)
        showcase = SHOWCASE.get(person.employee_id) == "disciplinary"
        if not contracts or not (showcase or rng.random() < 0.03):
            continue
        contract = contracts[-1]
        opened = rand_date(rng, max(contract.start, hr.start), min(contract.end or hr.end, hr.end))
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
