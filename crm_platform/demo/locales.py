"""Where the demo world lives: addresses, postcodes, phone numbers and the forms people type them
in, for Germany (the default), the United States and Great Britain.

Germany's draws are the generator's original ones, in the same order, so a German world is the
same for a seed whatever else this module offers. The other countries write their own formats: US
ZIP codes and "(212) 555-0147", British postcodes ("SW1A 2AA") and "020 7946 0321", house number
before the street, their own abbreviations (Street/St, Road/Rd) and e-mail providers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crm_platform.demo import names as N


def _weighted(pairs):
    items = [n for n, w in pairs if w > 0]
    weights = np.array([w for _, w in pairs if w > 0], dtype=float)
    return items, weights / weights.sum()


@dataclass(frozen=True)
class Locale:
    code: str                       # ISO country, as the sources mapping declares it
    timezone: str
    cities: list                    # (city, postcode prefix or outward codes, area code, weight)
    streets: list[str]
    abbreviations: dict[str, list[str]]    # street word -> typed forms
    domains: list
    country_values: tuple[list[str], list[float]]   # what a shop's country column holds
    number_first: bool              # "12 High Street" rather than "Hauptstraße 12"

    def __post_init__(self):
        object.__setattr__(self, "_city", _weighted([(i, c[-1]) for i, c in enumerate(self.cities)]))
        object.__setattr__(self, "_domain", _weighted(self.domains))

    def address(self, rng) -> tuple[str, str, str, str]:
        """(street, house number, postcode, city)."""
        idx, p = self._city
        ci = int(rng.choice(idx, p=p))
        city, prefix = self.cities[ci][0], self.cities[ci][1]
        street = str(rng.choice(self.streets))
        no = str(int(rng.integers(1, 160))) + ("a" if rng.random() < 0.05 else "")
        if self.code == "DE":
            return street, no, prefix + f"{int(rng.integers(0, 1000)):03d}", city
        if self.code == "US":
            return street, no, prefix + f"{int(rng.integers(0, 100)):02d}", city
        outward = str(rng.choice(prefix))
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        inward = f"{int(rng.integers(0, 10))}{letters[int(rng.integers(0, 20))]}{letters[int(rng.integers(0, 20))]}"
        return street, no, f"{outward} {inward}", city

    def street_line(self, street: str, no: str) -> str:
        return f"{no} {street}" if self.number_first else f"{street} {no}"

    def mobile(self, rng) -> str:
        if self.code == "DE":
            return f"+4915{int(rng.integers(0, 10))}{int(rng.integers(0, 10**7)):07d}" if rng.random() < 0.4 \
                else f"+491{int(rng.choice([60, 62, 70, 71, 72, 73, 75, 76, 77, 78, 79]))}{int(rng.integers(0, 10**7)):07d}"
        if self.code == "US":
            area = int(rng.choice([212, 310, 312, 415, 617, 713, 206, 305, 404, 503]))
            return f"+1{area}{int(rng.integers(2, 10))}{int(rng.integers(0, 100)):02d}{int(rng.integers(0, 10**4)):04d}"
        return f"+447{int(rng.choice([400, 700, 800, 900, 500]) + int(rng.integers(0, 100))):03d}" \
               f"{int(rng.integers(0, 10**6)):06d}"

    def landline(self, rng, postcode: str, city: str) -> str:
        if self.code == "DE":
            # German area codes never start with 0 after the country code.
            return f"+49{2 + int(postcode[0]) % 8}{postcode[1]}{int(rng.integers(10**6, 10**7))}"
        area = next(c[2] for c in self.cities if c[0] == city)
        if self.code == "US":
            return f"+1{area}{int(rng.integers(2, 10))}{int(rng.integers(0, 100)):02d}{int(rng.integers(0, 10**4)):04d}"
        rest = 10 - len(area)
        return f"+44{area}{int(rng.integers(2, 10))}{int(rng.integers(0, 10 ** (rest - 1))):0{rest - 1}d}"

    def phone_format(self, rng, e164: str) -> str:
        """The same E.164 number as a person or system might type it."""
        if self.code == "DE":
            national = e164[3:]
            area, rest = national[:3], national[3:]
            style = int(rng.integers(0, 7))
            return [f"+49 {area} {rest}", f"0{area} {rest}", f"0049 {area} {rest}", f"0{area}/{rest}",
                    f"0{national}", f"+49 (0){area} {rest}", f"+49-{area}-{rest}"][style]
        if self.code == "US":
            n = e164[2:]
            a, b, c = n[:3], n[3:6], n[6:]
            style = int(rng.integers(0, 6))
            return [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+1 {a} {b} {c}", f"1-{a}-{b}-{c}", f"{a}.{b}.{c}",
                    f"{a}{b}{c}"][style]
        national = "0" + e164[3:]
        split = 3 if national[1] == "2" else 5        # 020 7946 0321, 07700 900123
        a, rest = national[:split], national[split:]
        style = int(rng.integers(0, 5))
        return [f"{a} {rest[:4]} {rest[4:]}".strip(), f"{a} {rest}", f"+44 {a[1:]} {rest}", f"+44 (0){a[1:]} {rest}",
                national][style]

    def street_variant(self, rng, street: str) -> str:
        for full, typed in self.abbreviations.items():
            if street.endswith(full):
                return street[: -len(full)] + str(rng.choice(typed))
        return street

    def email_domain(self, rng) -> str:
        items, p = self._domain
        return str(rng.choice(items, p=p))

    def country_value(self, rng) -> str:
        values, p = self.country_values
        return str(rng.choice(values, p=p))


LOCALES = {
    "DE": Locale("DE", "Europe/Berlin", [(c, pfx, None, w) for c, pfx, w in N.CITIES], N.STREETS,
                 {"straße": ["str.", "strasse", "Str.", " Str."], "Straße": ["Str.", "Strasse", "str."]},
                 N.EMAIL_DOMAINS, (["DE", "Deutschland", "Germany", "D"], [0.7, 0.2, 0.05, 0.05]), False),
    "US": Locale("US", "America/New_York", [
        ("New York", "100", 212, 30), ("Los Angeles", "900", 310, 20), ("Chicago", "606", 312, 14),
        ("Houston", "770", 713, 10), ("Boston", "021", 617, 8), ("San Francisco", "941", 415, 8),
        ("Seattle", "981", 206, 6), ("Miami", "331", 305, 6), ("Atlanta", "303", 404, 5), ("Portland", "972", 503, 4)],
        ["Main Street", "Oak Street", "Maple Avenue", "Park Avenue", "Cedar Lane", "Elm Street", "Washington Street",
         "Lake Road", "Hill Road", "Sunset Boulevard", "Pine Street", "Church Street"],
        {"Street": ["St", "St.", "Str"], "Avenue": ["Ave", "Ave."], "Road": ["Rd", "Rd."], "Lane": ["Ln"],
         "Boulevard": ["Blvd"]},
        [("gmail.com", 40), ("yahoo.com", 20), ("outlook.com", 15), ("aol.com", 8), ("icloud.com", 12),
         ("comcast.net", 5)],
        (["US", "USA", "United States", "U.S."], [0.6, 0.25, 0.1, 0.05]), True),
    "GB": Locale("GB", "Europe/London", [
        ("London", ["SW1A", "E1", "N1", "W1A", "SE1", "NW3", "EC1Y"], "20", 40),
        ("Manchester", ["M1", "M2", "M14"], "161", 12), ("Birmingham", ["B1", "B15", "B6"], "121", 12),
        ("Leeds", ["LS1", "LS6"], "113", 8), ("Glasgow", ["G1", "G12"], "141", 8),
        ("Bristol", ["BS1", "BS8"], "117", 6), ("Edinburgh", ["EH1", "EH3"], "131", 6),
        ("Liverpool", ["L1", "L18"], "151", 6), ("Oxford", ["OX1", "OX4"], "1865", 3)],
        ["High Street", "Station Road", "Church Road", "Park Road", "Victoria Road", "Green Lane", "Manor Road",
         "Church Street", "Mill Lane", "Kings Road", "Queens Road", "London Road"],
        {"Street": ["St", "St."], "Road": ["Rd", "Rd."], "Lane": ["Ln"]},
        [("gmail.com", 35), ("hotmail.co.uk", 20), ("yahoo.co.uk", 15), ("btinternet.com", 10),
         ("outlook.com", 12), ("sky.com", 8)],
        (["GB", "UK", "United Kingdom", "England"], [0.5, 0.3, 0.15, 0.05]), True),
}
