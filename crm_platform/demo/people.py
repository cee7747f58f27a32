"""True persons and the messy records the source systems keep of them.

A person is generated once with their true identity; every system that knows them gets a record
built from that identity with the variations real exports show: typos, nicknames, umlaut
transliteration, swapped names, missing fields, a second e-mail address, phone formats, street
abbreviations, an old address after a move, the maiden name after a marriage. Hard negatives are
built in: household members and twins share an address, landline and surname.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from crm_platform.demo import names as N

UMLAUT_AE = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"})
UMLAUT_PLAIN = str.maketrans({"ä": "a", "ö": "o", "ü": "u", "Ä": "A", "Ö": "O", "Ü": "U", "ß": "s",
                              "ı": "i", "é": "e", "ë": "e"})
ASCII_EMAIL = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ı": "i", "é": "e", "ë": "e",
                             " ": "", "'": ""})
LETTERS = "abcdefghijklmnopqrstuvwxyzäöü"


def _weighted(pairs):
    items = [n for n, w in pairs if w > 0]
    weights = np.array([w for _, w in pairs if w > 0], dtype=float)
    return items, weights / weights.sum()


FEMALE, FEMALE_P = _weighted(N.FEMALE_FIRST)
MALE, MALE_P = _weighted(N.MALE_FIRST)
LASTN, LAST_P = _weighted(N.LAST)


@dataclass
class GeneratorConfig:
    """Rates of the demo world. Defaults give a world a naive exact-match dedup gets wrong."""

    customers: int = 10_000
    seed: int = 42
    end_date: date = date(2026, 9, 30)
    months: int = 36
    chunk_size: int = 25_000
    # Which systems know a person (support and NPS presence also emerge from behaviour).
    p_shop: float = 0.80
    p_newsletter: float = 0.22
    p_sales: float = 0.05
    # A second record of the same person in the same system (second account, double sign-up).
    p_duplicate_in_system: float = 0.05
    # Hard negatives.
    p_household: float = 0.15
    p_twin: float = 0.01
    # Record variations, each drawn independently per record.
    p_typo: float = 0.10
    p_nickname: float = 0.08
    p_translit: float = 0.35   # of records whose name or city holds an umlaut
    p_swap: float = 0.02
    p_missing: float = 0.15
    p_second_email: float = 0.20
    p_moved: float = 0.08
    p_married: float = 0.04
    p_street_abbrev: float = 0.40
    # A shop account's phone is the household landline rather than the mobile.
    p_shop_landline: float = 0.25
    # Share of rows per landing file with an injected data error (for the quarantine).
    dirty_rate: float = 0.002
    # The last N days go to a delivery folder instead of landing/ (see generate); 0: none.
    delivery_days: int = 0
    # Where the people live: addresses, postcodes and phone numbers in that country's formats
    # (generator/locales.py: DE, US, GB).
    country: str = "DE"

    @property
    def locale(self):
        from crm_platform.demo.locales import LOCALES

        return LOCALES[self.country]


@dataclass
class Person:
    pid: str
    gender: str
    first: str
    last: str
    birth: date
    street: str
    house_no: str
    postcode: str
    city: str
    mobile: str
    landline: str
    email: str
    alt_email: str
    household_id: str
    twin_group: str = ""
    maiden: str = ""
    old_address: tuple[str, str, str, str] | None = None
    company: str = ""
    work_email: str = ""
    role_email: str = ""
    systems: set[str] = field(default_factory=set)


def make_persons(rng: np.random.Generator, cfg: GeneratorConfig, start: int, n: int,
                 taken: set[str] | None = None) -> list[Person]:
    """Persons ``start`` .. ``start+n-1`` with households and twins inside the chunk.

    A mailbox belongs to one person: an address already in ``taken`` gets more digits."""
    persons: list[Person] = []
    i = 0
    while i < n:
        p = _new_person(rng, cfg, start + i)
        persons.append(p)
        i += 1
        if i < n and rng.random() < cfg.p_twin:
            persons.append(_twin_of(rng, cfg, p, start + i))
            i += 1
        elif i < n and rng.random() < cfg.p_household:
            persons.append(_household_member(rng, cfg, p, start + i))
            i += 1
    for p in persons:
        if rng.random() < cfg.p_married:
            p.maiden = str(rng.choice(LASTN, p=LAST_P))
        if rng.random() < cfg.p_moved:
            street, no, pc, city = cfg.locale.address(rng)
            p.old_address = (street, no, pc, city)
    if taken is not None:
        for p in persons:
            for attr in ("email", "alt_email"):
                addr = getattr(p, attr)
                while addr in taken:
                    local, domain = addr.split("@")
                    addr = f"{local}{int(rng.integers(0, 10))}@{domain}"
                taken.add(addr)
                setattr(p, attr, addr)
    return persons


def _email(rng, cfg, first: str, last: str, birth: date) -> str:
    f, l = first.lower().translate(ASCII_EMAIL), last.lower().translate(ASCII_EMAIL)
    pattern = rng.integers(0, 5)
    local = [f"{f}.{l}", f"{f[0]}.{l}", f"{f}{l}", f"{l}.{f}", f"{f}_{l}"][pattern]
    if rng.random() < 0.7:
        local += str(int(rng.integers(1, 10_000)))
    elif rng.random() < 0.5:
        local += f"{birth.year % 100:02d}"
    return f"{local}@{cfg.locale.email_domain(rng)}"


def _birth(rng) -> date:
    return date.fromordinal(date(1945, 1, 1).toordinal() + int(rng.integers(0, 365 * 60)))


def _new_person(rng, cfg, idx: int) -> Person:
    gender = "f" if rng.random() < 0.52 else "m"
    first = str(rng.choice(FEMALE, p=FEMALE_P) if gender == "f" else rng.choice(MALE, p=MALE_P))
    last = str(rng.choice(LASTN, p=LAST_P))
    birth = _birth(rng)
    street, no, pc, city = cfg.locale.address(rng)
    landline = cfg.locale.landline(rng, pc, city)
    p = Person(pid=f"P{idx:08d}", gender=gender, first=first, last=last, birth=birth,
               street=street, house_no=no, postcode=pc, city=city, mobile=cfg.locale.mobile(rng),
               landline=landline, email=_email(rng, cfg, first, last, birth),
               alt_email=_email(rng, cfg, first, last, birth), household_id=f"H{idx:08d}")
    return p


def _household_member(rng, cfg, anchor: Person, idx: int) -> Person:
    """Same address, landline and surname; different first name and birth date."""
    gender = "m" if anchor.gender == "f" else "f"
    pool, probs = (FEMALE, FEMALE_P) if gender == "f" else (MALE, MALE_P)
    first = anchor.first
    while first == anchor.first:
        first = str(rng.choice(pool, p=probs))
    child = rng.random() < 0.3
    offset = int(rng.integers(20 * 365, 32 * 365)) if child else int(rng.integers(-8 * 365, 8 * 365))
    birth = date.fromordinal(anchor.birth.toordinal() + offset)
    if birth >= date(2007, 1, 1):                    # children are adults by the data's end
        birth = date.fromordinal(date(1988, 1, 1).toordinal() + int(rng.integers(0, 19 * 365)))
    if birth == anchor.birth:
        birth = date.fromordinal(birth.toordinal() + 400)
    return Person(pid=f"P{idx:08d}", gender=gender, first=first, last=anchor.last, birth=birth,
                  street=anchor.street, house_no=anchor.house_no, postcode=anchor.postcode,
                  city=anchor.city, mobile=cfg.locale.mobile(rng), landline=anchor.landline,
                  email=_email(rng, cfg, first, anchor.last, birth),
                  alt_email=_email(rng, cfg, first, anchor.last, birth), household_id=anchor.household_id)


def _twin_of(rng, cfg, anchor: Person, idx: int) -> Person:
    twin = _household_member(rng, cfg, anchor, idx)
    twin.birth = anchor.birth
    twin.twin_group = anchor.twin_group = f"T{int(anchor.pid[1:]):08d}"
    return twin


# --- variations -------------------------------------------------------------------------------

def typo(rng, s: str, edits: int) -> str:
    chars = list(s)
    for _ in range(edits):
        if len(chars) < 3:
            break
        i = int(rng.integers(1, len(chars)))
        op = rng.integers(0, 4)
        if op == 0:
            chars[i] = str(rng.choice(list(LETTERS)))
        elif op == 1:
            del chars[i]
        elif op == 2:
            chars.insert(i, str(rng.choice(list(LETTERS))))
        elif i < len(chars) - 1:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    out = "".join(chars)
    return out if out != s else s + str(rng.choice(list(LETTERS)))


@dataclass
class Identity:
    """The name, address and contact fields one record shows, with the variations applied."""

    first: str
    last: str
    email: str
    phone: str
    street: str
    postcode: str
    city: str
    birth: date | None
    variations: list[str]


def vary(rng, p: Person, cfg: GeneratorConfig, *, email: str | None = None, old: bool = False,
         phone: str | None = None) -> Identity:
    v: list[str] = []
    first, last = p.first, p.last
    if p.maiden and old:
        last = p.maiden
        v.append("maiden_name")
    if first in N.NICKNAMES and rng.random() < cfg.p_nickname:
        first = str(rng.choice(N.NICKNAMES[first]))
        v.append("nickname")
    street, no, pc, city = p.street, p.house_no, p.postcode, p.city
    if p.old_address and old:
        street, no, pc, city = p.old_address
        v.append("old_address")
    if any(ch in first + last + city for ch in "äöüÄÖÜßı") and rng.random() < cfg.p_translit:
        table = UMLAUT_AE if rng.random() < 0.6 else UMLAUT_PLAIN
        first, last, city = first.translate(table), last.translate(table), city.translate(table)
        v.append("transliteration")
    if rng.random() < cfg.p_typo:
        edits = 1 if rng.random() < 0.7 else 2
        if rng.random() < 0.5:
            last = typo(rng, last, edits)
        else:
            first = typo(rng, first, edits)
        v.append(f"typo{edits}")
    if rng.random() < cfg.p_swap:
        first, last = last, first
        v.append("swapped_names")
    if rng.random() < cfg.p_street_abbrev:
        street = cfg.locale.street_variant(rng, street)
    addr = cfg.locale.street_line(street, no)
    mail = email if email is not None else p.email
    if email is None and rng.random() < cfg.p_second_email:
        mail = p.alt_email
        v.append("second_email")
    tel = cfg.locale.phone_format(rng, phone or p.mobile)
    birth: date | None = p.birth
    if rng.random() < cfg.p_missing:
        drop = int(rng.integers(0, 4))
        if drop == 0:
            tel = ""
        elif drop == 1:
            birth = None
        elif drop == 2:
            addr = ""
        else:
            mail = ""
        v.append("missing_field")
    if rng.random() < 0.1:
        pc_out = pc.lstrip("0") if pc.startswith("0") else pc  # spreadsheet lost the leading zero
    else:
        pc_out = pc
    if rng.random() < 0.15:
        first, last = first.upper() if rng.random() < 0.3 else first.lower(), last
    return Identity(first, last, mail, tel, addr, pc_out, city, birth, v)
