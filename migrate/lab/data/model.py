"""The HR world in memory: people, their contracts and the administrative acts behind them,
as the generators fill them in and the table loaders read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from migrate.lab.data.dates import overlaps
from migrate.lab.data.reference import AREA_LETTER, ORG_UNITS


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


def employed_in_window(person: Person, hr: Hr) -> list[Contract]:
    return [c for c in person.contracts if overlaps(c.start, c.end, hr.start, hr.end)]


def person_of(hr: Hr, employee_id: int) -> Person:
    return hr.people[employee_id - 1]


def category_letter(code: str) -> str:
    return AREA_LETTER.get(code, code[0])


def org_unit_id(code: str) -> int:
    return [u[0] for u in ORG_UNITS].index(code) + 1
