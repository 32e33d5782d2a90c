"""The synthetic world's calendar: its fixed "today", the attendance window, Italian holidays,
and small date helpers. Every timestamp derives from AS_OF, never from the clock."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

# The synthetic world's "today": data runs up to this day, whatever the real date is.
AS_OF = date(2025, 11, 14)
# CCNL Funzioni Locali 2019-21: the A/B/C/D categories became areas on this day.
REFORM_DATE = date(2023, 4, 1)
ROME = ZoneInfo("Europe/Rome")


def window(years: int) -> tuple[date, date]:
    """Attendance window: from 1 January `years - 1` years before AS_OF's year to AS_OF."""
    return date(AS_OF.year - years + 1, 1, 1), AS_OF


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:                 # 29 February in a non-leap year
        return day.replace(year=day.year + years, day=28)


def rand_date(rng: random.Random, low: date, high: date) -> date:
    if high <= low:
        return low
    return low + timedelta(days=rng.randint(0, (high - low).days))


def local_time(day: date, seconds: int) -> datetime:
    """A Europe/Rome wall-clock time on `day`, `seconds` after midnight."""
    naive = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)
    return naive.replace(tzinfo=ROME)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def overlaps(start: date, end: date | None, low: date, high: date) -> bool:
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
