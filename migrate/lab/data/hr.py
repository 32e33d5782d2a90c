"""The whole HR world, generated in memory in a fixed order from one random stream."""

from __future__ import annotations

import random
from datetime import date

from migrate.lab.data.careers import make_contracts
from migrate.lab.data.documents import make_documents
from migrate.lab.data.model import SHOWCASE, Hr
from migrate.lab.data.people import employee_row, make_family, make_person
from migrate.lab.data.records import make_appointments, make_delegations, make_disciplinary


def build_hr(seed_value: int, employees: int, start: date, end: date) -> Hr:
    """Generate the whole HR world in memory (deterministic for a seed)."""
    rng = random.Random(f"hr:{seed_value}")
    hr = Hr(start, end)
    used_tax_codes: set[str] = set()
    used_emails: set[str] = set()
    contract_ids = iter(range(1, 10**9))
    for employee_id in range(1, employees + 1):
        trait = SHOWCASE.get(employee_id)
        person = make_person(rng, employee_id, trait, start, end, used_tax_codes)
        make_contracts(rng, hr, person, trait, contract_ids)
        make_family(rng, hr, person, trait, used_tax_codes)
        person.row = employee_row(rng, person, used_emails)
        hr.people.append(person)
    _number_family(hr)
    make_appointments(rng, hr)
    make_delegations(rng, hr)
    make_disciplinary(rng, hr)
    make_documents(rng, hr)
    _number_acts(hr)
    return hr


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
