"""People: employees (names, birth, tax code, contact and bank details) and their families."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from migrate.lab.data.dates import AS_OF, add_years, local_time, rand_date
from migrate.lab.data.formats import make_signature_png
from migrate.lab.data.identifiers import ascii_letters, iban, unique_tax_code
from migrate.lab.data.model import Hr, Person
from migrate.lab.data.reference import (BIRTH_PLACES, FEMALE_NAMES, FOREIGN_ORIGINS, MALE_NAMES,
                                        RESIDENCES, STREETS, SURNAMES)


def make_person(rng: random.Random, employee_id: int, trait: str | None, start: date,
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
    person.tax_code = unique_tax_code(used_tax_codes, surname, given, sex, person.birth,
                                      place_code)
    return person


def _pick_first_hire(rng: random.Random, trait: str | None, start: date, end: date) -> date:
    span = (end - start).days
    if trait == "rehired":
        return start + timedelta(days=min(20, span // 10))
    if rng.random() < 0.72:
        return rand_date(rng, date(1988, 1, 1), start - timedelta(days=1))
    return rand_date(rng, start, end - timedelta(days=15))


def _pick_birth(rng: random.Random, hire: date, start: date) -> date:
    age = rng.randint(20, 35) if hire.year < 2000 else rng.randint(22, 50)
    birth = add_years(hire, -age) - timedelta(days=rng.randint(0, 364))
    # Nobody in the window is past 64 at its start (retirement is at 67).
    oldest = add_years(start, -64)
    if birth < oldest:
        birth = oldest + timedelta(days=rng.randint(0, 900))
    return birth


def make_family(rng: random.Random, hr: Hr, person: Person, trait: str | None,
                used_tax_codes: set[str]) -> None:
    members = []
    if rng.random() < 0.55:
        sex = "F" if person.sex == "M" else "M"
        birth = add_years(person.birth, rng.randint(-5, 5)) + timedelta(days=rng.randint(0, 300))
        members.append(("CONIUGE", sex, birth, False, rng.random() < 0.2))
    for _ in range(rng.choices([0, 1, 2, 3], weights=[35, 25, 30, 10])[0]):
        birth = add_years(person.birth, rng.randint(24, 45)) + timedelta(days=rng.randint(0, 364))
        if birth < AS_OF:
            members.append(("FIGLIO", rng.choice("MF"), birth, rng.random() < 0.04,
                            birth > add_years(AS_OF, -24)))
    if trait == "law104" or rng.random() < 0.12:
        birth = add_years(person.birth, -rng.randint(25, 35)) - timedelta(days=rng.randint(0, 364))
        disabled = trait == "law104" or rng.random() < 0.55
        members.append(("GENITORE", rng.choice("MF"), birth, disabled, disabled))
    for relation, sex, birth, disability, dependent in members:
        surname = person.surname if relation != "CONIUGE" else rng.choice(SURNAMES)
        given = rng.choice(MALE_NAMES if sex == "M" else FEMALE_NAMES)
        place, place_code = rng.choice(BIRTH_PLACES)
        code = None
        if rng.random() >= 0.05:                # old records without the tax code
            code = unique_tax_code(used_tax_codes, surname, given, sex, birth, place_code)
        pct = rng.choice([Decimal("50.00"), Decimal("100.00")]) if dependent else None
        notes = "Convivente" if relation == "GENITORE" and rng.random() < 0.3 else None
        person.family.append((person.employee_id, relation, surname, given, code, birth,
                              disability, dependent, pct, notes))


def employee_row(rng: random.Random, person: Person, used_emails: set[str]) -> tuple:
    local = ".".join(ascii_letters(p).lower() for p in (person.given_name.split()[0],
                                                        person.surname))
    email = f"{local}@comune.valdoria.it"
    if email in used_emails:
        email = f"{local}{person.employee_id}@comune.valdoria.it"
    used_emails.add(email)
    city, postal = rng.choice(RESIDENCES)
    street = f"{rng.choice(STREETS)} {rng.randint(1, 120)}{rng.choice(['', '', '', '/A', '/B'])}"
    first_hire = person.contracts[0].start
    created = local_time(max(first_hire, date(2004, 9, 1)), 32400 + rng.randint(0, 28000))
    updated = created
    if rng.random() < 0.4:
        updated = local_time(rand_date(rng, created.date(), AS_OF), 32400 + rng.randint(0, 28000))
    return (
        person.employee_id, person.code, person.tax_code, person.surname, person.given_name,
        person.sex, person.birth, person.birth_place, person.birth_code, street, postal, city,
        email,
        f"{local}{rng.randint(1, 99)}@example.org" if rng.random() < 0.25 else None,
        f"{local}@pec.example.it" if rng.random() < 0.08 else None,
        f"+39 3{rng.randint(20, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
        if rng.random() < 0.65 else None,
        iban(rng) if rng.random() < 0.88 else None,
        make_signature_png(rng) if rng.random() < 0.6 else None,
        rng.choice(["Richiesta di trasferimento presentata", "Dati anagrafici verificati"])
        if rng.random() < 0.05 else None,
        created, updated,
    )
