"""Italian identifiers that pass their checks: the codice fiscale (with homocodes) and IBANs."""

from __future__ import annotations

import random
import unicodedata
from datetime import date

_CF_MONTHS = "ABCDEHLMPRST"
_CF_ODD = dict(zip("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                   [1, 0, 5, 7, 9, 13, 15, 17, 19, 21] +
                   [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16,
                    10, 22, 25, 24, 23]))
_CF_OMOCODE = "LMNPQRSTUV"        # digit -> letter substitution for homocodes
_CF_OMOCODE_POSITIONS = (14, 13, 12, 10, 9, 7, 6)


def ascii_letters(text: str) -> str:
    """Upper-case A-Z letters of `text`, accents stripped (Nicolò -> NICOLO)."""
    plain = unicodedata.normalize("NFKD", text).upper()
    return "".join(c for c in plain if "A" <= c <= "Z")


def _cf_part(text: str, *, given_name: bool) -> str:
    letters = ascii_letters(text)
    consonants = [c for c in letters if c not in "AEIOU"]
    vowels = [c for c in letters if c in "AEIOU"]
    # Given names with four or more consonants use the 1st, 3rd and 4th.
    if given_name and len(consonants) >= 4:
        consonants = [consonants[0], consonants[2], consonants[3]]
    return ("".join(consonants + vowels) + "XXX")[:3]


def _cf_check(first15: str) -> str:
    total = 0
    for i, ch in enumerate(first15):
        if i % 2 == 0:                       # odd positions, 1-based
            total += _CF_ODD[ch]
        else:
            total += int(ch) if ch.isdigit() else ord(ch) - ord("A")
    return chr(ord("A") + total % 26)


def tax_code(surname: str, given_name: str, sex: str, birth: date, place_code: str,
             homocode: int = 0) -> str:
    """Italian codice fiscale; `homocode` > 0 applies that many digit->letter substitutions
    (what the revenue agency does when two people would get the same code)."""
    day = birth.day + (40 if sex == "F" else 0)
    chars = list(_cf_part(surname, given_name=False) + _cf_part(given_name, given_name=True)
                 + f"{birth.year % 100:02d}" + _CF_MONTHS[birth.month - 1] + f"{day:02d}"
                 + place_code)
    for pos in _CF_OMOCODE_POSITIONS[:homocode]:
        chars[pos] = _CF_OMOCODE[int(chars[pos])]
    first15 = "".join(chars)
    return first15 + _cf_check(first15)


def unique_tax_code(used: set[str], *args) -> str:
    for homocode in range(len(_CF_OMOCODE_POSITIONS) + 1):
        code = tax_code(*args, homocode=homocode)
        if code not in used:
            used.add(code)
            return code
    raise RuntimeError("tax code space exhausted")  # needs 8 identical people: not reachable


def iban(rng: random.Random) -> str:
    """An Italian IBAN with a correct ISO 7064 mod-97 check (CIN is random)."""
    bban = (rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + f"{rng.randrange(10**5):05d}"
            + f"{rng.randrange(10**5):05d}" + f"{rng.randrange(10**12):012d}")
    digits = "".join(str(int(c, 36)) for c in bban + "IT00")
    return f"IT{98 - int(digits) % 97:02d}{bban}"
