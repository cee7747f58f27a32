"""Lifecycle state machine on a hand-built order history, RFM naming and small-data honesty,
and a day's segments unchanged by later events."""

from datetime import date

import duckdb
import pandas as pd
import pytest

from crm_platform.marts import segments
from crm_platform.contracts.schemas import CustomerSegments, LifecycleTransitions
from crm_platform.contracts.vocabularies import RFM_SEGMENTS

CFG = segments.load_config()        # at risk after 90 days, churned after 180, loyal: 4 orders in 365 days
ORDERS = ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-12-01"]


def _world(orders=ORDERS, extra_customers: int = 0):
    con = duckdb.connect()
    for schema in ("core", "identity", "staging"):
        con.execute(f"CREATE SCHEMA {schema}")
    rows = [("C000000001", pd.Timestamp(d) + pd.Timedelta(hours=10), "order", 100.0) for d in orders]
    for i in range(extra_customers):       # buyers with 1..5 orders of rising value, for RFM
        for k in range(i % 5 + 1):
            rows.append((f"C1{i:08d}", pd.Timestamp("2026-03-30") - pd.Timedelta(days=7 * (i % 40) + k),
                         "order", 10.0 * (i + 1)))
    ev = pd.DataFrame(rows, columns=["customer_id", "event_at", "event_type", "value"])
    ev["known_at"] = ev["event_at"]
    con.register("_ev", ev)
    con.execute("CREATE TABLE core.customer_events AS SELECT * FROM _ev")
    con.execute("""CREATE TABLE staging.contacts AS SELECT *, created_at AS updated_at, created_at AS _loaded_at FROM (VALUES
        ('shop:1', TIMESTAMP '2024-12-15 09:00'), ('news:2', TIMESTAMP '2025-05-05 12:00')) t(contact_key, created_at)""")
    con.execute("""CREATE TABLE identity.crosswalk AS SELECT * FROM (VALUES
        ('shop:1', 'C000000001'), ('news:2', 'C000000002')) t(contact_key, customer_id)""")
    return con


def test_lifecycle_transitions_of_a_hand_built_history():
    con = _world()
    got = con.sql(segments.transitions_sql(CFG, date(2026, 3, 31))).df()
    one = got[got.customer_id == "C000000001"].sort_values("transition_at")
    assert [(str(t), f, s, r) for t, f, s, r in one[["transition_at", "from_stage", "to_stage", "is_reactivation"]]
            .itertuples(index=False)] == [
        ("2024-12-15 09:00:00", None, "lead", False),                      # first seen
        ("2025-01-01 10:00:00", "lead", "first_time_buyer", False),
        ("2025-02-01 10:00:00", "first_time_buyer", "repeat_buyer", False),
        ("2025-04-01 10:00:00", "repeat_buyer", "loyal", False),           # 4th order in 365 days
        ("2025-06-30 10:00:00", "loyal", "at_risk", False),                # 90 days without an order
        ("2025-09-28 10:00:00", "at_risk", "churned", False),              # 180 days
        ("2025-12-01 10:00:00", "churned", "loyal", True),                 # reactivated, 5 orders in 365 days
        ("2026-02-01 10:00:00", "loyal", "repeat_buyer", False),           # two orders left the window
        ("2026-03-01 10:00:00", "repeat_buyer", "at_risk", False),
    ]
    assert one.iloc[-2].reason == "an order left the 365-day loyalty window"
    two = got[got.customer_id == "C000000002"]
    assert two[["from_stage", "to_stage"]].values.tolist() == [[None, "lead"]]
    LifecycleTransitions.validate(got)


def test_a_transition_names_only_the_thresholds_really_crossed():
    # 2025-06-30 10:00 is 90 days after the second order and 180 after the first: the customer
    # turns at risk there, and has not gone 180 days without an order
    con = _world(["2025-01-01", "2025-04-01"])
    got = con.sql(segments.transitions_sql(CFG, date(2025, 12, 31))).df()
    one = got[got.customer_id == "C000000001"].sort_values("transition_at")
    assert [(str(t), s, r) for t, s, r in one[["transition_at", "to_stage", "reason"]].itertuples(index=False)][-2:] == [
        ("2025-06-30 10:00:00", "at_risk", "no order for 90 days"),
        ("2025-09-28 10:00:00", "churned", "no order for 180 days")]


def test_a_day_holds_its_transitions_and_every_customer_once():
    con = _world()
    out = segments.build_day(con, CFG, date(2025, 6, 30))
    assert out["transitions_that_day"] == 1 and out["stages"] == {"at_risk": 1, "lead": 1}
    seg = con.sql("SELECT * FROM marts.customer_segments").df()
    assert len(seg) == 2
    # two customers are too few for quintiles: said so, not invented
    assert seg.rfm_segment.isna().all() and out["rfm_computed"] is False
    assert seg.set_index("customer_id").loc["C000000001", "rfm_note"].startswith("too few buyers")
    assert seg.set_index("customer_id").loc["C000000002", "rfm_note"] == "no order in the last 365 days"
    CustomerSegments.validate(seg)
    segments.build_day(con, CFG, date(2025, 6, 30))          # rebuilding a day replaces it
    assert con.execute("SELECT count(*) FROM marts.customer_segments").fetchall()[0][0] == 2


def test_rfm_names_the_grid_and_champions_are_recent_frequent_big_spenders():
    con = _world(extra_customers=200)
    segments.build_day(con, CFG, date(2026, 3, 31))
    seg = con.sql("SELECT * FROM marts.customer_segments WHERE rfm_segment IS NOT NULL").df()
    assert len(seg) == 201 and set(seg.rfm_segment) <= set(RFM_SEGMENTS)
    champions, lost = seg[seg.rfm_segment == "champions"], seg[seg.rfm_segment == "lost"]
    assert len(champions) and len(lost)
    assert champions.recency_days.max() <= lost.recency_days.min()
    assert champions.monetary.mean() > lost.monetary.mean()
    assert (champions.rfm_r >= 4).all() and ((champions.rfm_f + champions.rfm_m) / 2 >= 3.5).all()
    CustomerSegments.validate(seg)


def test_later_orders_leave_a_day_unchanged():
    early = _world(ORDERS[:4])
    full = _world()
    for con in (early, full):
        segments.build_day(con, CFG, date(2025, 8, 1))
    q = "SELECT * FROM marts.customer_segments ORDER BY customer_id"
    pd.testing.assert_frame_equal(early.sql(q).df(), full.sql(q).df())


def test_bad_thresholds_are_refused(tmp_path):
    bad = tmp_path / "segments.yaml"
    bad.write_text("lifecycle: {at_risk_days: 200, churn_days: 100, loyal_min_orders: 4, loyal_window_days: 365}\n"
                   "rfm: {window_days: 365, min_customers: 50}\n")
    with pytest.raises(segments.SegmentConfigError, match="at_risk_days < churn_days"):
        segments.load_config(bad)


def test_windowed_counts_equal_the_join_of_every_instant_to_every_earlier_order(timeline_world):
    """The transitions count a customer's orders at each instant by windows over one time line; the
    join of every instant to every earlier order (quadratic in a customer's orders) is the definition."""
    w = CFG.loyal_window_days
    definition = f"""state AS (
    SELECT i.customer_id, i.instant, i.why, count(o.t) AS orders, max(o.t) AS last_order_at,
           count(o.t) FILTER (WHERE o.t > i.instant - INTERVAL {w} DAY) AS orders_in_window
    FROM instants i LEFT JOIN orders o ON o.customer_id = i.customer_id AND o.t <= i.instant
    GROUP BY 1, 2, 3),
"""
    con = duckdb.connect(str(timeline_world), read_only=True)
    for day in (date(2025, 6, 30), date(2026, 9, 30)):
        sql = segments.transitions_sql(CFG, day)
        reference = sql[:sql.index("-- per instant")] + definition + sql[sql.index("staged AS ("):]
        n = con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0]
        assert n > 1000
        for a, b in ((sql, reference), (reference, sql)):
            assert con.execute(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))").fetchall()[0][0] == 0, day
    con.close()
