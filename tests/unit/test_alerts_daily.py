"""The alerts stage one day at a time, without Dagster: the rule check finds every kind of broken
alert, and a day's delivery reaches each sink once however often it runs."""

from datetime import date

import duckdb
import pytest

from crm_platform.alerts import daily, rules
from crm_platform.alerts.delivery import JsonlSink, Outbox, alert_id

DAY = date(2026, 9, 30)


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA core; CREATE SCHEMA alerts; CREATE SCHEMA governance")
    con.execute("""CREATE TABLE core.customers AS SELECT * FROM (VALUES
        ('C1', true, 'one@example.org'), ('C2', false, 'two@example.org'), ('C3', true, 'three@example.org'))
        t(customer_id, consent_email, email)""")
    con.execute("CREATE TABLE governance.contact_suppression AS SELECT 'C3' AS customer_id")
    return con


def _alerts(con, cfg, rows):
    con.execute("CREATE OR REPLACE TABLE alerts.customer_alerts (alert_id VARCHAR, alert_date DATE, "
                "customer_id VARCHAR, kind VARCHAR, reason VARCHAR, model_version VARCHAR, is_control BOOLEAN)")
    for customer, day, kind in rows:
        control = rules.control_group_member(customer, cfg)
        con.execute("INSERT INTO alerts.customer_alerts VALUES (?, ?, ?, ?, 'because', 'v1', ?)",
                    [alert_id(kind, customer, "v1", str(day)), day, customer, kind, control])


def test_the_rule_check_names_each_broken_rule(con):
    cfg = rules.load_config()
    kind = next(iter(cfg.suppression_days))
    _alerts(con, cfg, [("C1", date(2026, 9, 29), kind), ("C1", DAY, kind), ("C2", DAY, kind), ("C3", DAY, kind)])
    found = con.sql(daily.violations_sql([DAY.isoformat()], cfg, daily.suppressed(con))).df()
    by_customer = {c: set(r) for c, r in found.groupby("customer_id")["rule"]}
    assert by_customer["C2"] == {"no e-mail consent"}
    assert by_customer["C3"] == {"on the suppression list"}
    assert any(r.startswith("within the suppression window") for r in by_customer["C1"])
    con.execute("UPDATE alerts.customer_alerts SET is_control = NOT is_control WHERE customer_id = 'C1' "
                "AND alert_date = ?", [DAY])
    found = con.sql(daily.violations_sql([DAY.isoformat()], cfg, None)).df()
    assert "control flag differs from the hash rule" in set(found["rule"])


def test_a_days_delivery_reaches_each_sink_once_and_keeps_its_log_over_reruns(con, tmp_path):
    cfg = rules.load_config()
    kind = next(iter(cfg.suppression_days))
    _alerts(con, cfg, [(c, DAY, kind) for c in ("C1", "C2", "C3")])
    con.execute("UPDATE alerts.customer_alerts SET is_control = false")
    box, sinks = Outbox(tmp_path / "outbox"), [JsonlSink(tmp_path / "outbox" / "alerts.jsonl")]
    first = daily.deliver_day(con, cfg, box, sinks, ["webhook: no URL set"], DAY)
    # C2 withdrew consent and C3 is suppressed: only C1's alert goes out
    assert first.offered == 1 and [r["sent"] for r in first.log] == [1, 0]
    again = daily.deliver_day(con, cfg, box, sinks, [], DAY)
    assert again.log[0]["sent"] == 0 and again.log[0]["already_delivered"] == 1
    assert len((tmp_path / "outbox" / "alerts.jsonl").read_text().splitlines()) == 1
    # the day's log still says what was sent that day
    assert con.execute("SELECT sent, already_delivered FROM alerts.delivery_log WHERE sink = 'jsonl'").fetchall() \
        == [(1, 0)]
