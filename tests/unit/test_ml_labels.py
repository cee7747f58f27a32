"""Labels from the future of a cutoff, by hand, and cutoff plans that would leak are refused."""

from datetime import date

import duckdb
import pandas as pd
import pytest

from crm_platform.ml import labels

EVENTS = [  # customer, event_at, type, value, record, categories
    ("C1", "2026-01-10", "order", 100.0, "O1", ["shoes"]),
    ("C1", "2026-02-20", "order", 50.0, "O2", ["shoes", "home"]),     # within 90 days of the cutoff
    ("C1", "2026-02-25", "return", 20.0, "O2/1", None),
    ("C2", "2025-12-01", "order", 80.0, "O3", ["toys"]),              # nothing after: churned
    ("C3", "2026-02-01", "order", 30.0, "O4", ["garden"]),            # acquired after the cutoff: no row
    ("C4", "2025-11-01", "lead_created", 900.0, "L1", None),
    ("C4", "2026-03-01", "lead_converted", 900.0, "L1", None),
    ("C5", "2025-12-15", "lead_created", 500.0, "L2", None),          # open, does not convert
    ("C6", "2025-10-01", "lead_created", 700.0, "L3", None),
    ("C6", "2025-12-01", "lead_converted", 700.0, "L3", None),        # converted before: not open
    ("C2", "2027-03-01", "order", 10.0, "O5", ["toys"]),              # after the 12-month window
]
CUTOFF = date(2026, 1, 31)


@pytest.fixture
def con():
    c = duckdb.connect()
    ev = pd.DataFrame(EVENTS, columns=["customer_id", "event_at", "event_type", "value", "source_record_id",
                                       "categories"])
    ev["event_at"] = pd.to_datetime(ev["event_at"])
    ev["known_at"] = ev["event_at"]
    ev["channel"] = ev["event_type"].map(lambda t: "webinar" if t.startswith("lead") else "shop")
    c.register("_e", ev)
    c.execute("CREATE TABLE ev AS SELECT * EXCLUDE (categories), CAST(categories AS VARCHAR[]) AS categories FROM _e")
    yield c
    c.close()


def test_labels_by_hand(con):
    churn = dict(con.execute(f"SELECT customer_id, churned FROM ({labels.churn_sql(CUTOFF, 90, 'ev')})").fetchall())
    assert churn == {"C1": 0, "C2": 1}
    clv = dict(con.execute(f"SELECT customer_id, clv_12m FROM ({labels.clv_sql(CUTOFF, 'ev')})").fetchall())
    assert clv == {"C1": 30.0, "C2": 0.0}
    cross = dict(con.execute(f"SELECT customer_id, new_categories FROM ({labels.cross_sell_sql(CUTOFF, 90, 'ev')})")
                 .fetchall())
    assert cross == {"C1": ["home"], "C2": []}
    leads = {r[0]: r[1:] for r in con.execute(
        f"SELECT lead_id, customer_id, converted, lead_source, lead_value, lead_age_days "
        f"FROM ({labels.lead_conversion_sql(CUTOFF, 90, 'ev')})").fetchall()}
    assert leads == {"L1": ("C4", 1, "webinar", 900.0, 91), "L2": ("C5", 0, "webinar", 500.0, 47)}


def test_a_short_horizon_misses_a_later_order(con):
    churn = dict(con.execute(f"SELECT customer_id, churned FROM ({labels.churn_sql(CUTOFF, 15, 'ev')})").fetchall())
    assert churn == {"C1": 1, "C2": 1}


def test_leaking_cutoff_plans_are_refused():
    end = date(2026, 9, 30)
    plan = labels.plan_cutoffs([date(2025, 6, 30), date(2025, 9, 30)], date(2026, 3, 31), 90, end)
    assert plan.train == (date(2025, 6, 30), date(2025, 9, 30))
    with pytest.raises(labels.LeakageError, match="2026-01-31 plus the 90-day label window"):
        labels.plan_cutoffs([date(2025, 9, 30), date(2026, 1, 31)], date(2026, 3, 31), 90, end)
    with pytest.raises(labels.LeakageError, match="not observed yet"):
        labels.plan_cutoffs([date(2025, 6, 30)], date(2026, 8, 31), 90, end)
    with pytest.raises(labels.LeakageError, match="365-day"):                 # CLV labels span a year
        labels.plan_cutoffs([date(2025, 6, 30)], date(2026, 3, 31), 90, date(2027, 6, 30), label_days=365)
    with pytest.raises(labels.LeakageError, match="no training cutoff"):
        labels.plan_cutoffs([], date(2026, 3, 31), 90, end)
