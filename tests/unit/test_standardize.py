"""Standardization for matching: the forms a matcher compares."""

import random

import phonenumbers
import pytest

from crm_platform.core.standardize import country_std, name_key, name_std, phone_e164, postcode_std, street_std


@pytest.mark.parametrize("raw", ["Müller", "Mueller", "MÜLLER ", " müller", "Müller"])
def test_umlaut_spellings_share_a_standard_form(raw):
    assert name_std(raw) == "mueller"


def test_transliteration_key_joins_plain_vowel_spelling():
    assert name_key("Müller") == name_key("Mueller") == name_key("Muller") == "muller"
    assert name_std("Groß") == "gross" and name_std("ﬁnn") == "finn"  # NFKC ligature
    assert name_std("Yılmaz") == "yilmaz" and name_std("René") == "rene"


@pytest.mark.parametrize("raw", ["+49 170 1234567", "0170 1234567", "0049 170 1234567",
                                 "0170/1234567", "01701234567", "+49 (0)170 1234567", "+49-170-1234567"])
def test_phone_formats_give_one_e164(raw):
    assert phone_e164(raw) == "+491701234567"


def _parsed_e164(raw: str, region: str) -> str | None:
    """The reference: phonenumbers.parse for every number."""
    try:
        num = phonenumbers.parse(raw.replace("(0)", ""), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(num) or len(str(num.national_number)) < 6:
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def test_phones_read_directly_equal_what_phonenumbers_parses():
    rng = random.Random(11)
    digits = lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15)))  # noqa: E731
    prefixes = ["", "0", "00", "+", "+49", "0049", "+43", "0043", "+41", "+1", "+4", "+49 (0)", "049"]
    raws = [rng.choice(prefixes) + digits() for _ in range(12_000)]
    raws += [" ".join([r[:4], r[4:8], r[8:]]) for r in raws[:2000]] + [r[:5] + "/" + r[5:] for r in raws[2000:4000]]
    raws += ["030 1234567 ext 12", "0800-FLOWERS", "++49 170 1234567", "+49", "0", "(030) 1234567"]
    differ = [(raw, region) for raw in raws for region in ("DE", "AT", "CH", "US")
              if phone_e164(raw, region) != _parsed_e164(raw, region)]
    assert not differ, differ[:10]
    assert sum(phone_e164(raw, "DE") is not None for raw in raws) > 3000    # many were possible numbers


def test_impossible_phone_is_none():
    assert phone_e164("12") is None and phone_e164("call me") is None and phone_e164(None) is None


@pytest.mark.parametrize("raw", ["Hauptstraße 5a", "Hauptstrasse 5 A", "Hauptstr. 5a", "HAUPTSTR 5a"])
def test_street_abbreviations_share_a_form(raw):
    assert street_std(raw) == "hauptstr 5a"


def test_postcodes_and_countries():
    assert postcode_std("1067", "DE") == "01067"
    assert postcode_std("D-80331", "DE") == "80331"
    assert postcode_std("123", "DE") is None
    assert country_std("Deutschland") == country_std("germany") == country_std(None) == "DE"


def test_a_name_match_form_is_valid_whatever_was_delivered():
    """The staging check on contacts holds every name's match form to letters first, then letters,
    hyphens and spaces: standardization must make that form from any delivered value, or none."""
    import re

    from crm_platform.contracts.schemas import Contacts

    rule = re.compile(Contacts.to_schema().columns["last_name_std"].checks[0].statistics["pattern"])
    assert name_std("-Schmidt") == "schmidt" and name_std("Meyer-") == "meyer"
    assert name_std("Müller-Lüdenscheidt") == "mueller-luedenscheidt" and name_std("-- ") is None
    rng = random.Random(5)
    alphabet = "aZ -'.,_0ÄöüßéØł李Ж\u200b\t"
    for _ in range(5000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        out = name_std(value)
        assert out is None or rule.fullmatch(out), (value, out)


@pytest.mark.parametrize("raw", ["12 High Street", "12 high st.", "12 High St", " 12  HIGH STREET "])
def test_english_street_types_share_a_form(raw):
    assert street_std(raw) == "12 high st"
