"""Customer alert rules on crafted customers: consent, suppression window, no upsell after a
return or with an open ticket, a deterministic control group."""

import dataclasses
from datetime import date

import duckdb
import pytest

from crm_platform.alerts import rules
from crm_platform.alerts.delivery import alert_id

DAY = date(2026, 9, 30)
CFG = rules.load_config()


@pytest.fixture
def con():
    c = duckdb.connect()
    for s in ("ml", "core", "marts", "features"):
        c.execute(f"CREATE SCHEMA {s}")
    # C1 high risk and valuable (consent) - C2 the same without consent - C3 consent unknown
    # C4 low value - C5 an offer after a return - C6 an offer with an open ticket - C7 a clean offer
    c.execute("""CREATE TABLE core.customers AS SELECT * FROM (VALUES
        ('C000000001', true), ('C000000002', false), ('C000000003', NULL), ('C000000004', true),
        ('C000000005', true), ('C000000006', true), ('C000000007', true), ('C000000008', true))
        t(customer_id, consent_email)""")
    c.execute("""CREATE TABLE ml.churn_scores AS SELECT DATE '2026-09-30' AS snapshot_date, * FROM (VALUES
        ('C000000001', 0.81, 'high', 'v0003'), ('C000000002', 0.9, 'high', 'v0003'),
        ('C000000003', 0.9, 'high', 'v0003'), ('C000000004', 0.95, 'high', 'v0003'))
        t(customer_id, churn_probability, risk_band, model_version)""")
    c.execute("""CREATE TABLE ml.clv_scores AS SELECT DATE '2026-09-30' AS snapshot_date, * FROM (VALUES
        ('C000000001', 1200.0, 'v0002'), ('C000000002', 900.0, 'v0002'), ('C000000003', 900.0, 'v0002'),
        ('C000000004', 40.0, 'v0002')) t(customer_id, clv_12m, model_version)""")
    c.execute("""CREATE TABLE marts.lifecycle_transitions AS SELECT * FROM (VALUES
        ('C000000008', TIMESTAMP '2026-09-30 10:00', 'repeat_buyer', 'at_risk', 'no order for 120 days', false),
        ('C000000007', TIMESTAMP '2026-09-29 10:00', 'lead', 'first_time_buyer', 'first order', false))
        t(customer_id, transition_at, from_stage, to_stage, reason, is_reactivation)""")
    c.execute("""CREATE TABLE ml.next_best_offer AS SELECT DATE '2026-09-30' AS snapshot_date, * FROM (VALUES
        ('C000000005', 1, 'shoes', 0.5, 'v0001'), ('C000000006', 1, 'toys', 0.5, 'v0001'),
        ('C000000007', 1, 'books', 0.4, 'v0001'), ('C000000007', 2, 'home', 0.3, 'v0001'))
        t(customer_id, offer_rank, category, offer_probability, model_version)""")
    c.execute("""CREATE TABLE core.customer_events AS SELECT * FROM (VALUES
        ('C000000005', TIMESTAMP '2026-09-25 09:00', 'return')) t(customer_id, event_at, event_type)""")
    c.execute("""CREATE TABLE features.customer_features AS SELECT DATE '2026-09-30' AS snapshot_date, * FROM (VALUES
        ('C000000006', 1), ('C000000007', 0)) t(customer_id, tickets_open)""")
    yield c
    c.close()


def _alerts(con, cfg=CFG, previous=None):
    return con.sql(rules.alerts_sql(DAY, cfg, previous)).df()


def test_only_consenting_valuable_customers_and_clean_offers(con):
    got = {(r.customer_id, r.kind) for r in _alerts(con, dataclasses.replace(CFG, control_share=0)).itertuples()}
    assert got == {("C000000001", "churn_risk"), ("C000000008", "lifecycle"), ("C000000007", "next_best_offer")}
    a = _alerts(con).set_index(["customer_id", "kind"])
    assert "0.81" in a.loc[("C000000001", "churn_risk"), "reason"] and "1200" in a.loc[("C000000001", "churn_risk"), "reason"]
    assert a.loc[("C000000001", "churn_risk"), "model_version"] == "churn v0003, clv v0002"
    assert a.loc[("C000000007", "next_best_offer"), "model_version"] == "next_best_offer v0001"
    assert a.loc[("C000000008", "lifecycle"), "reason"].startswith("became at_risk")
    assert a.loc[("C000000007", "next_best_offer"), "reason"].startswith("offer books")


def test_ids_match_the_delivery_ids_and_rerun_gives_the_same(con):
    a = _alerts(con)
    row = a[a["kind"] == "churn_risk"].iloc[0]
    assert row["alert_id"] == alert_id("churn_risk", "C000000001", "v0003", "2026-09-30")
    assert a.equals(_alerts(con))


def test_suppression_window(con):
    con.execute("""CREATE TABLE prev AS SELECT * FROM (VALUES
        ('C000000001', 'churn_risk', DATE '2026-09-10'),       -- 20 days ago: within 30, suppressed
        ('C000000007', 'next_best_offer', DATE '2026-09-01'))  -- 29 days ago: beyond 14, sent again
        t(customer_id, kind, alert_date)""")
    got = {(r.customer_id, r.kind) for r in _alerts(con, previous="prev").itertuples()}
    assert ("C000000001", "churn_risk") not in got and ("C000000007", "next_best_offer") in got


def test_control_group_is_deterministic_and_near_its_share():
    con = duckdb.connect()
    ids = [f"C{i:09d}" for i in range(20000)]
    con.execute("CREATE TABLE c AS SELECT unnest(?::VARCHAR[]) AS customer_id", [ids])
    flags = con.execute(f"SELECT {rules.in_control_group('customer_id', CFG)} FROM c").fetchall()
    again = con.execute(f"SELECT {rules.in_control_group('customer_id', CFG)} FROM c").fetchall()
    share = sum(f[0] for f in flags) / len(flags)
    assert flags == again and abs(share - CFG.control_share) < 0.01
    assert [f[0] for f in flags[:500]] == [rules.control_group_member(i, CFG) for i in ids[:500]]
    none = dataclasses.replace(CFG, control_share=0.0)
    assert con.execute(f"SELECT count(*) FILTER (WHERE {rules.in_control_group('customer_id', none)}) FROM c"
                       ).fetchall()[0][0] == 0
