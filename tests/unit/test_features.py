"""Point-in-time features: hand-checked formulas on a tiny timeline, and leakage safety on the
generated world (events arriving after a cutoff leave that cutoff's snapshot unchanged)."""

import math
import shutil
from datetime import date

import duckdb
import pandas as pd
import pytest

from crm_platform.features import snapshots as features
from crm_platform.customer360 import timeline
from crm_platform.contracts.schemas import CustomerFeatures

CFG = features.load_config()

# customer, event_at, known_at (None: = event_at), type, channel, value, discount, categories, session
EVENTS = [
    ("C000000001", "2026-01-10 10:00", None, "order", "web", 100.0, 10.0, ["shoes"], None),
    ("C000000001", "2026-03-01 10:00", None, "order", "app", 50.0, 0.0, ["shoes", "home"], None),
    ("C000000001", "2026-03-05 10:00", None, "return", "app", 25.0, None, None, None),
    ("C000000001", "2026-03-20 09:00", None, "order_cancelled", "web", 70.0, 0.0, ["toys"], None),
    ("C000000001", "2026-02-01 08:00", None, "email_send", "email", None, None, None, None),
    ("C000000001", "2026-03-01 08:00", None, "email_send", "email", None, None, None, None),
    ("C000000001", "2026-03-01 09:00", None, "email_open", "email", None, None, None, None),
    ("C000000001", "2026-03-01 09:01", None, "email_click", "email", None, None, None, None),
    ("C000000001", "2026-03-10 12:00", None, "ticket_opened", "support", None, None, None, None),
    ("C000000001", "2026-03-12 12:00", None, "nps_answer", "survey", 9.0, None, None, None),
    ("C000000001", "2026-03-25 20:00", None, "nps_answer", "survey", 6.0, None, None, None),
    ("C000000001", "2026-03-30 18:00", None, "web_add_to_cart", "web", None, None, None, "S1"),
    ("C000000001", "2026-03-30 18:05", None, "web_page_view", "web", None, None, None, "S1"),
    ("C000000001", "2026-03-31 18:00", None, "web_add_to_cart", "web", None, None, None, "S2"),
    ("C000000001", "2026-03-31 18:10", None, "web_checkout", "web", None, None, None, "S2"),
    # happened before the cutoff, attributed only after it (a later login): not in the snapshot
    ("C000000001", "2026-03-15 10:00", "2026-04-02 10:00", "web_page_view", "web", None, None, None, "S3"),
    ("C000000001", "2026-04-05 10:00", None, "order", "web", 999.0, 0.0, ["garden"], None),
    ("C000000002", "2026-03-31 23:00", None, "lead_created", "trade_fair", 5000.0, None, None, None),
]


@pytest.fixture
def tiny():
    con = duckdb.connect()
    for schema in ("core", "identity", "staging"):
        con.execute(f"CREATE SCHEMA {schema}")
    df = pd.DataFrame(EVENTS, columns=["customer_id", "event_at", "known_at", "event_type", "channel", "value",
                                       "discount", "categories", "session_id"])
    df["event_at"] = pd.to_datetime(df["event_at"])
    df["known_at"] = pd.to_datetime(df["known_at"]).fillna(df["event_at"])
    df["source_record_id"] = [f"R{i}" for i in range(len(df))]
    con.register("_e", df)
    con.execute("CREATE TABLE core.customer_events AS SELECT * EXCLUDE (categories), "
                "CAST(categories AS VARCHAR[]) AS categories FROM _e")
    con.execute("""CREATE TABLE staging.contacts AS SELECT *, created_at AS updated_at,
            TIMESTAMP '2026-04-20 00:00' AS _loaded_at FROM (VALUES
        ('shop:1', TIMESTAMP '2025-12-01 00:00'), ('sales:2', TIMESTAMP '2026-03-31 23:00'),
        ('shop:3', TIMESTAMP '2026-04-10 00:00')) t(contact_key, created_at)""")
    con.execute("""CREATE TABLE identity.crosswalk AS SELECT * FROM (VALUES
        ('shop:1', 'C000000001'), ('sales:2', 'C000000002'), ('shop:3', 'C000000003')) t(contact_key, customer_id)""")
    yield con
    con.close()


def test_features_by_hand(tiny):
    n = features.build_snapshot(tiny, CFG, date(2026, 3, 31))
    assert n == 2                                    # customer 3 arrives after the cutoff
    rows = tiny.sql("SELECT * FROM features.customer_features ORDER BY customer_id").df()
    a, b = rows.iloc[0], rows.iloc[1]
    assert a.tenure_days == 120                      # first seen 2025-12-01, snapshot day 2026-03-31
    assert a.recency_days == 30                      # last order on 2026-03-01
    assert (a.orders_total, a.revenue_total) == (2, 150.0)
    assert (a.frequency_30d, a.frequency_90d, a.frequency_365d) == (0, 2, 2)
    assert (a.monetary_30d, a.monetary_90d) == (0.0, 150.0)
    assert a.avg_order_value == 75.0
    assert a.return_rate == pytest.approx(25 / 150)
    assert a.discount_share == pytest.approx(10 / 160)
    assert a.category_breadth == 2                   # shoes, home (the cancelled order's toys do not count)
    assert (a.emails_sent_90d, a.email_open_rate_90d, a.email_click_rate_90d) == (2, 0.5, 0.5)
    assert (a.tickets_total, a.tickets_open, a.tickets_escalated) == (1, 1, 0)
    assert (a.nps_last, a.nps_avg) == (6.0, 7.5)
    assert (a.web_sessions_90d, a.cart_abandonments_90d) == (2, 1)   # S3 is not known yet
    assert a.latest_event_known_at == pd.Timestamp("2026-03-31 18:10")
    # 11 weighted interactions over purchase, email, web, support and survey (5 of 6 channels)
    weights = [5, 5, 1, 2, 1, 2, 2, 2, 0.5, 2, 3]
    assert a.engagement_score == pytest.approx(math.log(1 + len(weights)) * 5 / 6 * sum(weights) / len(weights))
    assert b.lead_channel == "trade_fair" and pd.isna(b.recency_days) and pd.isna(b.avg_order_value)
    assert pd.isna(b.email_open_rate_90d) and pd.isna(b.return_rate)   # nothing to divide: null, not 0 or 1
    CustomerFeatures.validate(rows)


def test_a_contact_without_a_creation_date_counts_from_its_last_change_or_its_load(tiny):
    """A subscriber exported without created_at and with no event is still a customer to score."""
    tiny.execute("""INSERT INTO staging.contacts VALUES
        ('newsletter:4', NULL, TIMESTAMP '2026-02-01 00:00', TIMESTAMP '2026-04-20 00:00'),
        ('newsletter:5', NULL, NULL, TIMESTAMP '2026-04-20 00:00')""")
    tiny.execute("INSERT INTO identity.crosswalk VALUES ('newsletter:4', 'C000000004'), ('newsletter:5', 'C000000005')")
    assert features.build_snapshot(tiny, CFG, date(2026, 3, 31)) == 3        # 5 was not known yet
    rows = tiny.sql("SELECT customer_id, tenure_days FROM features.customer_features "
                    "WHERE snapshot_date = DATE '2026-03-31' ORDER BY 1").df()
    assert rows.customer_id.tolist() == ["C000000001", "C000000002", "C000000004"]
    assert rows.tenure_days.iloc[-1] == 58                                       # since 2026-02-01
    features.build_snapshot(tiny, CFG, date(2026, 4, 30))
    later = tiny.sql("SELECT customer_id FROM features.customer_features WHERE snapshot_date = DATE '2026-04-30'").df()
    assert "C000000005" in set(later.customer_id)


def test_rebuilding_a_day_replaces_only_that_day(tiny):
    features.build_snapshot(tiny, CFG, date(2026, 3, 31))
    features.build_snapshot(tiny, CFG, date(2026, 4, 30))
    features.build_snapshot(tiny, CFG, date(2026, 3, 31))
    counts = dict(tiny.execute("SELECT snapshot_date, count(*) FROM features.customer_features GROUP BY 1").fetchall())
    assert counts == {date(2026, 3, 31): 2, date(2026, 4, 30): 3}


def test_events_after_the_cutoff_leave_its_snapshot_unchanged(timeline_world, tmp_path):
    path = tmp_path / "w.duckdb"
    shutil.copy(timeline_world, path)
    con = duckdb.connect(str(path))
    cutoff = date(2025, 6, 30)
    features.build_snapshot(con, CFG, cutoff)
    before = con.sql("SELECT * FROM features.customer_features ORDER BY customer_id").df()
    assert len(before) > 500

    # later data arrives: an order after the cutoff, and an anonymous visit *before* the cutoff
    # by a visitor who logs in only after it, as an existing customer
    key, ref = con.execute("SELECT contact_key, customer_ref FROM staging.orders WHERE ordered_at < DATE '2025-06-01' "
                           "ORDER BY order_id LIMIT 1").fetchall()[0]
    con.execute("""INSERT INTO staging.orders BY NAME SELECT * REPLACE (
        'O-LATE' AS order_id, TIMESTAMP '2025-07-02 10:00' AS ordered_at, 500.0 AS total_amount)
        FROM staging.orders WHERE contact_key = ? LIMIT 1""", [key])
    con.execute("""INSERT INTO staging.web_events BY NAME SELECT * REPLACE (
        'E-EARLY' AS event_id, 'V-NEW' AS visitor_id, 'S-EARLY' AS session_id, NULL AS contact_key,
        NULL AS customer_ref, TIMESTAMP '2025-06-20 10:00' AS occurred_at, 'page_view' AS event_type)
        FROM staging.web_events LIMIT 1""")
    con.execute("""INSERT INTO staging.web_events BY NAME SELECT * REPLACE (
        'E-LOGIN' AS event_id, 'V-NEW' AS visitor_id, 'S-LATE' AS session_id, ? AS contact_key,
        ? AS customer_ref, TIMESTAMP '2025-07-05 10:00' AS occurred_at, 'login' AS event_type)
        FROM staging.web_events LIMIT 1""", [key, ref])
    timeline.build(con)
    early = con.execute("SELECT known_at FROM core.customer_events WHERE source_record_id = 'E-EARLY'").fetchall()
    assert early and str(early[0][0]) == "2025-07-05 10:00:00"     # on the timeline, known from the login

    features.build_snapshot(con, CFG, cutoff)
    after = con.sql("SELECT * FROM features.customer_features ORDER BY customer_id").df()
    pd.testing.assert_frame_equal(before, after)
    later = features.build_snapshot(con, CFG, date(2025, 7, 31))
    assert later >= len(before)
    con.close()


def test_money_features_are_added_up_in_exact_cents(tiny):
    """Ten orders of 0.10 make 1.00, not 0.9999999999999999: sums of doubles come out in their last
    bits as the threads happened to add them, and a rerun of a day must write the same features."""
    tiny.execute("""INSERT INTO core.customer_events BY NAME SELECT 'C000000004' AS customer_id,
        TIMESTAMP '2026-03-20 10:00' + i * INTERVAL 1 HOUR AS event_at, TIMESTAMP '2026-03-20 10:00' + i * INTERVAL 1 HOUR
        AS known_at, 'order' AS event_type, 'web' AS channel, 0.1::DOUBLE AS value, 0.1::DOUBLE AS discount,
        'R4-' || i AS source_record_id FROM range(10) t(i)""")
    features.build_snapshot(tiny, CFG, date(2026, 3, 31))
    d = tiny.sql("SELECT * FROM features.customer_features WHERE customer_id = 'C000000004'").df().iloc[0]
    assert (d.orders_total, d.revenue_total, d.monetary_30d, d.monetary_90d, d.monetary_365d) == (10, 1.0, 1.0, 1.0, 1.0)
    assert (d.avg_order_value, d.discount_share) == (0.1, 0.5)


def test_a_query_read_through_arrow_has_the_values_duckdb_reads_itself():
    """warehouse.frame, which the models and clusters read their frames with, gives every value
    DuckDB's own .df() gives; dates as dates, decimals as floats, empty integers as NaN."""
    import datetime as dt

    import duckdb
    import numpy as np

    from crm_platform.core.warehouse import frame

    con = duckdb.connect()
    query = """SELECT * FROM (VALUES ('C1', DATE '2026-10-01', 12.34::DECIMAL(18,2), 3::BIGINT, 0.5, true),
                                     ('C2', DATE '2026-10-02', NULL, NULL, NULL, NULL))
               t(customer_id, cutoff, money, orders, score, flag) WHERE customer_id >= ?"""
    ours, theirs = frame(con, query, ["C"]), con.sql(query, params=["C"]).df()
    assert list(ours.columns) == list(theirs.columns)
    assert ours["cutoff"].tolist() == [dt.date(2026, 10, 1), dt.date(2026, 10, 2)]
    assert ours["money"].dtype == float and ours["money"].iloc[0] == 12.34 and np.isnan(ours["money"].iloc[1])
    assert ours["orders"].iloc[0] == 3 and np.isnan(ours["orders"].iloc[1])
    for c in ("customer_id", "money", "orders", "score"):
        assert ours[c].astype(object).where(ours[c].notna(), None).tolist() == \
            theirs[c].astype(object).where(theirs[c].notna(), None).tolist(), c
    assert frame(con, "SELECT 1 AS x WHERE false").empty
