"""Employment contracts and careers: hiring, fixed terms and rehiring, terminations,
classification steps (old categories into the 2023 areas) and moves between units."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Iterator

from migrate.lab.data.dates import REFORM_DATE, add_years, rand_date
from migrate.lab.data.model import Act, Contract, Hr, Person
from migrate.lab.data.reference import AREA_LABELS, AREAS, ORG_UNITS, POSITIONS


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


def make_contracts(rng: random.Random, hr: Hr, person: Person, trait: str | None,
                   contract_ids: Iterator[int]) -> None:
    start, end = hr.start, hr.end
    hire = person.first_hire
    retirement = add_years(person.birth, 67)
    unit = _pick_unit(rng, trait)
    part_time = _pick_part_time(rng, trait)
    fixed_term = trait == "rehired" or (
        trait is None and hire >= add_years(start, -2) and rng.random() < 0.12)
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
        return rand_date(rng, low, end), rng.choice(["DIMISSIONI", "MOBILITA_ESTERNA"])
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
    step = add_years(contract.start, rng.randint(4, 8))
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
                step = add_years(when, 1)
        else:
            step = add_years(when, rng.randint(4, 8))
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
        when = rand_date(rng, contract.start + timedelta(days=365), limit - timedelta(days=30))
        choices = [u[0] for u in ORG_UNITS if u[4] > 0 and u[0] not in (unit, "POL")]
        new_unit = rng.choice(choices)
        act = hr.act("DETERMINA", when - timedelta(days=rng.randint(5, 40)),
                     f"Mobilità interna - matricola {person.code}")
        contract.units.append((unit, contract.start, when - timedelta(days=1)))
        contract.events.append((when, "TRASFERIMENTO", None, None, unit, new_unit, act, None))
        unit = new_unit
    contract.units.append((unit, contract.units[-1][2] + timedelta(days=1)
                           if contract.units else contract.start, contract.end))
