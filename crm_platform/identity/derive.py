"""A match spec derived from the data: which canonical columns the sources fill decides what is
blocked on, compared, trained on and trusted outright.

Nobody has to write a match spec. ``profile(con)`` measures ``staging.contacts`` (how many records
fill each match column, how many distinct values it holds); ``derive(profile)`` turns that into the
YAML mapping of a spec (``crm_platform/identity/spec.py``), the same one a user could write:

* **comparisons** by column type, each with levels strongest first: names (exact, nickname,
  swapped first and last name, Jaro-Winkler bands), birth date (exact, one digit or transposed,
  same year and month), e-mail, phone, address, city, salutation, identifiers;
* **blocking rules** on every combination whose columns are filled: identifiers alone, name with
  birth date or postcode, address, swapped names, sound-alike (Metaphone) names, birth date with
  city or street, surname with city;
* **training rules**: the identifier and name-with-birth-date rules, and then, for a comparison
  that none of them leaves free, the rules that do;
* **deterministic rules** where strong identifiers exist (a personal e-mail with a compatible first
  name, a carried shop account, a national id with the same birth date or name);
* **guards**: a cluster-size cap, and a veto only for declared strong identifiers (two different
  national ids or shop accounts). A different birth date or another first name at the same address
  lowers the weight through levels learnt like any other.

A column filled in fewer than ``MIN_FILL`` of the records counts as absent. The derivation reads
only which columns are filled, never the share itself, so a day's new records do not change the
spec (and with it force a full re-match). ``crm-platform match-spec`` prints the derived spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crm_platform.core.warehouse import columns, table_exists

# a column filled in fewer records than this share carries too little to match on
MIN_FILL = 0.01
# the columns the derivation looks at (staging.contacts' match forms)
MATCH_COLUMNS = ("first_name_key", "last_name_key", "first_name_phonetic", "last_name_phonetic", "birth_date",
                 "email_std", "phone_e164", "street_std", "postcode", "city_std", "salutation", "shop_customer_no",
                 "national_id")
ROLE_MAILBOXES = ("info|kontakt|contact|office|mail|service|sales|vertrieb|einkauf|buchhaltung|hello|hallo|team|"
                  "support|post|admin|verwaltung|zentrale|enquiries|accounts|billing|noreply|no-reply")


@dataclass
class Profile:
    """What ``staging.contacts`` holds: records, and per match column its filled records and
    distinct values."""
    records: int
    filled: dict[str, int] = field(default_factory=dict)
    distinct: dict[str, int] = field(default_factory=dict)
    account_dataset: str | None = None      # whose record ids other systems carry as shop_customer_no
    tickets_name_accounts: bool = False      # support tickets carry the requester's shop account

    def has(self, *cols: str) -> bool:
        return all(self.filled.get(c, 0) >= max(2, MIN_FILL * self.records) for c in cols)


def profile(con, table: str = "staging.contacts") -> Profile:
    have = [c for c in MATCH_COLUMNS if c in columns(con, table)]
    row = con.execute("SELECT count(*)"
                      + "".join(f", count({c}), count(DISTINCT {c})" for c in have)
                      + f" FROM {table}").fetchall()[0]
    prof = Profile(records=int(row[0]), filled={c: int(row[1 + 2 * i]) for i, c in enumerate(have)},
                   distinct={c: int(row[2 + 2 * i]) for i, c in enumerate(have)})
    if prof.has("shop_customer_no"):
        # the dataset whose own ids the carried numbers are: most of them found among its records
        best = con.execute(f"""SELECT r.dataset, count(DISTINCT c.shop_customer_no) AS n FROM {table} c
            JOIN {table} r ON r.source_record_id = c.shop_customer_no AND r.dataset <> c.dataset
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1""").fetchall()
        if best and best[0][1] >= 0.5 * prof.distinct["shop_customer_no"]:
            prof.account_dataset = best[0][0]
    if table_exists(con, "staging.support_tickets") and \
            {"contact_key", "shop_customer_no"} <= set(columns(con, "staging.support_tickets")):
        prof.tickets_name_accounts = bool(con.execute(
            "SELECT count(shop_customer_no) > 0 FROM staging.support_tickets").fetchall()[0][0])
    return prof


def for_columns(cols, account_dataset: str | None = None, tickets_name_accounts: bool = False) -> Profile:
    """The profile of data that fills ``cols`` in every record (for the spec of a column set
    before any data is staged, and for tests)."""
    n = 1_000
    return Profile(records=n, filled={c: n for c in cols}, distinct={c: n for c in cols},
                   account_dataset=account_dataset, tickets_name_accounts=tickets_name_accounts)


def _jw(label: str, col: str, t: float) -> dict:
    return {"label": label, "kind": "jaro_winkler", "column": col, "threshold": t}


def _name(name: str, col: str, swap: str | None, nickname: bool = False) -> dict:
    """A name comparison: exact, a nickname (first names), swapped with the other name field,
    Jaro-Winkler 0.92 and 0.80; common names weigh less (term frequencies)."""
    levels = [{"label": "exact", "kind": "exact"}]
    if nickname:
        levels.append({"label": "nickname", "kind": "sql",
                       "sql": "len(list_intersect(l.first_name_forms, r.first_name_forms)) > 0"})
    if swap:
        levels.append({"label": swap, "kind": "swapped", "columns": ["first_name_key", "last_name_key"]})
    levels += [_jw("jaro_winkler_0.92", col, 0.92), _jw("jaro_winkler_0.80", col, 0.80)]
    return {"name": name, "column": col, "term_frequency_column": col, "levels": levels}


def derive(p: Profile) -> dict:
    """The match spec for data of this profile, as the YAML mapping ``spec.parse_spec`` reads."""
    first, last, dob = p.has("first_name_key"), p.has("last_name_key"), p.has("birth_date")
    email, phone, street, pc = p.has("email_std"), p.has("phone_e164"), p.has("street_std"), p.has("postcode")
    city, nid = p.has("city_std"), p.has("national_id")
    account = p.has("shop_customer_no") or p.account_dataset is not None
    derive_cols: dict[str, str] = {}
    lookups = {}
    if first:
        lookups["nicknames"] = "package:nicknames.csv"
        derive_cols["first_name_forms"] = (
            # sorted: the same list on every engine (list_distinct keeps no order)
            "list_sort(list_distinct(list_concat([first_name_key], "
            "coalesce((SELECT list(n.name) FROM lookup_nicknames n WHERE n.nickname = first_name_key), []), "
            "coalesce((SELECT list(n.nickname) FROM lookup_nicknames n WHERE n.name = first_name_key), []))))")
    if email:
        derive_cols["email_personal"] = (f"CASE WHEN regexp_matches(email_local, '^({ROLE_MAILBOXES})$') "
                                         "THEN NULL ELSE email_std END")
    if city:
        derive_cols["city_key"] = "replace(replace(replace(city_std, 'ae', 'a'), 'oe', 'o'), 'ue', 'u')"
    if account:
        own = f"WHEN dataset = '{p.account_dataset}' THEN source_record_id " if p.account_dataset else ""
        tickets = ("(SELECT min(t.shop_customer_no) FROM staging.support_tickets t WHERE t.contact_key = s.contact_key)"
                   if p.tickets_name_accounts else "NULL")
        carried = f"coalesce(shop_customer_no, {tickets})"
        derive_cols["shop_account"] = f"CASE {own}ELSE {carried} END" if own else carried
    else:       # golden records and subject requests read it whatever the data
        derive_cols["shop_account"] = "shop_customer_no"
    if first and last:
        derive_cols["name_pair"] = "list_sort([first_name_key, last_name_key])"

    # -- blocking: every rule whose columns are filled
    rules: list[dict] = []

    def rule(name: str, keys: list[str], need: bool, limit: int | None = None, train: bool = False) -> None:
        if need:
            rules.append({"name": name, "keys": keys, **({"max_block_size": limit} if limit else {}),
                          "_train": train})

    rule("email", ["email_personal"], email, train=True)
    # not a training rule: a household shares its landline, so EM would learn members as matches
    rule("phone", ["phone_e164"], phone)
    rule("national_id", ["national_id"], nid, train=True)
    rule("shop_account", ["shop_account"], account)
    rule("first_name_birth_date", ["first_name_key", "birth_date"], first and dob, train=True)
    rule("surname_birth_date", ["last_name_key", "birth_date"], last and dob, train=True)
    rule("surname_postcode", ["last_name_key", "postcode"], last and pc)
    rule("address", ["street_std", "postcode"], street and pc)
    rule("swapped_names_postcode", ["name_pair", "postcode"], first and last and pc)
    rule("swapped_names_birth_date", ["name_pair", "birth_date"], first and last and dob)
    rule("first_name_postcode", ["first_name_key", "postcode"], first and pc)
    rule("birth_date_postcode", ["birth_date", "postcode"], dob and pc)
    rule("birth_date_city", ["birth_date", "city_key"], dob and city)
    rule("birth_date_street", ["birth_date", "street_std"], dob and street)
    rule("sound_alike_names_birth_date", ["first_name_phonetic", "last_name_phonetic", "birth_date"],
         p.has("first_name_phonetic", "last_name_phonetic") and dob)
    rule("sound_alike_surname_postcode", ["last_name_phonetic", "postcode"], p.has("last_name_phonetic") and pc)
    # a common name in a big city: many people, little evidence; small blocks only
    rule("full_name_city", ["first_name_key", "last_name_key", "city_key"], first and last and city, limit=20)
    # (surname + city: blocks of ten at most would cross their limit as a day adds records; see docs)
    rule("full_name", ["first_name_key", "last_name_key"], first and last and not (dob or city or pc), limit=20)

    # -- comparisons by column type
    comps: list[dict] = []
    if first:
        comps.append(_name("first_name", "first_name_key", swap="swapped_with_surname" if last else None,
                           nickname=True))
    if last:
        comps.append(_name("last_name", "last_name_key", swap="swapped_with_first_name" if first else None))
    if dob:
        comps.append({"name": "birth_date", "column": "birth_date", "levels": [
            {"label": "exact", "kind": "exact"},
            {"label": "one_digit_or_transposed", "kind": "date_transposed"},
            {"label": "same_year_and_month", "kind": "sql",
             "sql": "date_trunc('month', l.birth_date) = date_trunc('month', r.birth_date)"}]})
    if p.has("salutation") and p.distinct.get("salutation", 0) > 1:
        # Frau / Herr: a couple or twins of opposite sex share surname, address and even birth date
        comps.append({"name": "salutation", "column": "salutation", "levels": [{"label": "same", "kind": "exact"}]})
    if email:
        comps.append({"name": "email", "column": "email_personal", "levels": [
            {"label": "exact", "kind": "exact"},
            # a bare local part like m.mueller is shared by many people; with a number in it, far fewer
            {"label": "same_local_part_with_number", "kind": "sql",
             "sql": "l.email_local = r.email_local AND regexp_matches(l.email_local, '[0-9]{2,}')"}]})
    if phone:
        comps.append({"name": "phone", "column": "phone_e164", "levels": [
            {"label": "exact", "kind": "exact"},
            {"label": "last_seven_digits", "kind": "sql", "sql": "right(l.phone_e164, 7) = right(r.phone_e164, 7)"}]})
    if nid:
        comps.append({"name": "national_id", "column": "national_id", "levels": [
            {"label": "exact", "kind": "exact"},
            {"label": "one_edit", "kind": "damerau_levenshtein", "max": 1}]})
    if pc or street or city:
        # one comparison for the address: a postcode names its city, so the two agreeing are one
        # piece of evidence; the city counts where the postcodes differ or one is missing
        levels = []
        if street and pc:
            levels += [{"label": "same_street_and_postcode", "kind": "sql",
                        "sql": "l.street_std = r.street_std AND l.postcode = r.postcode"},
                       {"label": "similar_street_same_postcode", "kind": "sql",
                        "sql": "jaro_winkler_similarity(l.street_std, r.street_std) >= 0.88 AND l.postcode = r.postcode"}]
        elif street:
            levels += [{"label": "same_street", "kind": "sql", "sql": "l.street_std = r.street_std"}]
        if pc:
            levels += [{"label": "same_postcode", "kind": "sql", "sql": "l.postcode = r.postcode"}]
        if city:
            levels += [{"label": "same_city", "kind": "sql", "sql": "l.city_key = r.city_key"}]
        if pc:
            levels += [{"label": "postcode_one_edit", "kind": "sql", "sql": "damerau_levenshtein(l.postcode, r.postcode) <= 1"}]
        if city:
            levels += [{"label": "similar_city", "kind": "sql", "sql": "jaro_winkler_similarity(l.city_key, r.city_key) >= 0.88"}]
        cols = [c for c, ok in (("postcode", pc), ("street_std", street), ("city_key", city)) if ok]
        comps.append({"name": "address", "columns": cols, "null_if": "all", "levels": levels})

    # -- training: identifier and name-with-birth-date rules; then rules that free the rest
    training = [r["name"] for r in rules if r["_train"]]
    keys_of = {r["name"]: set(r["keys"]) for r in rules}
    uses = {c["name"]: _reads(c, derive_cols) for c in comps}
    for c in comps:
        if not any(not (uses[c["name"]] & _expand(keys_of[t], derive_cols)) for t in training):
            free = [r["name"] for r in rules if r["name"] not in training and "max_block_size" not in r
                    and not (uses[c["name"]] & _expand(keys_of[r["name"]], derive_cols))]
            training += free[:2]

    deterministic = []
    if email:
        compatible = ("l.first_name_key IS NULL OR r.first_name_key IS NULL "
                      "OR jaro_winkler_similarity(l.first_name_key, r.first_name_key) >= 0.8 "
                      "OR len(list_intersect(l.first_name_forms, r.first_name_forms)) > 0 "
                      "OR (jaro_winkler_similarity(l.first_name_key, r.last_name_key) >= 0.8 "
                      "AND jaro_winkler_similarity(l.last_name_key, r.first_name_key) >= 0.8)") if first else "true"
        deterministic.append({"name": "same_personal_email_compatible_first_name",
                              "sql": f"l.email_personal = r.email_personal AND ({compatible})"})
    if account:
        deterministic.append({"name": "same_shop_account", "sql": "l.shop_account = r.shop_account"})
    if nid:
        also = [c for c, ok in (("l.birth_date = r.birth_date", dob),
                                ("jaro_winkler_similarity(l.last_name_key, r.last_name_key) >= 0.9", last)) if ok]
        deterministic.append({"name": "same_national_id", "sql": "l.national_id = r.national_id"
                              + (f" AND ({' OR '.join(also)})" if also else "")})
    if phone and last and dob and first:
        deterministic.append({"name": "same_phone_surname_birth_date_first_name", "sql": (
            "l.phone_e164 = r.phone_e164 AND l.last_name_key = r.last_name_key AND l.birth_date = r.birth_date "
            "AND jaro_winkler_similarity(l.first_name_key, r.first_name_key) >= 0.8")})

    # a family: (nearly) the same surname and the same address, phone or birth date (twins). Such
    # pairs are scored by a model of their own, learnt on them: the shared surname, address and
    # phone are no evidence there, and how often family members share a birth date is learnt
    shared = [c for c, ok in (("l.street_std = r.street_std", street), ("l.phone_e164 = r.phone_e164", phone),
                              ("(l.postcode = r.postcode AND (l.street_std IS NULL OR r.street_std IS NULL OR "
                               "jaro_winkler_similarity(l.street_std, r.street_std) >= 0.85))" if street else
                               "l.postcode = r.postcode", pc)) if ok]
    contexts = []
    inside = [c["name"] for c in comps if c["name"] not in ("last_name", "address", "phone")]
    # the same surname, a typo of it, or it standing in the other record's first-name field
    family = ("(jaro_winkler_similarity(l.last_name_key, r.last_name_key) >= 0.8 "
              "OR l.last_name_key = r.first_name_key OR l.first_name_key = r.last_name_key)")
    if last and shared and first and inside:
        contexts.append({"name": "household", "comparisons": inside, "sql": (
            f"{family} AND ({' OR '.join(shared)})")})
    # siblings born the same day (twins) elsewhere: the surname and the birth date are shared
    inside = [c["name"] for c in comps if c["name"] not in ("last_name", "birth_date")]
    if last and dob and first:
        contexts.append({"name": "same_surname_and_birth_date", "comparisons": inside, "sql": (
            f"{family} AND l.birth_date = r.birth_date")})

    strong = [c for c, ok in (("national_id", nid), ("shop_customer_no", p.has("shop_customer_no"))) if ok]
    spec = {
        "name": "derived_from_data",
        "unique_id": "contact_key",
        "source_column": "dataset",
        "link_type": "dedupe_only",
        "lookups": lookups,
        "derive": derive_cols,
        "blocking": {"max_block_size": 200, "rules": [{k: v for k, v in r.items() if k != "_train"} for r in rules]},
        "compare_backend": "duckdb",
        "training_rules": training,
        "comparisons": comps,
        "deterministic": deterministic,
        "contexts": contexts,
        "guards": {"max_cluster_size": 15, "conflicting_ids": strong, "cannot_link": [],
                   "direct_evidence_for": ["birth_date"] if dob else []},
        "thresholds": {"link": 0.5, "review": 0.2},
        "u_sample_pairs": 1_000_000,
        "seed": 42,
    }
    if not rules:
        spec["blocking"]["rules"] = []
    return spec


def _expand(keys: set[str], derive_cols: dict[str, str]) -> set[str]:
    """The columns blocking keys read, through the derived columns they name."""
    out = set(keys)
    for k in keys:
        if k in derive_cols:
            out |= {w for w in _words(derive_cols[k])}
    return out


def _words(sql: str) -> set[str]:
    return set(re.findall(r"[a-z_][a-z0-9_]*", sql))


def _reads(comp: dict, derive_cols: dict[str, str]) -> set[str]:
    cols = set(comp.get("columns") or [comp["column"]])
    return _expand(cols, derive_cols)


def spec_from(p: Profile):
    """The derived spec of a profile, parsed (lookups resolved to the shipped files)."""
    from crm_platform.identity.spec import parse_derived

    return parse_derived(derive(p))


def spec_for(con, path=None):
    """The spec the platform matches with: the user's file when one is configured (which may
    ``extends: derived``), otherwise the one derived from ``staging.contacts``."""
    from crm_platform.identity.spec import load_spec

    p = profile(con)
    return load_spec(path, derived=derive(p)) if path else spec_from(p)
