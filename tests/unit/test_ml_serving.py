"""The quality gate's decision with its records, and drift, without Dagster."""

from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd

from crm_platform.core import audit
from crm_platform.ml import serving
from crm_platform.ml.evaluate import reference_bins


class _Registry:
    def __init__(self):
        self.decisions = []

    def record_decision(self, task, version, passed, reasons, values):
        self.decisions.append((task, version, passed))


CFG = SimpleNamespace(gate_margin=0.01, gate_tolerance=0.005)
TASK = SimpleNamespace(TASK="churn", HIGHER_IS_BETTER=True)


def _card(challenger, champion=None):
    return {"main_metric": "auc", "challenger_metric": challenger, "baseline_metric": 0.70,
            "champion_metric": champion}


def test_the_gate_promotes_only_a_challenger_that_beats_baseline_and_champion_and_says_so_in_the_audit_log():
    con, registry = duckdb.connect(), _Registry()
    assert serving.promote(con, registry, TASK, "v0002", _card(0.80), None, CFG, "test").passed
    refused = serving.promote(con, registry, TASK, "v0003", _card(0.75, champion=0.80), "v0002", CFG, "test")
    assert not refused.passed and refused.reasons
    assert registry.decisions == [("churn", "v0002", True), ("churn", "v0003", False)]
    rows = con.execute(f"SELECT subject, outcome, details FROM {audit.TABLE} ORDER BY logged_at").fetchall()
    assert [(s, o) for s, o, _ in rows] == [("churn v0002", "promoted"), ("churn v0003", "refused")]
    assert '"previous_champion": "v0002"' in rows[1][2]


def test_drift_flags_the_features_that_moved():
    rng = np.random.default_rng(1)
    reference = {"score": reference_bins(rng.uniform(size=5000)), "recency": reference_bins(rng.normal(30, 5, 5000)),
                 "orders": reference_bins(rng.poisson(3, 5000))}
    day = serving.ScoredDay(5000, 0, pd.DataFrame({"churn_probability": rng.uniform(size=5000)}),
                            pd.DataFrame({"recency": rng.normal(60, 5, 5000), "orders": rng.poisson(3, 5000)}))
    values, shifted = serving.drift({"reference": reference}, day, "churn_probability", 0.2)
    assert set(values) == {"score", "recency", "orders"}
    assert set(shifted) == {"recency"}
