"""KPI band alerts, the uplift mart, the contact suppression list and the request register, on
crafted tables."""

import dataclasses
import json
from datetime import date, timedelta

import duckdb
import pytest

from crm_platform.alerts import kpi, rules, suppression, uplift
from crm_platform.governance import requests

CFG = rules.load_config()
DAY = date(2026, 9, 30)


def _kpis(con, values: dict[str, list[float]]):
    """kpi_daily with the given values on the last len(values) days up to DAY."""
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    rows = [(DAY - timedelta(days=len(v) - 1 - i), k, None, 30, x, None) for k, v in values.items()
            for i, x in enumerate(v)]
    con.execute("CREATE OR REPLACE TABLE marts.kpi_daily (kpi_date DATE, kpi VARCHAR, channel VARCHAR, "
                "window_days INT, value DOUBLE, note VARCHAR)")
    con.executemany("INSERT INTO marts.kpi_daily VALUES (?, ?, ?, ?, ?, ?)", rows)


def test_a_kpi_leaving_its_band_in_the_watched_direction_alerts():
    con = duckdb.connect()
    steady = [0.05 + 0.001 * (i % 3) for i in range(20)]
    _kpis(con, {"churn_rate": steady + [0.09],                  # up: alerts
                "nps": [30.0 + (i % 4) for i in range(20)] + [45.0],   # up, but only down is watched
                "revenue": [1000.0 + 5 * (i % 5) for i in range(20)] + [700.0],   # down: alerts
                "active_customers": [500.0] * 5 + [100.0]})       # too little history: no verdict
    bands = con.sql(kpi.band_sql(DAY, CFG)).df().set_index("kpi")
    assert bands.loc["churn_rate", "alert"] and bands.loc["revenue", "alert"]
    assert not bands.loc["nps", "alert"]
    assert bands.loc["active_customers", "history_days"] == 5 and bands.isna().loc["active_customers", "alert"]
    alerts = con.sql(kpi.band_alerts_sql(DAY, CFG)).df()
    assert sorted(alerts["subject"]) == ["churn_rate", "revenue"]
    assert "above its expected band" in alerts.set_index("subject").loc["churn_rate", "reason"]
    again = con.sql(kpi.band_alerts_sql(DAY, CFG)).df()
    assert list(again["alert_id"]) == list(alerts["alert_id"])


def test_a_small_wobble_inside_the_relative_floor_does_not_alert():
    con = duckdb.connect()
    _kpis(con, {"revenue": [1000.0] * 20 + [980.0]})            # MAD 0, 2% below: within the 5% floor
    assert con.sql(kpi.band_alerts_sql(DAY, CFG)).df().empty


def test_data_quality_alerts_are_one_per_failure():
    failed = [kpi.FailedCheck("staging/orders", "pandera_Orders", "ERROR", "run-1", "3 failures"),
              kpi.FailedCheck("ml/churn_scores", "drift", "WARN", "run-1", "PSI 0.3")]
    rows = kpi.data_quality_alerts(DAY, failed, "ERROR")
    assert [r["subject"] for r in rows] == ["staging/orders:pandera_Orders"]
    assert rows[0]["alert_id"] == kpi.data_quality_alerts(DAY + timedelta(days=1), failed, "ERROR")[0]["alert_id"]
    assert len(kpi.data_quality_alerts(DAY, failed, "WARN")) == 2
    # a rerun finding the same is the same alert; finding something else is a new one
    rerun = [dataclasses.replace(f, run_id="run-2") for f in failed]
    assert kpi.data_quality_alerts(DAY, rerun, "ERROR")[0]["alert_id"] == rows[0]["alert_id"]
    worse = [dataclasses.replace(failed[0], run_id="run-3", description="4 failures")]
    assert kpi.data_quality_alerts(DAY, worse, "ERROR")[0]["alert_id"] != rows[0]["alert_id"]


def test_uplift_compares_treated_and_control_after_the_window():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA alerts; CREATE SCHEMA core")
    cfg = dataclasses.replace(CFG, uplift_window_days=30, uplift_min_group=2)
    alert_day = DAY - timedelta(days=40)
    # treated C1..C4: three order within the window; control C5..C7: one orders; C8 alerted too recently
    con.execute(f"""CREATE TABLE alerts.customer_alerts AS SELECT * FROM (VALUES
        ('a1', DATE '{alert_day}', 'C000000001', 'churn_risk', false), ('a2', DATE '{alert_day}', 'C000000002', 'churn_risk', false),
        ('a3', DATE '{alert_day}', 'C000000003', 'churn_risk', false), ('a4', DATE '{alert_day}', 'C000000004', 'churn_risk', false),
        ('a5', DATE '{alert_day}', 'C000000005', 'churn_risk', true), ('a6', DATE '{alert_day}', 'C000000006', 'churn_risk', true),
        ('a7', DATE '{alert_day}', 'C000000007', 'churn_risk', true), ('a8', DATE '{DAY}', 'C000000008', 'churn_risk', false))
        t(alert_id, alert_date, customer_id, kind, is_control)""")
    inside = alert_day + timedelta(days=10)
    con.execute(f"""CREATE TABLE core.customer_events AS SELECT * FROM (VALUES
        ('C000000001', TIMESTAMP '{inside} 10:00', TIMESTAMP '{inside} 10:00', 'order', 100.0),
        ('C000000002', TIMESTAMP '{inside} 10:00', TIMESTAMP '{inside} 10:00', 'order', 50.0),
        ('C000000002', TIMESTAMP '{inside} 12:00', TIMESTAMP '{inside} 12:00', 'return', 20.0),
        ('C000000003', TIMESTAMP '{inside} 10:00', TIMESTAMP '{inside} 10:00', 'order', 30.0),
        ('C000000004', TIMESTAMP '{alert_day + timedelta(days=35)} 10:00', TIMESTAMP '{alert_day + timedelta(days=35)} 10:00', 'order', 999.0),
        ('C000000005', TIMESTAMP '{inside} 10:00', TIMESTAMP '{inside} 10:00', 'order', 60.0),
        ('C000000006', TIMESTAMP '{alert_day} 08:00', TIMESTAMP '{alert_day} 08:00', 'order', 500.0))
        t(customer_id, event_at, known_at, event_type, value)""")
    row = con.sql(uplift.uplift_sql(DAY, cfg)).df().set_index("kind").loc["churn_risk"]
    assert (row.treated_alerts, row.control_alerts) == (4, 3)          # a8's window has not passed
    assert row.treated_order_rate == pytest.approx(0.75) and row.control_order_rate == pytest.approx(1 / 3)
    assert row.treated_revenue == pytest.approx((100 + 30 + 30) / 4) and row.control_revenue == pytest.approx(20)
    assert row.order_rate_uplift == pytest.approx(0.75 - 1 / 3) and row.order_rate_uplift_margin > 0
    small = con.sql(uplift.uplift_sql(DAY, dataclasses.replace(cfg, uplift_min_group=4))).df()
    assert small["order_rate_uplift"].isna().all() and "at least 4 alerts per group" in small["note"][0]


def test_the_suppression_list_keeps_hashes_rejects_bad_rows_and_resolves_customers(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE SCHEMA core")
    con.execute("""CREATE TABLE core.customers AS SELECT * FROM (VALUES
        ('C000000001', 'anna@example.com'), ('C000000002', 'ben@example.com'), ('C000000003', 'anna@example.com'))
        t(customer_id, email)""")
    (tmp_path / "dnc.csv").write_text("email,reason\n Anna@Example.com ,complaint\nnot-an-email,x\n")
    (tmp_path / "ids.csv").write_text("customer_id\nC000000002\n")
    (tmp_path / "bad.csv").write_text("phone\n+4930123\n")
    counts = suppression.build(con, tmp_path, "salt")
    assert counts == {"entries": 3, "resolved": 3, "rejected": 2}
    rows = con.sql(f"SELECT * FROM {suppression.TABLE} ORDER BY customer_id").df()
    assert list(rows["customer_id"]) == ["C000000001", "C000000002", "C000000003"]   # both Anna records
    text = rows.to_csv()
    assert "anna" not in text.lower() and "C000000002" not in rows["identifier_hash"].str.cat()
    rejects = con.sql(f"SELECT * FROM {suppression.REJECTS} ORDER BY source_file").df()
    assert list(rejects["source_file"]) == ["bad.csv", "dnc.csv"] and rejects["source_line"].iloc[1] == 3
    # a suppressed customer gets no alert even with consent
    con.execute("CREATE SCHEMA ml; CREATE SCHEMA features")
    con.execute("ALTER TABLE core.customers ADD COLUMN consent_email BOOLEAN DEFAULT true")
    con.execute("CREATE TABLE ml.next_best_offer AS SELECT DATE '2026-09-30' AS snapshot_date, * FROM (VALUES "
                "('C000000002', 1, 'shoes', 0.9, 'v0001'), ('C000000009', 1, 'toys', 0.9, 'v0001')) "
                "t(customer_id, offer_rank, category, offer_probability, model_version)")
    con.execute("INSERT INTO core.customers VALUES ('C000000009', 'cleo@example.com', true)")
    con.execute("CREATE TABLE core.customer_events (customer_id VARCHAR, event_at TIMESTAMP, event_type VARCHAR)")
    con.execute("CREATE TABLE features.customer_features (snapshot_date DATE, customer_id VARCHAR, tickets_open INT)")
    blocked = f"(SELECT customer_id FROM {suppression.TABLE} WHERE customer_id IS NOT NULL)"
    out = con.sql(rules.alerts_sql(DAY, CFG, None, ("next_best_offer",), blocked)).df()
    assert list(out["customer_id"]) == ["C000000009"]


def test_request_files_are_registered_once_and_bad_ones_say_why(tmp_path):
    con = duckdb.connect()
    (tmp_path / "r1.json").write_text(json.dumps({"type": "erase", "email": " Anna@Example.com"}))
    (tmp_path / "r2.json").write_text(json.dumps({"type": "export", "customer_id": "C000000002"}))
    (tmp_path / "r3.json").write_text("{not json")
    (tmp_path / "r4.json").write_text(json.dumps({"type": "delete-everything", "email": "a@b.de"}))
    (tmp_path / "r5.json").write_text(json.dumps({"type": "erase"}))
    (tmp_path / ".r6.json").write_text(json.dumps({"type": "erase", "email": "hidden@b.de"}))
    assert requests.register(con, tmp_path) == {"new": 5, "new_invalid": 3, "pending": 2}
    assert requests.register(con, tmp_path) == {"new": 0, "new_invalid": 0, "pending": 2}
    (tmp_path / "r1-copy.json").write_text((tmp_path / "r1.json").read_text())   # the same request twice
    assert requests.register(con, tmp_path)["new"] == 0
    rows = con.sql(f"SELECT * FROM {requests.TABLE} ORDER BY source_file").df().set_index("source_file")
    assert rows.loc["r1.json", "identifier"] == "anna@example.com" and rows.loc["r1.json", "status"] == "pending"
    assert "not a UTF-8 JSON document" in rows.loc["r3.json", "reason"]
    assert "type must be one of" in rows.loc["r4.json", "reason"]
    assert rows.loc["r5.json", "reason"] == "no email or customer_id"
