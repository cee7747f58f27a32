"""Customer lifetime value: probability alive, expected purchases over the configured horizons
(``clv_horizons_days``), the net value of the next 12 months with an 80% interval, and the
expected next-order date - in two tiers by how much history there is.

**Labelled** (the history holds a training and a test cutoff with 365 days observed after each):
candidates measured on the same later test cutoff against what customers really spent:

* ``historic`` (the naive baseline): the next 12 months repeat the last 12 months' net value;
* ``bg_nbd_gamma_gamma`` / ``pareto_nbd_gamma_gamma``: count-model purchases × Gamma-Gamma value
  × (1 − the population's return share), fitted on the purchase histories at the cutoff;
* ``gradient_boosting``: a Poisson gradient-boosting regressor on the feature snapshot plus the
  BG/NBD outputs, trained on the rolling training cutoffs' 12-month outcomes.

**Count models** (a shorter history): the count models need no label window. They are fitted at
a cutoff a third of the history before its end (at most a year) and measured on what customers
did after it, against the baseline "the next period repeats the last one"; the better of the
two serves, refitted on the whole history. This needs ``MIN_HISTORIES`` purchase histories,
``MIN_REPEAT_BUYERS`` of them with a repeat purchase, at the split cutoff: below that the card
says not enough data.

In both tiers the better count model on the test period by MAE of the purchases (labelled: of the
value) gives probability alive, expected purchases and the next-order date; BG/NBD and Gamma-Gamma
are refitted on each scoring day, Pareto/NBD keeps the parameters fitted on the training day's
whole history. The interval is split-conformal: the 10th and 90th percentile of the served
model's test residuals within its prediction decile (the count tier's, measured over its test
period, scaled to 12 months).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sklearn.pipeline import make_pipeline

from crm_platform.core import warehouse
from crm_platform.features.snapshots import FeatureConfig
from crm_platform.core.days import day_end
from crm_platform.ml import DEFAULT_CLV_HORIZONS, ModelConfig, NotEnoughData, labels
from crm_platform.ml.btyd import BetaGeo, GammaGamma, ParetoNBD
from crm_platform.ml.boosting import BoostedRegressor
from crm_platform.ml.evaluate import (conformal_bands, interval, reference_bins, regression_metrics, top_predictors,
                                      value_deciles)
from crm_platform.ml.training import (DERIVED, data_hash, data_window, default_plan, design, examples,
                                      feature_columns, has_ordered, left_out_features, preprocessor, require,
                                      simple_params)

TASK = "clv"
SCORE = "clv_12m"
LABEL = "clv_12m"
BASELINE = "historic"
COUNT_MODELS = {"bg_nbd": BetaGeo, "pareto_nbd": ParetoNBD}
LEARNED = ("bg_nbd_gamma_gamma", "pareto_nbd_gamma_gamma", "gradient_boosting")
MAIN_METRIC = "mae_skill"      # 1 − MAE / MAE of the naive baseline: 0 = no better than it
# a count model has four parameters and Gamma-Gamma three, the repeat buyers carry what the data
# says about purchase rates and values: with fewer than 30 histories (15 repeat buyers) the fits
# wander from start to start and the scores mean little
MIN_HISTORIES = 30
MIN_REPEAT_BUYERS = MIN_HISTORIES // 2
# the count tier's time split: the last third of the history, at most a year, is the test period
SPLIT_SHARE = 3
# money summed exactly, whatever order the threads add it in
MONEY = "DECIMAL(38, 4)"
NEXT_ORDER_GRID = np.concatenate([np.arange(1, 31), np.arange(35, 366, 7)])   # days: daily, then weekly


def history_sql(cutoff: date, events: str = "core.customer_events", historic_days: int = labels.CLV_DAYS) -> str:
    """Per customer with an order known by the cutoff: repeat purchase days (same-day orders
    merged), days from the first to the last, age in days (first purchase to the cutoff day, the
    convention of the BG/NBD and Pareto/NBD literature), mean value of the repeat days, and the 12
    ``historic_days``' net value before the cutoff (``historic_value``: the naive forecast). Ordered by customer, and money summed
    as decimals: the BTYD fits sum their likelihood in row order, and neither a join's row order nor
    a sum of doubles is the same from run to run (the threads' order)."""
    end = day_end(cutoff)
    return f"""
WITH d AS (SELECT customer_id, event_at::DATE AS day, sum(value::{MONEY}) AS value FROM {events}
           WHERE event_type = 'order' AND event_at < {end} AND known_at < {end} GROUP BY 1, 2),
h AS (SELECT customer_id, count(*) - 1 AS repeat_days, date_diff('day', min(day), max(day)) AS t_x_days,
             date_diff('day', min(day), DATE '{cutoff.isoformat()}') AS age_days,
             ((sum(value) - arg_min(value, day)) / nullif(count(*) - 1, 0))::DOUBLE AS repeat_value_avg
      FROM d GROUP BY 1),
recent AS (SELECT customer_id,
             (coalesce(sum(value::{MONEY}) FILTER (WHERE event_type = 'order'), 0)
            - coalesce(sum(value::{MONEY}) FILTER (WHERE event_type = 'return'), 0))::DOUBLE AS historic_value
           FROM {events} WHERE event_type IN ('order', 'return') AND event_at >= {end} - INTERVAL {int(historic_days)} DAY
             AND event_at < {end} AND known_at < {end} GROUP BY 1)
SELECT h.*, coalesce(l.historic_value, 0) AS historic_value FROM h LEFT JOIN recent l USING (customer_id)
ORDER BY customer_id"""


def return_share(con, cutoff: date, events: str = "core.customer_events") -> float:
    """Returned value / ordered value over everything known by the cutoff."""
    end = day_end(cutoff)
    o, r = con.execute(f"""SELECT sum(value::{MONEY}) FILTER (WHERE event_type = 'order'),
        coalesce(sum(value::{MONEY}) FILTER (WHERE event_type = 'return'), 0) FROM {events}
        WHERE event_type IN ('order', 'return') AND event_at < {end} AND known_at < {end}""").fetchall()[0]
    return float(r / o) if o else 0.0


@dataclass
class Btyd:
    """BG/NBD, Pareto/NBD and Gamma-Gamma fitted on the purchase histories of one day."""

    counts: dict = field(default_factory=dict)
    gg: GammaGamma = field(default_factory=GammaGamma)
    returns: float = 0.0

    def fit(self, h: pd.DataFrame, returns: float, warm: "Btyd | None" = None,
            kinds: tuple[str, ...] = tuple(COUNT_MODELS)) -> "Btyd":
        """``warm``: the fit of a neighbouring cutoff, where the search starts; ``kinds``: the
        count models to fit (BG/NBD always: its outlook is a model feature)."""
        if len(h) < MIN_HISTORIES or (h["repeat_days"] > 0).sum() < MIN_REPEAT_BUYERS:
            raise NotEnoughData(f"the count models need at least {MIN_HISTORIES} purchase histories, {MIN_REPEAT_BUYERS} "
                                f"of them with a repeat purchase; there are {len(h)} and "
                                f"{int((h['repeat_days'] > 0).sum())}")
        # above the fit's sample size the sample is drawn by row position: in customer order, the
        # same customers whatever order the rows came in (a rerun's CLV moved by up to 190 at 1M)
        if not h["customer_id"].is_monotonic_increasing:
            h = h.sort_values("customer_id", kind="stable")
        self.counts = {k: M().fit(h["repeat_days"], h["t_x_days"], h["age_days"],
                                  warm=warm.counts.get(k) if warm else None)
                       for k, M in COUNT_MODELS.items() if k in kinds or k == "bg_nbd"}
        self.gg = GammaGamma().fit(h["repeat_days"], h["repeat_value_avg"])
        self.returns = returns
        return self

    def describe(self, h: pd.DataFrame, kinds=None, horizons=(90,)) -> pd.DataFrame:
        """The BTYD columns of every customer in ``h``: per count model ``<model>_probability_alive``,
        ``_expected_purchases_<n>d`` for each of ``horizons`` and 365, ``_days_to_next_order`` and
        ``_clv_12m``; the BG/NBD probability alive and 365-day purchases also without prefix (model
        features, always made). ``kinds``: the count models to describe in full (default: every one
        fitted)."""
        x, t_x, T = h["repeat_days"].to_numpy(float), h["t_x_days"].to_numpy(float), h["age_days"].to_numpy(float)
        out = h[["customer_id", "repeat_days", "t_x_days", "age_days", "repeat_value_avg"]].copy()
        out["expected_value"] = self.gg.expected_value(x, h["repeat_value_avg"].to_numpy(float))
        for k, m in self.counts.items():
            full = kinds is None or k in kinds
            if not full and k != "bg_nbd":
                continue
            out[f"{k}_probability_alive"] = alive = m.probability_alive(x, t_x, T)
            kw = {"alive": alive} if isinstance(m, ParetoNBD) else {}     # its slow part, once
            out[f"{k}_expected_purchases_365d"] = m.expected_purchases(365, x, t_x, T, **kw)
            if full:
                for n in sorted(set(horizons) - {365}):
                    out[f"{k}_expected_purchases_{n}d"] = m.expected_purchases(n, x, t_x, T, **kw)
                out[f"{k}_clv_12m"] = self.value(out[f"{k}_expected_purchases_365d"], out["expected_value"])
                out[f"{k}_days_to_next_order"] = days_to_next_order(m, x, t_x, T, **kw)
        for c in ("probability_alive", "expected_purchases_365d"):
            out[c] = out[f"bg_nbd_{c}"]
        return out

    def value(self, purchases, expected_value):
        """Net value of ``purchases`` purchases of the customer's expected value, returns deducted."""
        return purchases * expected_value * (1 - self.returns)


def days_to_next_order(model, x, t_x, T, alive=None) -> np.ndarray:
    """The first day on which the expected purchases since the cutoff reach one half (an order is
    then more likely than not, as far as the expectation goes); NaN when that is not within a year.
    ``alive``: a Pareto/NBD's probabilities alive, if already computed."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if alive is None and isinstance(model, ParetoNBD):
        alive = model.probability_alive(x, t_x, T)
    # expected purchases grow with the horizon: a binary search over the grid finds the earliest
    # day in about 7 evaluations per customer instead of one per grid day
    lo, hi = np.zeros(len(x), dtype=int), np.full(len(x), len(NEXT_ORDER_GRID))
    while (open_ := np.flatnonzero(lo < hi)).size:
        mid = (lo[open_] + hi[open_]) // 2
        kw = {} if alive is None else {"alive": alive[open_]}
        reached = model.expected_purchases(NEXT_ORDER_GRID[mid].astype(float), x[open_], t_x[open_], T[open_], **kw) >= 0.5
        hi[open_[reached]] = mid[reached]
        lo[open_[~reached]] = mid[~reached] + 1
    return np.where(lo < len(NEXT_ORDER_GRID), NEXT_ORDER_GRID[np.minimum(lo, len(NEXT_ORDER_GRID) - 1)], np.nan)


def _frame(con, fcfg: FeatureConfig, cutoffs, events: str, with_label: bool,
           warm: Btyd | None = None, fixed: Btyd | None = None, described=None,
           horizons=(90,)) -> tuple[pd.DataFrame, Btyd]:
    """Snapshot features + purchase history + BTYD columns (fitted per cutoff, each fit starting
    from the one before) [+ the label]; and the last fit. Only the last cutoff gets every count
    model: the others need the BG/NBD features alone (Pareto/NBD is slow to fit and no input).
    ``fixed``: a fit whose count models other than BG/NBD are used as they are; ``described``:
    the count models described in full (default: all; BG/NBD's feature columns always);
    ``horizons``: the expected-purchase horizons described."""
    parts, b = [], warm
    for c in cutoffs:
        h = warehouse.frame(con, history_sql(c, events))
        # without a label, the customers scored are those with a history: read from the frame
        # already made, not from the history query run a second time (3 s a day at 1M customers)
        con.register("_clv_histories", h[["customer_id"]])
        label_sql = (lambda c_: labels.clv_sql(c_, events)) if with_label else \
            (lambda c_: f"SELECT customer_id, DATE '{c_.isoformat()}' AS cutoff FROM _clv_histories")
        try:
            ex = examples(con, fcfg, [c], label_sql, events)
        finally:
            con.unregister("_clv_histories")
        b = Btyd().fit(h, return_share(con, c, events), warm=b or fixed,
                       kinds=tuple(COUNT_MODELS) if c == cutoffs[-1] and fixed is None else ("bg_nbd",))
        if fixed is not None:
            b.counts.update({k: m for k, m in fixed.counts.items() if k not in b.counts})
        ex = ex.merge(h[["customer_id", "historic_value"]], on="customer_id").merge(
            b.describe(h, described, horizons), on="customer_id")
        parts.append(ex)
    return pd.concat(parts, ignore_index=True), b


class ClvModel:
    """What the CLV scores need: which candidate serves the 12-month value (and its regressor when
    it is the learned one), its feature columns, the conformal bands of its interval, the count
    model (``bg_nbd`` or ``pareto_nbd``) behind probability alive, expected purchases and the next
    order, the BTYD fit whose Pareto/NBD parameters scoring keeps, and the expected-purchase
    horizons in days (``clv_horizons_days`` when it was trained)."""

    def __init__(self, served: str, regressor, columns: list[str], bands: dict, outlook: str = "bg_nbd",
                 fit: "Btyd | None" = None, horizons: tuple[int, ...] = (90, 365)):
        self.served, self.regressor, self.columns, self.bands = served, regressor, columns, bands
        self.outlook, self.fit, self.horizons = outlook, fit, tuple(horizons)

    def count_models(self) -> set[str]:
        """The count models whose columns the scores read in full: the outlook's and the served
        one's (the regressor reads BG/NBD's feature columns, which are always made)."""
        return {getattr(self, "outlook", "bg_nbd"), self.served.removesuffix("_gamma_gamma")} & set(COUNT_MODELS)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.served == "gradient_boosting":
            return self.regressor.predict(design(frame, self.columns))
        return frame[f"{self.served.removesuffix('_gamma_gamma')}_clv_12m"].to_numpy(float)


def _outlook_columns(frame: pd.DataFrame) -> set[str]:
    return {c for c in frame.columns if c.startswith(tuple(f"{k}_" for k in COUNT_MODELS))}


def _scale_metrics(metrics: dict, baseline: str) -> None:
    """Each candidate's MAE skill against the naive baseline, in place."""
    naive = metrics[baseline]["mae"]
    for m in metrics.values():
        m[MAIN_METRIC] = 1 - m["mae"] / naive if naive else 0.0


def _serving_fit(con, model: ClvModel, test_fit: Btyd, last: date, events: str) -> Btyd:
    """The fit scoring keeps Pareto/NBD's parameters from: refitted on the whole history when
    Pareto/NBD serves (BG/NBD and Gamma-Gamma are refitted on every scoring day anyway)."""
    if "pareto_nbd" not in model.count_models():
        return test_fit
    h = warehouse.frame(con, history_sql(last, events))
    return Btyd().fit(h, return_share(con, last, events), warm=test_fit)


def train(con, cfg: ModelConfig, fcfg: FeatureConfig, champion=None, events: str = "core.customer_events"):
    """The labelled tier when the history holds 365-day label windows, else the count-model tier
    (the card's ``tier`` and ``notes`` say which and why)."""
    first, last = data_window(con, events)
    try:
        plan = default_plan(cfg, fcfg, first, last, label_days=labels.CLV_DAYS)
    except NotEnoughData as short:
        return _train_counts(con, cfg, champion, events, first, last, str(short))
    return _train_labelled(con, cfg, fcfg, champion, events, plan, last)


def _train_labelled(con, cfg: ModelConfig, fcfg: FeatureConfig, champion, events: str, plan, last: date):
    train_set, fitted = _frame(con, fcfg, plan.train, events, True)
    test_set, test_fit = _frame(con, fcfg, [plan.test], events, True, warm=fitted)
    require(train_set, None, cfg, "CLV training set")
    require(test_set, None, cfg, "CLV test set")
    columns = feature_columns(train_set, {LABEL} | _outlook_columns(train_set))
    left_out = left_out_features(train_set, {LABEL} | _outlook_columns(train_set))
    reg = make_pipeline(preprocessor(columns, scale=False),
                        BoostedRegressor(loss="poisson", max_iter=300, learning_rate=0.05,
                                         l2_regularization=1.0, random_state=cfg.random_state))
    reg.fit(design(train_set, columns), train_set[LABEL].clip(lower=0))
    y = test_set[LABEL].to_numpy(float)
    preds = {BASELINE: test_set["historic_value"].to_numpy(float),
             **{f"{k}_gamma_gamma": test_set[f"{k}_clv_12m"].to_numpy(float) for k in COUNT_MODELS},
             "gradient_boosting": reg.predict(design(test_set, columns))}
    metrics = {n: regression_metrics(y, p) for n, p in preds.items()}
    _scale_metrics(metrics, BASELINE)
    best = min(LEARNED, key=lambda n: metrics[n]["mae"])
    outlook = min(COUNT_MODELS, key=lambda k: metrics[f"{k}_gamma_gamma"]["mae"])
    model = ClvModel(best, reg if best == "gradient_boosting" else None, columns,
                     conformal_bands(preds[best], y), outlook, test_fit, cfg.clv_horizons)
    model.fit = _serving_fit(con, model, test_fit, last, events)
    low, high = interval(model.bands, preds[best])
    metrics[best]["interval_coverage"] = float(np.mean((y >= low) & (y <= high)))
    champion_metric = None
    naive = metrics[BASELINE]["mae"]
    if champion is not None and set(champion[0].columns) <= set(test_set.columns):
        champion_metric = 1 - regression_metrics(y, champion[0].predict(test_set))["mae"] / naive if naive else None
    importance = top_predictors(reg, design(test_set, columns), y, "neg_mean_absolute_error", cfg.random_state)
    newest = (train_set["cutoff"] == max(plan.train)).to_numpy()
    card = {
        "task": TASK, "model": best, "outlook_model": outlook, "tier": "labelled",
        "notes": [f"the history holds 365-day label windows: learned and count models compete on the test "
                  f"cutoff {plan.test}"] + ([f"{len(left_out)} feature(s) without information left out: "
                                            + ", ".join(sorted(left_out))] if left_out else []),
        "left_out_features": left_out,
        "label": "net value (orders − returns) in the 365 days after the cutoff",
        "main_metric": MAIN_METRIC, "baseline": BASELINE,
        "train_cutoffs": [c.isoformat() for c in plan.train], "test_cutoff": plan.test.isoformat(),
        "horizon_days": labels.CLV_DAYS, "horizons_days": list(cfg.clv_horizons), "features": columns,
        "params": simple_params(reg[-1]),
        "train_examples": int(len(train_set)), "test_examples": int(len(test_set)),
        "data_hash": data_hash(train_set[["customer_id", "cutoff", LABEL, *(c for c in columns if c not in DERIVED)]]),
        "metrics": metrics, "challenger_metric": metrics[best][MAIN_METRIC],
        "baseline_metric": metrics[BASELINE][MAIN_METRIC], "champion_metric": champion_metric,
        "importance": importance.to_dict("records"),
        "value_deciles": value_deciles(preds[best], y).to_dict("records"),
        "reference": {"score": reference_bins(model.predict(train_set[newest])),
                      **{f: reference_bins(train_set.loc[newest, f]) for f in importance["feature"]
                         if f in train_set and f != "lead_channel"}},
    }
    return model, card


def outcome_sql(cutoff: date, days: int, events: str = "core.customer_events") -> str:
    """Per customer: purchase days and net value (orders − returns) in the ``days`` after the cutoff."""
    end = day_end(cutoff)
    after = f"event_at >= {end} AND event_at < {end} + INTERVAL {int(days)} DAY"
    return f"""
SELECT customer_id, count(DISTINCT event_at::DATE) FILTER (WHERE event_type = 'order') AS purchases_after,
       (coalesce(sum(value::{MONEY}) FILTER (WHERE event_type = 'order'), 0)
      - coalesce(sum(value::{MONEY}) FILTER (WHERE event_type = 'return'), 0))::DOUBLE AS value_after
FROM {events} WHERE event_type IN ('order', 'return') AND {after} GROUP BY 1"""


def _train_counts(con, cfg: ModelConfig, champion, events: str, first: date, last: date, why: str):
    """The count-model tier: BG/NBD and Pareto/NBD (with Gamma-Gamma) fitted at a cutoff a third
    of the history before its end, measured on the test period after it against "the next period
    repeats the last one", the better served after a refit on the whole history."""
    days = min(labels.CLV_DAYS, (last - first).days // SPLIT_SHARE)
    if days < 1:
        raise NotEnoughData(f"CLV: data from {first} to {last} leaves no test period for the count models")
    cutoff = last - timedelta(days=days)
    h = warehouse.frame(con, history_sql(cutoff, events, historic_days=days))
    try:
        fit = Btyd().fit(h, return_share(con, cutoff, events))
    except NotEnoughData as e:
        raise NotEnoughData(f"{why}; and at {cutoff}, {days} days before the last day, {e}") from None
    test = h.merge(fit.describe(h, None, (days,)), on=["customer_id", "repeat_days", "t_x_days", "age_days",
                                                      "repeat_value_avg"])
    test = test.merge(warehouse.frame(con, outcome_sql(cutoff, days, events)), on="customer_id", how="left")
    test[["purchases_after", "value_after"]] = test[["purchases_after", "value_after"]].fillna(0)
    require(test, None, cfg, "CLV test period")
    y, bought = test["value_after"].to_numpy(float), test["purchases_after"].to_numpy(float)
    preds = {BASELINE: test["historic_value"].to_numpy(float),
             **{f"{k}_gamma_gamma": fit.value(test[f"{k}_expected_purchases_{days}d"], test["expected_value"]).to_numpy()
                for k in COUNT_MODELS}}
    metrics = {n: regression_metrics(y, p) for n, p in preds.items()}
    _scale_metrics(metrics, BASELINE)
    purchases = {k: regression_metrics(bought, test[f"{k}_expected_purchases_{days}d"]) for k in COUNT_MODELS}
    for k, m in purchases.items():
        metrics[f"{k}_gamma_gamma"].update({f"purchases_{n}": v for n, v in m.items() if n != "examples"})
    best = min((f"{k}_gamma_gamma" for k in COUNT_MODELS), key=lambda n: metrics[n]["mae"])
    outlook = min(COUNT_MODELS, key=lambda k: purchases[k]["mae"])
    model = ClvModel(best, None, [], conformal_bands(preds[best], y, scale=labels.CLV_DAYS / days), outlook,
                     fit, cfg.clv_horizons)
    full = warehouse.frame(con, history_sql(last, events))
    model.fit = Btyd().fit(full, return_share(con, last, events), warm=fit)
    low, high = interval(conformal_bands(preds[best], y), preds[best])
    metrics[best]["interval_coverage"] = float(np.mean((y >= low) & (y <= high)))
    champion_metric = None
    if champion is not None and champion[0].regressor is None and champion[0].served in metrics:
        champion_metric = metrics[champion[0].served][MAIN_METRIC]     # the same count model, refitted
    served_12m = model.predict(model.fit.describe(full, model.count_models(), ()))
    repeat = int((h["repeat_days"] > 0).sum())
    card = {
        "task": TASK, "model": best, "outlook_model": outlook, "tier": "count_models",
        "notes": [f"no 365-day label window yet ({why}): CLV from the count models, which need none",
                  f"chosen on a time split inside the history: fitted on {len(h):,} purchase histories up to "
                  f"{cutoff} ({repeat:,} repeat buyers), measured on the {days} days after it; then refitted on "
                  f"all {len(full):,} histories up to {last}",
                  f"the 12-month interval is the test period's conformal band scaled by 365 / {days}"],
        "label": f"net value (orders − returns) in the {days} days after the split cutoff",
        "main_metric": MAIN_METRIC, "baseline": BASELINE,
        "train_cutoffs": [cutoff.isoformat()], "test_cutoff": cutoff.isoformat(),
        "horizon_days": days, "horizons_days": list(cfg.clv_horizons), "features": [],
        "params": {f"{k}_{p}": round(float(v), 6) for k, m in model.fit.counts.items() for p, v in vars(m).items()},
        "train_examples": int(len(h)), "test_examples": int(len(test)),
        "data_hash": data_hash(test[["customer_id", "repeat_days", "t_x_days", "age_days", "purchases_after",
                                     "value_after"]]),
        "metrics": metrics, "challenger_metric": metrics[best][MAIN_METRIC],
        "baseline_metric": metrics[BASELINE][MAIN_METRIC], "champion_metric": champion_metric,
        "importance": [],
        "value_deciles": value_deciles(preds[best], y).to_dict("records"),
        "reference": {"score": reference_bins(served_12m)},
    }
    return model, card


eligible = has_ordered


def scoring_frame(con, fcfg: FeatureConfig, day: date, events: str = "core.customer_events",
                  model: "ClvModel | None" = None) -> pd.DataFrame:
    """The scoring day's features and BTYD columns. BG/NBD and Gamma-Gamma are refitted on the day
    (seconds); Pareto/NBD keeps the parameters of the model's fit, made on the whole history of its
    training day (a refit costs about 15 s per day on 10,000 customers). Only the count models
    the scores come from are described: Pareto/NBD's hypergeometric functions took 10 s a day at
    1M customers when BG/NBD was the outlook."""
    return _frame(con, fcfg, [day], events, False, fixed=getattr(model, "fit", None),
                  described=None if model is None else model.count_models(),
                  horizons=getattr(model, "horizons", (90, 365)) if model is not None else DEFAULT_CLV_HORIZONS)[0]


def purchase_columns(model: "ClvModel") -> list[str]:
    """The scores' expected-purchase columns: one per horizon of the model."""
    return [f"expected_purchases_{n}d" for n in sorted(set(getattr(model, "horizons", (90, 365))))]


def score(model: ClvModel, card: dict, frame: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """Per customer: probability alive, expected purchases per horizon, 12-month CLV with its
    interval, next order."""
    frame = eligible(frame)
    pred = model.predict(frame) if len(frame) else np.array([])
    low, high = interval(model.bands, pred)
    cutoff = pd.to_datetime(frame["cutoff"]) if len(frame) else pd.Series(dtype="datetime64[ns]")
    k = getattr(model, "outlook", "bg_nbd")
    out = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(),
                        "probability_alive": frame[f"{k}_probability_alive"].to_numpy(float).round(6)})
    for c in purchase_columns(model):
        out[c] = frame[f"{k}_{c}"].to_numpy(float).round(4)
    out["clv_12m"], out["clv_12m_low"], out["clv_12m_high"] = pred.round(2), low.round(2), high.round(2)
    out["expected_next_order_date"] = (cutoff + pd.to_timedelta(frame[f"{k}_days_to_next_order"], unit="D")).dt.date \
        .to_numpy() if len(frame) else np.array([], dtype=object)
    return out
