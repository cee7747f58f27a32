"""KPI formulas on a tiny hand-checked dataset, small-data honesty, cohort retention, and a
backfill giving the same rows as each day computed alone."""

import dataclasses
import shutil
from datetime import date, timedelta

import duckdb
import pandas as pd
import pytest

from crm_platform.marts import attribution
from crm_platform.features import snapshots as features
from crm_platform.marts import kpis, segments
from crm_platform.contracts.schemas import CohortRetention, KpiDaily

SEG = segments.load_config()
CFG = dataclasses.replace(kpis.load_config(), min_base=1, min_cohort=1, min_channel_customers=1)
DAY = date(2026, 3, 31)          # window: 2026-03-02 .. 2026-03-31


def _world(rows, spend=()):
    con = duckdb.connect()
    for schema in ("core", "identity", "staging"):
        con.execute(f"CREATE SCHEMA {schema}")
    ev = pd.DataFrame([r + (None,) * (7 - len(r)) for r in rows],
                      columns=["customer_id", "event_at", "event_type", "value", "source_record_id", "channel", "campaign"])
    ev["event_at"] = pd.to_datetime(ev["event_at"])
    ev["known_at"] = ev["event_at"]
    sp = pd.DataFrame(list(spend) or [("2026-01-01", "display", 0.0)], columns=["spend_date", "channel", "amount"])
    sp["spend_date"] = pd.to_datetime(sp["spend_date"]).dt.date
    con.register("_sp", sp)
    con.execute("CREATE TABLE staging.marketing_spend AS SELECT * FROM _sp")
    con.register("_ev", ev)
    con.execute("CREATE TABLE core.customer_events AS SELECT * FROM _ev")
    ids = sorted(set(ev.customer_id))
    con.execute("CREATE TABLE staging.contacts AS SELECT 'c:' || i AS contact_key, TIMESTAMP '2025-06-01' AS created_at, "
                "TIMESTAMP '2025-06-01' AS updated_at, TIMESTAMP '2025-06-01' AS _loaded_at FROM unnest(?) t(i)", [ids])
    con.execute("CREATE TABLE identity.crosswalk AS SELECT 'c:' || i AS contact_key, i AS customer_id FROM unnest(?) t(i)",
                [ids])
    return con


HAND = [
    # A: ordered in January and in the window (repeat buyer, active before and after)
    ("C000000001", "2026-01-20 10:00", "order", 100.0, "O1"),
    ("C000000001", "2026-03-10 10:00", "order", 60.0, "O2"),
    ("C000000001", "2026-03-12 10:00", "return", 20.0, "O2/1"),
    ("C000000001", "2026-03-15 10:00", "ticket_opened", None, "T1"),
    ("C000000001", "2026-03-15 11:00", "nps_answer", 10.0, "N1"),
    # B: ordered once in November, nothing since: at risk in February, churned in May -> not in window
    ("C000000002", "2025-11-20 10:00", "order", 40.0, "O3"),
    ("C000000002", "2026-03-20 10:00", "nps_answer", 3.0, "N2"),
    # C: ordered once in September 2025: churned on 2026-03-10 (180 days), inside the window
    ("C000000003", "2025-09-11 10:00", "order", 80.0, "O4"),
    ("C000000003", "2026-03-25 10:00", "nps_answer", 8.0, "N3"),
    # A came back through a paid search ad the day before the order
    ("C000000001", "2026-03-09 10:00", "web_page_view", None, "W1", "web", "paid_search-2026-03"),
    # D: a lead before the window who bought in it (first order), a day after a newsletter click
    ("C000000004", "2026-01-05 10:00", "lead_created", 5000.0, "L1"),
    ("C000000004", "2026-03-29 10:00", "email_click", None, "E1", "email", "12"),
    ("C000000004", "2026-03-30 10:00", "lead_converted", 5000.0, "L1"),
    ("C000000004", "2026-03-30 10:00", "order", 200.0, "O5"),
    # E: a lead that did not buy
    ("C000000005", "2026-02-01 10:00", "lead_created", 1000.0, "L2"),
]


SPEND = [("2026-03-05", "paid_search", 100.0), ("2026-03-06", "paid_search", 200.0),
         ("2026-03-20", "email", 100.0), ("2026-02-20", "email", 999.0)]        # the last is before the window


def test_kpis_by_hand():
    con = _world(HAND, SPEND)
    kpis.build_day(con, SEG, CFG, DAY)
    k = {r[0]: r[1:] for r in con.execute(
        "SELECT kpi, value, numerator, denominator FROM marts.kpi_daily").fetchall()}
    assert k["active_customers"][0] == 2                         # A (repeat buyer), D (first-time buyer)
    # at the window start A was active, B at risk, C at risk; C churned inside the window
    assert k["churn_rate"][1:] == (1, 3) and k["churn_rate"][0] == pytest.approx(1 / 3)
    assert k["retention_rate"][1:] == (1, 1)                     # A active before and still active
    assert (k["orders"][0], k["revenue"][0], k["average_order_value"][0]) == (2, 260.0, 130.0)
    assert k["repeat_purchase_rate"][1:] == (1, 2)               # A has ordered before, D has not
    # CLV = orders - returns - 12 per ticket: A 160-20-12, B 40, C 80, D 200
    assert k["historic_clv"][0] == pytest.approx((128 + 40 + 80 + 200) / 4)
    assert k["nps"][0] == pytest.approx(100 * (1 - 1) / 3)        # one promoter, one passive, one detractor
    assert k["lead_to_buyer_rate"][1:] == (1, 2)                  # D bought, E did not
    assert k["sales_lead_conversion_rate"][1:] == (1, 2)
    ch = {(r[0], r[1]): r[2:] for r in con.execute(
        "SELECT kpi, channel, value, numerator, denominator, note FROM marts.kpi_daily WHERE channel IS NOT NULL").fetchall()}
    # O5 is D's first order, credited to the newsletter click the day before (the lead is older
    # than the 30-day lookback); O2 is A's second order, credited to paid search
    assert ch[("cac", "email")][:3] == (100.0, 100.0, 1.0)
    assert ch[("cac", "paid_search")][0] is None and "below 1" in ch[("cac", "paid_search")][3]
    assert ch[("romi", "email")][0] == pytest.approx((200 - 100) / 100)
    assert ch[("romi", "paid_search")][0] == pytest.approx((60 - 300) / 300)
    assert k["engagement"][0] is None                              # no feature snapshot built here
    KpiDaily.validate(con.sql("SELECT * FROM marts.kpi_daily").df())


def test_small_bases_are_not_reported_but_said():
    con = _world(HAND)
    kpis.build_day(con, SEG, dataclasses.replace(CFG, min_base=30), DAY)
    rows = con.sql("SELECT * FROM marts.kpi_daily").df().set_index("kpi")
    assert pd.isna(rows.loc["churn_rate", "value"]) and "below 30" in rows.loc["churn_rate", "note"]
    assert rows.loc["active_customers", "value"] == 2 and pd.isna(rows.loc["active_customers", "note"])
    KpiDaily.validate(rows.reset_index())


def test_cohort_retention_by_hand():
    con = _world(HAND)
    kpis.build_day(con, SEG, CFG, DAY)
    c = con.sql("SELECT * FROM marts.cohort_retention").df()
    jan = c[c.cohort_month == pd.Timestamp("2026-01-01")].set_index("months_since_acquisition").sort_index()
    assert jan.loc[0, "cohort_size"] == 1 and list(jan.index) == [0, 1, 2]
    assert list(jan.active_customers) == [1, 0, 1] and list(jan.retention) == [1.0, 0.0, 1.0]
    assert jan.loc[2, "month_complete"]                          # March ends with the day
    kpis.build_day(con, SEG, CFG, date(2026, 3, 15))
    mid = con.sql("SELECT * FROM marts.cohort_retention WHERE snapshot_date = DATE '2026-03-15' "
                  "AND cohort_month = DATE '2026-01-01' ORDER BY months_since_acquisition").df()
    assert list(mid.month_complete) == [True, True, False]      # mid-March: March still running
    CohortRetention.validate(c)


def test_backfill_equals_each_day_alone_and_shared_transitions_change_nothing(timeline_world, tmp_path):
    path = timeline_world
    days = [date(2026, 5, 30) + timedelta(days=i) for i in range(3)]
    cfg = kpis.load_config()

    def rows(con, table, col, day):
        return con.sql(f"SELECT * FROM {table} WHERE {col} = DATE '{day}' ORDER BY ALL").df()

    backfill = tmp_path / "backfill.duckdb"
    shutil.copy(path, backfill)
    con = duckdb.connect(str(backfill))
    for d in reversed(days):                     # a backfill in any order
        features.build_snapshot(con, features.load_config(), d)
        kpis.build_day(con, SEG, cfg, d)
        segments.build_day(con, SEG, d)
        attribution.build_day(con, d, cfg.attribution_lookback_days)
    for d in days:
        alone = tmp_path / f"{d}.duckdb"
        shutil.copy(path, alone)
        one = duckdb.connect(str(alone))
        features.build_snapshot(one, features.load_config(), d)
        # as the Dagster step does: the KPIs read the transitions the segments computed
        segments.build_day(one, SEG, d, keep_history=True)
        kpis.build_day(one, SEG, cfg, d, history="_transitions")
        one.execute("DROP TABLE _transitions")
        attribution.build_day(one, d, cfg.attribution_lookback_days)
        for table, col in (("marts.kpi_daily", "kpi_date"), ("marts.cohort_retention", "snapshot_date"),
                           ("marts.customer_segments", "snapshot_date"), ("marts.channel_attribution", "order_date"),
                           ("features.customer_features", "snapshot_date")):
            pd.testing.assert_frame_equal(rows(con, table, col, d), rows(one, table, col, d))
        one.close()
    reported = con.execute("SELECT count(*) FROM marts.kpi_daily WHERE value IS NOT NULL").fetchall()[0][0]
    assert reported >= 3 * 9
    assert con.execute("SELECT count(*) FROM marts.kpi_daily WHERE kpi = 'engagement' AND value > 0").fetchall()[0][0] == 3
    assert con.execute("SELECT count(*) FROM marts.channel_attribution").fetchall()[0][0] > 0
    con.close()


def test_attribution_rules_by_hand():
    from crm_platform.marts import attribution
    from crm_platform.contracts.schemas import ChannelAttribution

    con = _world([
        ("C000000001", "2026-02-01 10:00", "web_page_view", None, "W0", "web", "display-2026-02"),   # too old
        ("C000000001", "2026-03-20 10:00", "web_page_view", None, "W1", "web", "social-2026-03"),
        ("C000000001", "2026-03-25 10:00", "web_page_view", None, "W2", "web", "paid_search-2026-03"),
        ("C000000001", "2026-03-25 11:00", "web_add_to_cart", None, "W3", "web", None),              # not a touch
        ("C000000001", "2026-03-30 09:00", "email_click", None, "E1", "email", "7"),
        ("C000000001", "2026-03-30 10:00", "order", 90.0, "O1"),
        ("C000000002", "2026-03-30 12:00", "order", 50.0, "O2"),                                      # no touch
        ("C000000002", "2026-03-30 13:00", "web_page_view", None, "W4", "web", "affiliate-2026-03"),  # after it
    ])
    attribution.build_day(con, date(2026, 3, 30), lookback_days=30)
    rows = con.sql("SELECT * FROM marts.channel_attribution").df()
    got = {(r.order_id, r.rule, r.channel): (round(r.credit, 4), round(r.revenue_credit, 2))
           for r in rows.itertuples()}
    assert got == {
        ("O1", "first_touch", "social"): (1.0, 90.0), ("O1", "last_touch", "email"): (1.0, 90.0),
        ("O1", "linear", "social"): (0.3333, 30.0), ("O1", "linear", "paid_search"): (0.3333, 30.0),
        ("O1", "linear", "email"): (0.3333, 30.0),
        ("O2", "first_touch", "direct"): (1.0, 50.0), ("O2", "last_touch", "direct"): (1.0, 50.0),
        ("O2", "linear", "direct"): (1.0, 50.0)}
    assert rows.is_first_order.all()
    ChannelAttribution.validate(rows)
