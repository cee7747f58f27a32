"""Gradient boosting that predicts on binned rows gives scikit-learn's own predictions."""

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

from crm_platform.ml.boosting import BoostedClassifier, BoostedRegressor


def _data(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"recency_days": rng.integers(0, 400, rows).astype(float),
                      "orders_total": rng.poisson(3, rows).astype(float),
                      "revenue_total": rng.gamma(2.0, 80.0, rows).round(2),
                      "engagement_score": rng.normal(0, 1, rows)})
    X.loc[rng.random(rows) < 0.1, "engagement_score"] = np.nan
    y = rng.poisson(np.exp(0.2 * X["orders_total"] - X["recency_days"] / 300))
    return X, y


def _hard_rows(model, X: pd.DataFrame) -> pd.DataFrame:
    """New rows that sit exactly on the model's bin edges, just beside them, outside the training
    range, missing and infinite."""
    edges = model._bin_mapper.bin_thresholds_
    rows = []
    for j, col in enumerate(X.columns):
        near = [v for e in edges[j][:: max(1, len(edges[j]) // 20)]
                for v in (e, np.nextafter(e, -np.inf), np.nextafter(e, np.inf))]
        for v in near + [np.nan, np.inf, -np.inf, -1e12, 1e12]:
            row = X.iloc[j].copy()
            row[col] = v
            rows.append(row)
    return pd.concat([X, pd.DataFrame(rows)], ignore_index=True)


def _stock(model, cls):
    stock = cls.__new__(cls)
    stock.__dict__.update(model.__dict__)
    return stock


@pytest.fixture
def raw_walk_forbidden(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("walked the trees on raw values")
    monkeypatch.setattr(TreePredictor, "predict", fail)


def test_regressor_predicts_what_scikit_learn_predicts_on_every_kind_of_row():
    X, y = _data(5_000, 1)
    model = BoostedRegressor(loss="poisson", max_iter=60, random_state=0).fit(X, y)
    new = _hard_rows(model, _data(3_000, 2)[0])
    expected = _stock(model, HistGradientBoostingRegressor).predict(new)
    np.testing.assert_array_equal(model.predict(new), expected)
    assert np.unique(expected).size > 50       # the trees really split these rows


def test_classifier_probabilities_are_scikit_learn_s_and_skip_the_raw_walk(raw_walk_forbidden):
    X, y = _data(5_000, 3)
    label = (y > 0).astype(int)
    model = BoostedClassifier(max_iter=60, random_state=0).fit(X, label)
    new = _hard_rows(model, _data(3_000, 4)[0])
    got = model.predict_proba(new)
    with pytest.raises(AssertionError, match="raw values"):
        _stock(model, HistGradientBoostingClassifier).predict_proba(new)
    assert got.shape == (len(new), 2)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_classifier_matches_scikit_learn_exactly():
    X, y = _data(5_000, 5)
    label = (y > 1).astype(int)
    model = BoostedClassifier(max_iter=80, random_state=0, early_stopping=True).fit(X, label)
    new = _hard_rows(model, _data(2_000, 6)[0])
    np.testing.assert_array_equal(model.predict_proba(new),
                                  _stock(model, HistGradientBoostingClassifier).predict_proba(new))


def test_native_categorical_features_keep_scikit_learn_s_raw_walk():
    X, y = _data(3_000, 7)
    X["channel"] = pd.Categorical(np.random.default_rng(7).choice(["shop", "store", "app"], len(X)))
    model = BoostedRegressor(max_iter=30, categorical_features="from_dtype", random_state=0).fit(X, y)
    new = X.head(500).copy()
    new["channel"] = pd.Categorical(["fax"] * 500, categories=["app", "fax", "shop", "store"])
    np.testing.assert_array_equal(model.predict(new), _stock(model, HistGradientBoostingRegressor).predict(new))
