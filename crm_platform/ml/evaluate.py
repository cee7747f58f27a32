"""Model evaluation: the numbers and tables of a model card, and drift.

Everything here takes plain arrays, so a card can be recomputed outside Dagster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def classification_metrics(y, p) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier score, lift of the top-scored decile, base rate and sizes."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    base = float(y.mean())
    top = np.argsort(-p, kind="stable")[: max(1, len(p) // 10)]
    return {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
            "brier": float(brier_score_loss(y, p)), "top_decile_lift": float(y[top].mean() / base) if base else 0.0,
            "base_rate": base, "examples": int(len(y)), "positives": int(y.sum())}


def calibration_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Predicted vs observed rate per score bin (equal-sized bins)."""
    observed, predicted = calibration_curve(np.asarray(y, dtype=int), np.asarray(p, dtype=float),
                                            n_bins=bins, strategy="quantile")
    return pd.DataFrame({"predicted": predicted.round(4), "observed": observed.round(4)})


def decile_table(y, p) -> pd.DataFrame:
    """Customers, positives, rate, lift and cumulative capture per score decile (1 = highest scores)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    decile = np.empty(len(p), dtype=int)
    decile[order] = np.arange(len(p)) * 10 // max(len(p), 1) + 1
    t = pd.DataFrame({"decile": decile, "y": y, "p": p}).groupby("decile").agg(
        customers=("y", "size"), positives=("y", "sum"), mean_score=("p", "mean")).reset_index()
    base = y.mean() if len(y) else 0
    t["rate"] = (t["positives"] / t["customers"]).round(4)
    t["lift"] = (t["rate"] / base).round(3) if base else 0.0
    t["cumulative_capture"] = (t["positives"].cumsum() / max(y.sum(), 1)).round(4)
    t["mean_score"] = t["mean_score"].round(4)
    return t


def top_predictors(model, X: pd.DataFrame, y, scoring: str, seed: int, max_rows: int = 2000,
                   top: int = 10) -> pd.DataFrame:
    """Permutation importance on (a sample of) the test set: how much the score drops when a
    feature's values are shuffled."""
    if len(X) > max_rows:
        idx = np.random.default_rng(seed).choice(len(X), max_rows, replace=False)
        X, y = X.iloc[idx], np.asarray(y)[idx]
    r = permutation_importance(model, X, y, scoring=scoring, n_repeats=2, random_state=seed, n_jobs=1)
    t = pd.DataFrame({"feature": X.columns, "importance": r.importances_mean, "std": r.importances_std})
    return t.sort_values("importance", ascending=False).head(top).round(5).reset_index(drop=True)


def reference_bins(values, bins: int = 10) -> dict:
    """The distribution a later PSI compares against: quantile edges and the share per bin."""
    v = pd.Series(values, dtype=float).dropna().to_numpy()
    if len(v) == 0:
        return {"edges": [], "shares": [], "missing": 1.0}
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1))[1:-1])
    return {"edges": edges.tolist(), "shares": _shares(v, edges).tolist(),
            "missing": float(pd.Series(values, dtype=float).isna().mean())}


def _shares(v: np.ndarray, edges) -> np.ndarray:
    counts = np.bincount(np.searchsorted(np.asarray(edges), v, side="right"), minlength=len(edges) + 1)
    return counts / max(counts.sum(), 1)


def psi(reference: dict, values, floor: float = 1e-4) -> float:
    """Population stability index of ``values`` against a ``reference_bins`` distribution
    (sum of (actual − expected) · ln(actual / expected) over the bins, missing values a bin of their
    own). Rule of thumb: < 0.1 stable, 0.1–0.2 moderate shift, > 0.2 significant shift."""
    raw = pd.Series(values, dtype=float)
    v = raw.dropna().to_numpy()
    expected = np.append(np.asarray(reference["shares"]) * (1 - reference["missing"]), reference["missing"])
    actual = np.append(_shares(v, reference["edges"]) * (1 - raw.isna().mean()), raw.isna().mean()) \
        if len(raw) else np.zeros_like(expected)
    e, a = np.maximum(expected, floor), np.maximum(actual, floor)
    return float(np.sum((a - e) * np.log(a / e)))


def normalized_gini(y, pred) -> float:
    """How well ``pred`` orders customers by what they really spent: the Gini of the actual values
    sorted by the prediction over the Gini of the perfect order (1 = perfect, 0 = random)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)

    def gini(order):
        s = y[np.lexsort((np.arange(len(y)), -order))]
        total = s.sum()
        return float((np.cumsum(s) / total).sum() / len(s) - (len(s) + 1) / (2 * len(s))) if total else 0.0

    best = gini(y)
    return gini(pred) / best if best else 0.0


def regression_metrics(y, pred) -> dict[str, float]:
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return {"mae": float(np.mean(np.abs(pred - y))), "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
            "spearman": float(spearmanr(pred, y)[0]) if np.std(pred) > 0 else 0.0,
            "aggregate_error": float(pred.sum() / y.sum() - 1) if y.sum() else 0.0,
            "normalized_gini": normalized_gini(y, pred), "examples": int(len(y))}


def conformal_bands(pred, y, deciles: int = 10, scale: float = 1.0) -> dict:
    """10th/90th percentile of the residual (actual − predicted) per prediction decile;
    ``scale``: predictions and residuals multiplied by it (a shorter test period's bands put on
    the 12-month scale)."""
    pred, y = np.asarray(pred, float) * scale, np.asarray(y, float) * scale
    edges = np.unique(np.quantile(pred, np.linspace(0, 1, deciles + 1))[1:-1])
    bins = np.searchsorted(edges, pred, side="right")
    resid = y - pred
    lo = [float(np.quantile(resid[bins == b], 0.1)) if (bins == b).any() else 0.0 for b in range(len(edges) + 1)]
    hi = [float(np.quantile(resid[bins == b], 0.9)) if (bins == b).any() else 0.0 for b in range(len(edges) + 1)]
    return {"edges": edges.tolist(), "low": lo, "high": hi}


def interval(bands: dict, pred) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, float)
    b = np.searchsorted(np.asarray(bands["edges"]), pred, side="right")
    low = np.maximum(pred + np.asarray(bands["low"])[b], np.minimum(pred, 0))
    return low, np.maximum(pred + np.asarray(bands["high"])[b], pred)


def value_deciles(pred, y) -> pd.DataFrame:
    """Mean predicted against mean actual value per prediction decile (1 = highest)."""
    t = pd.DataFrame({"p": np.asarray(pred, float), "y": np.asarray(y, float)})
    t["decile"] = 10 - pd.qcut(t["p"].rank(method="first"), 10, labels=False)
    return t.groupby("decile").agg(customers=("y", "size"), mean_predicted=("p", "mean"),
                                   mean_actual=("y", "mean")).round(2).reset_index()
