"""Models: the churn model against its naive baseline, the quality gate, the registry, scoring of
every eligible customer, and honest "not enough data" outcomes."""

import dataclasses
import shutil
from pathlib import Path
from datetime import date, timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource
from sklearn.linear_model import LogisticRegression

import assets.ml as ml_module
from crm_platform.features import snapshots as features
from crm_platform.ml import NotEnoughData, churn, load_config, training
from crm_platform.ml.evaluate import psi, reference_bins
from crm_platform.ml.gate import decide
from crm_platform.ml.registry import Registry, RegistryError
from crm_platform.ml.training import data_hash, training_sample
from resources.models import ModelStore

CFG = load_config()
FCFG = features.load_config()


@pytest.fixture(scope="module")
def trained(timeline_world):
    con = duckdb.connect(str(timeline_world), read_only=True)
    model, card = churn.train(con, CFG, FCFG)
    yield con, model, card
    con.close()


def test_churn_model_beats_the_recency_rule_and_is_calibrated(trained):
    _, _, card = trained
    m = card["metrics"]
    assert card["model"] != churn.BASELINE and card["model"] in m
    assert m[card["model"]]["roc_auc"] > m["recency_rule"]["roc_auc"] + 0.01
    assert m[card["model"]]["pr_auc"] > m["recency_rule"]["pr_auc"]
    base = m[card["model"]]["base_rate"]
    # calibrated: clearly better than always predicting the base rate
    assert m[card["model"]]["brier"] < 0.85 * base * (1 - base)
    test = date.fromisoformat(card["test_cutoff"])
    assert all(date.fromisoformat(c) + timedelta(days=CFG.horizon_days) < test for c in card["train_cutoffs"])
    assert card["test_examples"] > 500 and card["train_examples"] > card["test_examples"]
    assert card["importance"][0]["feature"] in card["features"] and len(card["data_hash"]) == 64


class _Breaks:
    """A learner that fails on the data, as the calibrated boosting did on a shop's short log."""

    def fit(self, X, y):
        raise ValueError("window shape cannot be larger than input array shape")


def test_a_candidate_that_fails_is_recorded_and_the_others_train(timeline_world, monkeypatch):
    con = duckdb.connect(str(timeline_world), read_only=True)
    real = churn.candidates
    monkeypatch.setattr(churn, "candidates", lambda cols, seed: {**real(cols, seed), "gradient_boosting": _Breaks()})
    model, card = churn.train(con, CFG, FCFG)
    assert card["model"] != "gradient_boosting" and "gradient_boosting" not in card["metrics"]
    assert {"logistic_regression", "pareto_nbd_alive", "bg_nbd_expected_purchases"} <= set(card["metrics"])
    assert card["failed_candidates"] == {"gradient_boosting": "ValueError: window shape cannot be larger than input array shape"}
    assert card["metrics"]["recency_rule"]["roc_auc"] > 0.5
    # with every candidate but the baseline failing the step fails, naming each error
    rules = churn.count_rules
    monkeypatch.setattr(churn, "candidates", lambda cols, seed: {"recency_rule": real(cols, seed)["recency_rule"],
                                                                "logistic_regression": _Breaks()})
    monkeypatch.setattr(churn, "count_rules", lambda cols, days: {n: _Breaks() for n in rules(cols, days)})
    with pytest.raises(training.NoCandidateTrained, match="logistic_regression: ValueError: window shape.*pareto_nbd_alive"):
        churn.train(con, CFG, FCFG)
    con.close()


def test_scores_every_eligible_customer(trained):
    con, model, card = trained
    day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]
    frame = churn.scoring_frame(con, FCFG, day, model=model)
    out = churn.score(model, card, frame, CFG)
    eligible = set(frame.loc[frame["orders_total"] > 0, "customer_id"])
    assert set(out["customer_id"]) == eligible and len(out) == len(eligible) > 500
    assert out["churn_probability"].between(0, 1).all()
    assert (out.loc[out["churn_probability"] >= CFG.risk_high, "risk_band"] == "high").all()
    assert set(out["risk_band"]) == {"low", "medium", "high"}


def test_a_large_customer_base_trains_on_a_stable_sample_of_customers(trained):
    con, _, full = trained
    whole = training_sample(con, CFG)
    assert whole.events == "core.customer_events" and whole.sampled == whole.customers
    cfg = dataclasses.replace(CFG, max_train_customers=whole.customers // 2)
    sample = training_sample(con, cfg)
    customers = lambda s: {c for (c,) in con.execute(f"SELECT DISTINCT customer_id FROM {s.events}").fetchall()}  # noqa: E731
    first = customers(sample)
    again = training_sample(con, cfg)
    assert again == sample and customers(again) == first     # the same customers on every retrain
    assert 0.4 < sample.sampled / whole.customers < 0.6
    model, card = churn.train(con, cfg, FCFG, events=sample.events)
    assert 0.35 < card["train_examples"] / full["train_examples"] < 0.65
    assert 0.35 < card["test_examples"] / full["test_examples"] < 0.65
    m = card["metrics"]
    assert m[card["model"]]["roc_auc"] > m["recency_rule"]["roc_auc"]


def test_gate_refuses_worse_models():
    assert not decide("roc_auc", 0.70, 0.69, None, margin=0.02, tolerance=0.01).passed      # ~ the baseline
    assert decide("roc_auc", 0.75, 0.69, None, margin=0.02, tolerance=0.01).passed          # first champion
    worse = decide("roc_auc", 0.78, 0.69, 0.80, margin=0.02, tolerance=0.01)
    assert not worse.passed and "champion" in worse.summary()
    assert decide("roc_auc", 0.795, 0.69, 0.80, margin=0.02, tolerance=0.01).passed       # within tolerance
    assert not decide("mae", 1.0, 0.9, None, margin=0.01, tolerance=0.01, higher_is_better=False).passed
    assert decide("mae", 0.8, 0.9, 0.81, margin=0.01, tolerance=0.01, higher_is_better=False).passed
    assert not decide("roc_auc", None, 0.69, 0.8, margin=0.02, tolerance=0.01).passed
    # the promotion reason names the previous champion when it could not be measured
    first = decide("roc_auc", 0.75, 0.69, None, margin=0.02, tolerance=0.01)
    assert "no champion yet" in first.reasons
    unmeasured = decide("roc_auc", 0.75, 0.69, None, margin=0.02, tolerance=0.01, champion_version="v0001")
    assert unmeasured.passed and not any("no champion yet" in r for r in unmeasured.reasons)
    assert any("champion v0001 could not be measured" in r for r in unmeasured.reasons)


def test_registry_round_trip(tmp_path):
    reg = Registry(tmp_path / "models")
    X = np.random.default_rng(0).normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    v1 = reg.register("churn", model, {"features": ["a", "b", "c"], "metrics": {"roc_auc": 0.9}})
    v2 = reg.register("churn", model, {"features": ["a", "b", "c"], "metrics": {"roc_auc": 0.8}})
    assert (v1, v2) == ("v0001", "v0002") and reg.versions("churn") == [v1, v2]
    loaded, card = reg.load("churn", v1)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert card["metrics"] == {"roc_auc": 0.9} and card["version"] == v1 and card["task"] == "churn"
    assert reg.champion("churn") is None
    reg.record_decision("churn", v1, True, ["first"], {})
    reg.record_decision("churn", v2, False, ["worse"], {})
    assert reg.champion("churn") == v1
    assert [d["promoted"] for d in reg.decisions("churn")] == [True, False]
    with pytest.raises(RegistryError):
        reg.load("churn", "v0009")


def test_psi_sees_a_shift():
    rng = np.random.default_rng(1)
    ref = reference_bins(rng.normal(size=5000))
    assert psi(ref, rng.normal(size=5000)) < 0.05
    assert psi(ref, rng.normal(1, 1, size=5000)) > 0.2


def _tiny(timeline_world, tmp_path, keep: int):
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(timeline_world, db)
    con = duckdb.connect(str(db))
    con.execute(f"DELETE FROM core.customer_events WHERE customer_id NOT IN (SELECT DISTINCT customer_id FROM "
                f"core.customer_events ORDER BY 1 LIMIT {keep})")
    return db, con


def test_tiny_history_is_not_enough_data(timeline_world, tmp_path):
    db, con = _tiny(timeline_world, tmp_path, 40)
    with pytest.raises(NotEnoughData, match="fewer than the 300 required"):
        churn.train(con, CFG, FCFG)
    con.close()


def _resources(db, home):
    return {"warehouse": DuckDBResource(database=str(db)), "models": ModelStore(root=str(home / "models"))}


def _checks(result):
    return {(ev.asset_key.to_user_string(), ev.check_name): ev for ev in result.get_asset_check_evaluations()}


@pytest.mark.slow
def test_train_gate_and_score_in_dagster(timeline_world, tmp_path, monkeypatch):
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(timeline_world, db)
    defs = ml_module.ml_assets()[:2]
    day = "2026-09-30"

    def run():
        return dg.materialize(defs, resources=_resources(db, tmp_path), partition_key=day,
                              instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)

    first = run()
    checks = _checks(first)
    assert first.success and checks[("ml/churn_model", "quality_gate")].passed
    drift = checks.pop(("ml/churn_scores", "drift"))   # a warning, whichever way today's data went
    assert drift.severity == dg.AssetCheckSeverity.WARN and "score" in drift.metadata["psi"].value
    assert all(ev.passed for ev in checks.values()), {k: v.description for k, v in checks.items() if not v.passed}
    reg = Registry(tmp_path / "models")
    assert reg.champion("churn") == "v0001"
    meta = next(e.materialization.metadata for e in first.get_asset_materialization_events()
                if e.materialization.asset_key == dg.AssetKey(["ml", "churn_model"]))
    assert meta["calibration_curve"].value.startswith("![calibration curve](data:image/png;base64,")
    metrics = meta["metrics"].value        # a table the UI shows whole: a row per metric, a column per model
    assert "recency_rule" in [c.name for c in metrics.schema.columns]
    assert "roc_auc" in [r.data["metric"] for r in metrics.records]
    page = Path(meta["model_card_page"].value)       # every plot and the metrics on one page
    assert page == tmp_path / "models" / "churn" / "v0001" / "card.html"
    assert page.read_text().count("<img ") >= 2 and "recency_rule" in page.read_text()
    con = duckdb.connect(str(db), read_only=True)
    versions = con.execute("SELECT DISTINCT model_version FROM ml.churn_scores").fetchall()
    con.close()
    assert versions == [("v0001",)]

    # a gate no challenger can pass: the champion stays, and the blocked scores are not rebuilt
    monkeypatch.setattr(ml_module, "CONFIG", dataclasses.replace(CFG, gate_margin=0.9))
    defs[:] = ml_module.ml_assets()[:2]
    second = run()
    gate = _checks(second)[("ml/churn_model", "quality_gate")]
    assert not gate.passed and "does not beat the baseline" in gate.description
    assert reg.champion("churn") == "v0001" and reg.versions("churn") == ["v0001", "v0002"]
    built = {e.materialization.asset_key.to_user_string() for e in second.get_asset_materialization_events()}
    assert built == {"ml/churn_model"}

    # the same data and configuration again: nothing new is learnt, no new version, the champion stays
    monkeypatch.setattr(ml_module, "CONFIG", CFG)
    defs[:] = ml_module.ml_assets()[:2]
    third = run()
    gate = _checks(third)[("ml/churn_model", "quality_gate")]
    assert gate.passed and "unchanged" in gate.description and "v0001 is the champion" in gate.description
    assert reg.versions("churn") == ["v0001", "v0002"] and reg.champion("churn") == "v0001"
    assert reg.last_attempt("churn")["status"].startswith("unchanged: the training data and configuration are those "
                                                          "of v0001")


def test_not_enough_data_in_dagster(timeline_world, tmp_path):
    db, con = _tiny(timeline_world, tmp_path, 40)
    con.close()
    result = dg.materialize(ml_module.ml_assets(), resources=_resources(db, tmp_path),
                            partition_key="2026-09-30", instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert result.success
    checks = _checks(result)
    for task in ("churn", "clv", "next_best_offer", "lead_scoring"):
        gate = checks[(f"ml/{task}_model", "quality_gate")]
        assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
        assert "not enough data" in gate.description, gate.description
        assert Registry(tmp_path / "models").champion(task) is None
    for table in ("churn_scores", "clv_scores", "next_best_offer", "lead_scores"):
        scored = checks[(f"ml/{table}", "every_eligible_customer_scored")]
        assert not scored.passed and "no champion" in scored.description


def test_clv_beats_the_historic_value_and_scores_every_customer(timeline_world):
    from crm_platform.ml import clv
    from crm_platform.contracts.schemas import ClvScores

    con = duckdb.connect(str(timeline_world), read_only=True)
    model, card = clv.train(con, CFG, FCFG)
    m = card["metrics"]
    served = m[card["model"]]
    assert card["model"] in clv.LEARNED and served["mae_skill"] > 0.02
    assert served["mae"] < m["historic"]["mae"] and served["spearman"] > m["historic"]["spearman"]
    assert 0.7 <= served["interval_coverage"] <= 0.9
    assert date.fromisoformat(card["test_cutoff"]) - date.fromisoformat(max(card["train_cutoffs"])) > timedelta(days=365)
    day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]
    frame = clv.scoring_frame(con, FCFG, day)
    out = clv.score(model, card, frame, CFG)
    con.close()
    assert set(out["customer_id"]) == set(frame.loc[frame["orders_total"] > 0, "customer_id"])
    ClvScores.validate(out.assign(snapshot_date=pd.Timestamp(day), model_version="v0001"))
    assert out["expected_next_order_date"].notna().mean() > 0.2
    # of two repeat buyers, the one who stopped long ago is less likely still a customer
    repeat = frame[frame["repeat_days"] >= 2].sort_values("recency_days")
    best, worst = repeat.iloc[[0, -1]]["customer_id"]
    by = out.set_index("customer_id")
    assert by.loc[best, "probability_alive"] > by.loc[worst, "probability_alive"]


def test_clv_scores_describe_only_the_count_models_they_read(timeline_world):
    import copy

    from crm_platform.ml import clv

    con = duckdb.connect(str(timeline_world), read_only=True)
    model, card = clv.train(con, CFG, FCFG)
    day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]
    every = clv._frame(con, FCFG, [day], "core.customer_events", False, fixed=model.fit, horizons=model.horizons)[0]
    btyd_served = "pareto_nbd_gamma_gamma" if model.served == "gradient_boosting" else model.served
    for outlook, served in (("bg_nbd", "bg_nbd_gamma_gamma"), ("pareto_nbd", "pareto_nbd_gamma_gamma"),
                            ("bg_nbd", btyd_served), (model.outlook, model.served)):
        variant = copy.copy(model)
        variant.outlook, variant.served = outlook, served
        lean = clv.scoring_frame(con, FCFG, day, model=variant)
        full = {c.removesuffix("_days_to_next_order") for c in lean if c.endswith("_days_to_next_order")}
        assert full == {outlook, served.removesuffix("_gamma_gamma")} & set(clv.COUNT_MODELS)
        assert {"probability_alive", "expected_purchases_365d"} <= set(lean.columns)     # model features
        pd.testing.assert_frame_equal(clv.score(variant, card, lean, CFG), clv.score(variant, card, every, CFG))
    con.close()


def test_next_best_offer_beats_popularity_and_never_offers_a_suppressed_category(timeline_world):
    from crm_platform.ml import nbo
    from crm_platform.contracts.schemas import NextBestOffer

    con = duckdb.connect(str(timeline_world), read_only=True)
    model, card = nbo.train(con, CFG, FCFG)
    m = card["metrics"]
    # on the small world three offers out of five or so candidates leave little room at rank 3: of
    # its 139 test customers five more or fewer hit move the rate by 0.036 (five more contacts
    # loaded whole instead of quarantined did that), so rank 3 may trail popularity by that much
    assert m["gradient_boosting"]["hit_rate_at_3"] >= m["popularity"]["hit_rate_at_3"] - 0.04
    # at rank 1 the model must beat popularity; by how much is measured at scale (benchmarks/
    # models.py): here one customer is 0.007, and a handful of merges identity resolution makes
    # differently moved the margin between 0.007 and 0.04
    assert m["gradient_boosting"]["hit_rate_at_1"] > m["popularity"]["hit_rate_at_1"]
    day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]
    rows = nbo.scoring_frame(con, FCFG, day)
    con.close()
    # a customer who just returned something from a category they do not keep
    # (one with another candidate left: a customer whose every candidate is held back gets no offer row)
    open_ = rows[~rows["suppressed"]]
    victim = open_[open_.groupby("customer_id")["category"].transform("size") >= 2].iloc[0]
    rows.loc[(rows["customer_id"] == victim["customer_id"]) & (rows["category"] == victim["category"]),
             "suppressed"] = True
    out = nbo.score(model, card, rows, CFG)
    NextBestOffer.validate(out.assign(snapshot_date=pd.Timestamp(day), model_version="v0001"))
    mine = out[out["customer_id"] == victim["customer_id"]]
    assert victim["category"] not in set(mine["category"]) and victim["category"] in mine["suppressed_categories"].iloc[0]
    assert set(out["customer_id"]) == set(rows.loc[~rows["suppressed"], "customer_id"])
    assert out.groupby("customer_id").size().max() == 3


def test_suppression_and_ownership_on_a_hand_built_history():
    from crm_platform.ml import nbo

    con = duckdb.connect()
    con.execute("""CREATE TABLE ev AS SELECT * FROM (VALUES
        ('C1', TIMESTAMP '2026-01-05', 'order', 50.0, ['shoes', 'books']::VARCHAR[], NULL),
        ('C1', TIMESTAMP '2026-01-20', 'return', 50.0, NULL, 'shoes'),      -- returned all shoes: does not keep them
        ('C2', TIMESTAMP '2025-01-05', 'order', 20.0, ['toys']::VARCHAR[], NULL),
        ('C2', TIMESTAMP '2025-02-01', 'return', 20.0, NULL, 'toys'),       -- long ago: not suppressed
        ('C2', TIMESTAMP '2026-02-10', 'order', 30.0, ['books']::VARCHAR[], NULL),
        ('C2', TIMESTAMP '2026-02-15', 'web_product_view', NULL, NULL, 'toys'),
        ('C1', TIMESTAMP '2026-03-01', 'order', 30.0, ['toys']::VARCHAR[], NULL)  -- after the cutoff: the label
    ) t(customer_id, event_at, event_type, value, categories, category)""")
    con.execute("ALTER TABLE ev ADD COLUMN known_at TIMESTAMP; UPDATE ev SET known_at = event_at")
    con.execute("ALTER TABLE ev ADD COLUMN channel VARCHAR; UPDATE ev SET channel = 'web' WHERE event_type LIKE 'web%'")
    rows = con.sql(nbo.candidates_sql(date(2026, 2, 28), 90, "ev")).df().set_index(["customer_id", "category"])
    con.close()
    assert set(rows.loc["C1"].index) == {"shoes", "toys"} and set(rows.loc["C2"].index) == {"shoes", "toys"}
    assert rows.loc[("C1", "shoes"), "suppressed"] and not rows.loc[("C2", "toys"), "suppressed"]
    assert rows.loc[("C1", "toys"), "bought"] == 1 and rows.loc[("C1", "shoes"), "bought"] == 0
    assert rows.loc[("C2", "toys"), "views_total"] == 1 and rows.loc[("C2", "toys"), "returned_before"] == 1


def test_lead_scores_beat_the_channel_rate_with_reasons(timeline_world):
    from crm_platform.ml import leads

    con = duckdb.connect(str(timeline_world), read_only=True)
    # the small test world holds about 75 leads: too few for the default minimum, which says so
    with pytest.raises(NotEnoughData, match=r"lead (training|test) set: .* fewer than the \d+"):
        leads.train(con, CFG, FCFG)
    model, card = leads.train(con, dataclasses.replace(CFG, min_positives=5, min_examples=100), FCFG)
    day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]
    rows = leads.scoring_frame(con, FCFG, day)
    con.close()
    m = card["metrics"]
    assert m["logistic_regression"]["roc_auc"] > m["channel_rate"]["roc_auc"] + 0.05
    assert min(date.fromisoformat(c) for c in card["test_cutoffs"]) > \
        max(date.fromisoformat(c) for c in card["train_cutoffs"]) + timedelta(days=CFG.horizon_days)
    out = leads.score(model, card, rows, CFG)
    assert len(out) == len(rows) > 10 and out["lead_id"].is_unique
    # a fresh lead converts more often than one that has gone stale, and its age is the reason given
    fresh, stale = rows.sort_values("lead_age_days").iloc[[0, -1]]["lead_id"]
    by = out.set_index("lead_id")
    assert by.loc[fresh, "conversion_probability"] > by.loc[stale, "conversion_probability"]
    assert "lead_age_days=" in by.loc[fresh, "top_reasons"]


def test_the_data_hash_names_the_training_rows_exactly():
    """The model card's data hash: the same rows give the same hash, and any
    changed value, changed row order or a dropped row gives another."""
    frame = pd.DataFrame({"customer_id": ["C000000001", "C000000002", "C000000003"],
                          "cutoff": [date(2026, 1, 31)] * 3, "orders_total": [3, 0, 7],
                          "recency_days": [12.0, np.nan, 40.0], "lead_channel": ["web", None, "fair"],
                          "churned": [0, 1, 0]})
    h = data_hash(frame)
    assert len(h) == 64 and data_hash(frame.copy()) == h
    changed = frame.copy()
    changed.loc[1, "recency_days"] = 0.0
    variants = [changed, frame.iloc[::-1].reset_index(drop=True), frame.iloc[:2],
                frame.assign(lead_channel=["web", "fair", "fair"]), frame.assign(cutoff=[date(2026, 2, 28)] * 3)]
    assert len({h, *(data_hash(v) for v in variants)}) == len(variants) + 1
