"""The demo generator: deterministic, messy in the ways the issue asks, measured against truth."""

import hashlib
from itertools import combinations

import pandas as pd
import pytest

from crm_platform.demo import GeneratorConfig, generate
from tests.conftest import SMALL


def _digest(home):
    h = hashlib.sha256()
    for p in sorted((home / "landing").rglob("*")) + sorted((home / "truth").rglob("*")):
        if p.is_file():
            h.update(p.relative_to(home).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(world, tmp_path):
    generate(SMALL, tmp_path / "again")
    assert _digest(tmp_path / "again") == _digest(world)
    generate(GeneratorConfig(customers=SMALL.customers, seed=SMALL.seed + 1), tmp_path / "other")
    assert _digest(tmp_path / "other") != _digest(world)


@pytest.fixture(scope="module")
def truth(world):
    records = pd.read_csv(world / "truth/contact_records.csv", dtype=str, keep_default_na=False)
    persons = pd.read_csv(world / "truth/persons.csv", dtype=str, keep_default_na=False)
    return records, persons


def test_persons_appear_in_one_to_five_systems_and_twice_in_one(truth):
    records, persons = truth
    records["system"] = records["dataset"].str.split("_").str[0]
    systems = records.groupby("person_id")["system"].nunique()
    assert systems.min() >= 1 and systems.max() <= 5
    assert (systems >= 2).mean() > 0.35          # cross-system duplicates are common
    assert (systems >= 4).sum() > 0
    twice = records.groupby(["person_id", "dataset"]).size()
    share = (twice[twice.index.get_level_values(1) == "shop_customers"] >= 2).mean()
    assert 0.02 < share < 0.09                  # configured: 5 % second shop accounts


def test_variations_occur_at_configured_rates(truth):
    records, _ = truth
    v = records["variations"]
    rate = lambda name: v.str.contains(name).mean()  # noqa: E731
    assert 0.06 < rate("typo") < 0.14                # p_typo = 0.10
    assert 0.01 < rate("nickname") < 0.08            # p_nickname = 0.08 of names having one
    assert rate("transliteration") > 0.02
    assert 0.005 < rate("swapped_names") < 0.04      # p_swap = 0.02
    assert 0.10 < rate("missing_field") < 0.20       # p_missing = 0.15
    assert rate("second_email") > 0.05
    assert rate("old_address") > 0 and rate("maiden_name") > 0 and rate("role_email") > 0


def test_hard_negatives_exist(truth):
    _, persons = truth
    households = persons.groupby("household_id").filter(lambda g: len(g) >= 2)
    assert 0.08 < len(households) / len(persons) < 0.35
    for _, g in list(households.groupby("household_id"))[:50]:
        for a, b in combinations(g.to_dict("records"), 2):
            assert a["last_name"] == b["last_name"] and a["first_name"] != b["first_name"]
    twins = persons[persons.twin_group != ""].groupby("twin_group")
    assert len(twins) > 0 and all(g.birth_date.nunique() == 1 for _, g in twins)
    same_name = persons.groupby(["first_name", "last_name"]).city.nunique()
    assert (same_name >= 2).sum() > 10              # common names in different cities


def test_naive_exact_matching_fails(loaded_world, truth):
    """Exact e-mail matching finds few of the true links, and exact name+city merges strangers."""
    import duckdb
    records, _ = truth
    con = duckdb.connect(str(loaded_world), read_only=True)
    staged = con.sql("SELECT dataset, source_record_id, email_std, first_name_std, last_name_std, "
                     "city_std FROM staging.contacts").df()
    df = staged.merge(records, on=["dataset", "source_record_id"])
    assert len(df) == len(staged)                  # every staged record has a true person
    true_pairs = _pairs(df, ["person_id"])
    email_pairs = _pairs(df[df.email_std.notna()], ["email_std"])
    recall = len(true_pairs & email_pairs) / len(true_pairs)
    # well over a third of the true links have no shared e-mail (0.61 found since the NPS survey
    # reaches 2.5 % of active customers a month: respondents answer with the address they were invited at, one the other systems know)
    assert recall < 0.65
    name_pairs = _pairs(df[df.last_name_std.notna() & df.city_std.notna()],
                        ["first_name_std", "last_name_std", "city_std"])
    assert len(name_pairs - true_pairs) > 0        # different people, same name and city


def _pairs(df, keys):
    out = set()
    for _, g in df.groupby(keys):
        ids = sorted(g["dataset"] + ":" + g["source_record_id"])
        out.update(combinations(ids, 2))
    return out


def test_behaviour_has_signal(world):
    persons = pd.read_csv(world / "truth/persons.csv")
    customers = persons[persons.is_customer]
    churned = customers.churned_at.notna().mean()
    assert 0.1 < churned < 0.8
    orders = pd.read_csv(world / "landing/shop/orders.csv", dtype=str)
    months = pd.to_datetime(orders.order_date, errors="coerce").dt.month
    by_month = months.value_counts(normalize=True)
    assert by_month[[11, 12]].mean() > by_month[[1, 2]].mean()  # seasonality
    spend = pd.read_csv(world / "landing/marketing/spend.csv", dtype=str)
    assert set(spend.channel) >= {"paid_search", "social", "affiliate"}


def test_visits_carry_their_traffic_source_and_paid_campaigns_match_the_spend(world):
    """A session's landing event names where the visit came from; a paid visit's campaign is one
    the marketing spend pays for (so attribution can join them); a first purchase made online
    arrives through the channel that acquired the customer."""
    web = pd.concat(pd.read_parquet(p) for p in sorted((world / "landing/web").glob("*.parquet")))
    landing = web.groupby("session_id").head(1)
    assert web.utm_source.notna().sum() == landing.utm_source.notna().sum()     # landing events only
    assert {"organic_search", "paid_search", "social", "newsletter"} <= set(landing.utm_source.dropna())
    paid = web[web.utm_campaign.notna()]
    assert len(paid) > 100
    month = pd.to_datetime(paid.ts).dt.strftime("%Y-%m")
    assert (paid.utm_campaign.str.rsplit("-", n=2).str[0] + "-" + month == paid.utm_campaign).all()
    spend = pd.read_csv(world / "landing/marketing/spend.csv", dtype=str)
    assert paid.utm_campaign.isin(set(spend.campaign)).mean() > 0.99
    # a customer's first order, when placed on the web: its checkout session came in through the
    # acquisition channel
    persons = pd.read_csv(world / "truth/persons.csv", dtype=str).set_index("person_id")
    shop = pd.read_csv(world / "truth/contact_records.csv", dtype=str)
    owner = shop[shop.dataset == "shop_customers"].set_index("source_record_id")["person_id"]
    orders = pd.read_csv(world / "landing/shop/orders.csv", dtype=str)
    orders["when"] = (pd.to_datetime(orders.order_date, errors="coerce")             # shop: Berlin time
                      .dt.tz_localize("Europe/Berlin", ambiguous="NaT", nonexistent="NaT")
                      .dt.tz_convert("UTC").dt.tz_localize(None))
    orders["person"] = orders.customer_no.map(owner)
    first = orders.dropna(subset=["when", "person"]).sort_values("when").drop_duplicates("person")
    first = first[first.channel == "web"]
    checkout = web[web.event_type == "checkout"].assign(when=pd.to_datetime(web.ts))
    hit = first.merge(checkout, on="customer_no", suffixes=("", "_web"))
    hit = hit[(hit.when_web <= hit.when) & (hit.when_web > hit.when - pd.Timedelta(minutes=15))]
    channel = hit.person.map(persons.acquisition_channel)
    paid_first = channel.isin(["paid_search", "social", "display", "affiliate"])
    assert paid_first.sum() > 20
    src = landing.set_index("session_id").utm_source
    assert (hit.session_id.map(src)[paid_first] == channel[paid_first]).mean() > 0.95


def test_delivery_days_split_the_same_world_by_creation_time(world, tmp_path):
    """With delivery_days the same rows are written, those of the last days to a delivery folder
    in the landing layout; delivering it makes landing/ whole again."""
    from datetime import date

    import pyarrow.parquet as pq

    from crm_platform.demo import deliver

    home = tmp_path / "split"
    summary = generate(GeneratorConfig(customers=SMALL.customers, seed=SMALL.seed, delivery_days=11), home)
    landing, whole = home / "landing", world / "landing"
    delivered = sorted(p.relative_to(home / "deliveries/2026-09-30").as_posix()
                       for p in (home / "deliveries/2026-09-30").rglob("*") if p.is_file())
    assert "shop/orders-2026-09-30.csv" in delivered and "support/tickets-2026-09-30.jsonl" in delivered
    assert any(p.startswith("web/events_part-") for p in delivered)
    orders = pd.read_csv(home / "deliveries/2026-09-30/shop/orders-2026-09-30.csv", dtype=str)
    history = pd.read_csv(landing / "shop/orders.csv", dtype=str)
    # (without the injected future dates of the dirt)
    times = lambda df: pd.to_datetime(df.order_date, errors="coerce").pipe(lambda t: t[t.dt.year < 2030])  # noqa: E731
    # shop times are Berlin local: the cutoff 2026-09-20 00:00 UTC is 02:00 there
    assert times(orders).min() >= pd.Timestamp("2026-09-20 02:00:00")
    assert times(history).max() < pd.Timestamp("2026-09-20 02:00:00")
    share = summary.rows["delivery/shop_orders"] / (summary.rows["shop_orders"] + summary.rows["delivery/shop_orders"])
    assert 0.005 < share < 0.02                                  # 11 of 1,096 days: about 1 %
    deliver(home, date(2026, 9, 30))
    for f in sorted(p for p in whole.rglob("*") if p.is_file()):
        rel = f.relative_to(whole)
        parts = sorted(landing.glob(f"{rel.parent.as_posix()}/{rel.stem}*{rel.suffix}"))
        if f.suffix == ".parquet":
            assert sum(pq.read_metadata(p).num_rows for p in parts) == pq.read_metadata(f).num_rows, rel
            continue
        enc = "cp1252" if "abonnenten" in f.name else "utf-8"
        lines = lambda p: p.read_text(encoding=enc).splitlines()  # noqa: E731
        header = [] if f.suffix == ".jsonl" else lines(f)[:1]
        got = header + sorted(line for p in parts for line in lines(p)[len(header):])
        assert got == header + sorted(lines(f)[len(header):]), rel
        assert all(lines(p)[:len(header)] == header for p in parts), rel
