"""Standardize contact fields for matching while the display values stay as delivered.

Plain functions (tested on their own) that staging registers as vectorized DuckDB functions.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers
import pyarrow as pa
from unidecode import unidecode

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_NON_NAME = re.compile(r"[^a-z\- ]+")
_SPACES = re.compile(r"\s+")
_STREET_SUFFIX = re.compile(r"(str\.?|strasse|straße)(?=\s|\d|$)")
_HOUSE_NO = re.compile(r"(\d+)\s+([a-z])\b")
COUNTRY_ALIASES = {"de": "DE", "d": "DE", "deu": "DE", "deutschland": "DE", "germany": "DE",
                   "at": "AT", "österreich": "AT", "oesterreich": "AT", "austria": "AT",
                   "ch": "CH", "schweiz": "CH", "switzerland": "CH", "nl": "NL", "niederlande": "NL",
                   "fr": "FR", "frankreich": "FR", "france": "FR"}


@lru_cache(maxsize=200_000)
def display(value: str | None) -> str | None:
    """NFKC, trimmed, inner white space collapsed: how a value is shown."""
    if value is None:
        return None
    out = _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip()
    return out or None


@lru_cache(maxsize=200_000)
def name_std(value: str | None) -> str | None:
    """Match form of a name: NFKC, casefolded, umlauts spelled out (Müller -> mueller), other
    accents removed, only letters, hyphens and single spaces left."""
    if value is None:
        return None
    s = unicodedata.normalize("NFKC", value).casefold().translate(_UMLAUTS)
    s = unidecode(s).lower()
    s = _SPACES.sub(" ", _NON_NAME.sub(" ", s)).strip()
    return s or None


@lru_cache(maxsize=200_000)
def name_key(value: str | None) -> str | None:
    """Transliteration-blind key: Müller, Mueller and Muller all give 'muller'."""
    s = name_std(value)
    if s is None:
        return None
    return s.replace("ae", "a").replace("oe", "o").replace("ue", "u")


def email_std(value: str | None) -> str | None:
    if value is None:
        return None
    s = unicodedata.normalize("NFKC", value).strip().lower()
    return s or None


@lru_cache(maxsize=500_000)
def phone_e164(value: str | None, region: str = "DE") -> str | None:
    """A phone number in E.164 (+4917012345678), or None when it is not a possible number."""
    if value is None or not value.strip():
        return None
    value, region = value.replace("(0)", ""), region or "DE"
    direct = _phone_direct(value, region)
    if direct is not None:
        # what the checks and the formatting below make of it, without their objects and lookups
        code, national = direct
        return f"+{code}{national}" if _possible(code, len(national)) else None
    try:
        num = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    # German numbers may be short in theory; below six digits it is a typo, not a phone number.
    if not phonenumbers.is_possible_number(num) or len(str(num.national_number)) < 6:
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


# phonenumbers.parse takes about 70 µs a number: most of staging's time on a large contact base.
# Digits and separators only, in German or Austrian national format or dialled to Germany or
# Austria with + or 00, are read directly - the same number parse gives (tests/test_standardize.py
# compares both on random digit strings); anything else goes through parse.
_DIRECT_REGIONS = {"DE": "49", "AT": "43"}
_PHONE_SEPARATORS = re.compile(r"[\s/.\-()]+")
_PHONE_DIGITS = re.compile(r"(\+|00)?([0-9]+)")


@lru_cache(maxsize=None)
def _possible(country_code: int, digits: int) -> bool:
    """Whether phone_e164 keeps a number read directly (``_phone_direct``): possible by
    ``phonenumbers.is_possible_number``, which looks at the country code and the length of the
    national number alone, and six digits or more. Its E.164 form is then + country code + national
    number."""
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int("9" * digits))
    return digits >= 6 and phonenumbers.is_possible_number(number)


def _phone_direct(value: str, region: str) -> tuple[int, str] | None:
    """(country code, national number) of a number read directly; None: parse decides."""
    m = _PHONE_DIGITS.fullmatch(_PHONE_SEPARATORS.sub("", value))
    if m is None or region not in _DIRECT_REGIONS:
        return None
    international, digits = m.groups()
    if international:
        code, national = digits[:2], digits[2:]
        if code not in _DIRECT_REGIONS.values():
            return None
    else:
        code, national = _DIRECT_REGIONS[region], digits[1:]
        if digits[:1] != "0":
            return None
    if not national or national[0] == "0":      # trunk or international prefix left: parse decides
        return None
    return int(code), national


@lru_cache(maxsize=200_000)
def street_std(value: str | None) -> str | None:
    """Hauptstraße 5 A, Hauptstrasse 5a and Hauptstr. 5a all give 'hauptstr 5a'."""
    if value is None:
        return None
    s = unicodedata.normalize("NFKC", value).casefold().strip()
    s = _STREET_SUFFIX.sub("str ", s).replace("ß", "ss")
    s = unidecode(s.translate(_UMLAUTS)).lower()
    s = re.sub(r"[^a-z0-9 ]+", " ", s)
    s = _HOUSE_NO.sub(r"\1\2", _SPACES.sub(" ", s).strip())
    return s or None


@lru_cache(maxsize=200_000)
def postcode_std(value: str | None, country: str | None = "DE") -> str | None:
    """German postcodes as five digits, restoring a leading zero a spreadsheet dropped."""
    if value is None:
        return None
    digits = re.sub(r"\D", "", value)
    if not digits:
        return None
    if (country or "DE") == "DE":
        if len(digits) == 4:
            digits = "0" + digits
        return digits if len(digits) == 5 else None
    return digits


@lru_cache(maxsize=1_000)
def country_std(value: str | None, default: str = "DE") -> str:
    if value is None or not value.strip():
        return default
    s = value.strip().casefold()
    return COUNTRY_ALIASES.get(s, value.strip().upper()[:2])


def register(con) -> None:
    """Register the standardizers as vectorized DuckDB functions (std_name, std_phone, ...)."""
    def vec(fn, arity):
        def apply(*arrays):
            cols = [a.to_pylist() for a in arrays]
            return pa.array([fn(*vals) for vals in zip(*cols)], pa.string())
        # DuckDB reads the arity off the signature, so give each function its own.
        if arity == 1:
            return lambda a: apply(a)
        return lambda a, b: apply(a, b)

    specs = {
        "std_display": (display, 1), "std_name": (name_std, 1), "std_name_key": (name_key, 1),
        "std_email": (email_std, 1), "std_phone": (phone_e164, 2), "std_street": (street_std, 1),
        "std_postcode": (postcode_std, 2), "std_country": (country_std, 2),
    }
    for name, (fn, arity) in specs.items():
        try:
            con.remove_function(name)
        except Exception:
            pass
        con.create_function(name, vec(fn, arity), ["VARCHAR"] * arity, "VARCHAR", type="arrow",
                            null_handling="special", side_effects=False)
