"""Next-best-offer: which product categories a customer does not own yet are they most likely to
buy next?

One row per (customer, cutoff, candidate category): every category the customer does not keep
(bought it more often than returned it) at the cutoff. Features: the category, its popularity
over the last 90 days, how strongly it is bought together with the customer's categories
(co-purchase rate), the customer's web views of it (ever, and with carts in the last 90 days), and a few of the
customer's snapshot features. Label: the customer buys that category in the horizon.

A gradient-boosting classifier ranks the candidates; the naive baseline ranks them by popularity.
Both are measured by **hit-rate@3** on the later test cutoff: of the customers who bought a new
category in the horizon, the share for whom one of the top three offers was such a category.
A category the customer returned something from in the last ``suppress_days`` is never offered.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from sklearn.pipeline import make_pipeline

from crm_platform.core import warehouse
from crm_platform.features.snapshots import FeatureConfig
from crm_platform.core.days import day_end
from crm_platform.ml import ModelConfig, NotEnoughData
from crm_platform.ml.boosting import BoostedClassifier
from crm_platform.ml.evaluate import reference_bins, top_predictors
from crm_platform.ml.training import (data_hash, data_window, default_plan, design, preprocessor, require,
                                      simple_params, snapshot, uninformative)

TASK = "next_best_offer"
SCORE = "offer_probability"
LABEL = "bought"
BASELINE = "popularity"
MAIN_METRIC = "hit_rate_at_3"
TOP = 3
SUPPRESS_DAYS = 180
CUSTOMER_FEATURES = ("orders_total", "recency_days", "frequency_90d", "frequency_365d", "category_breadth",
                     "avg_order_value", "engagement_score", "web_sessions_90d")
CANDIDATE_FEATURES = ("category", "popularity_90d", "co_purchase_rate", "views_total", "views_90d", "carts_90d",
                      "days_since_viewed", "returned_before")


def candidates_sql(cutoff: date, horizon_days: int, events: str = "core.customer_events") -> str:
    """Candidate (customer, category) rows of one cutoff with their features, the suppression
    flag and the label."""
    end = day_end(cutoff)
    known = f"event_at < {end} AND known_at < {end}"
    return f"""
WITH orders AS (SELECT customer_id, event_at, known_at, unnest(categories) AS category FROM {events}
                WHERE event_type = 'order' AND categories IS NOT NULL),
cats AS (SELECT DISTINCT category FROM orders WHERE {known}),
b AS (SELECT customer_id, category, count(*) AS n FROM orders WHERE {known} GROUP BY 1, 2),
r AS (SELECT customer_id, category, count(*) AS n, max(event_at) AS last_return FROM {events}
      WHERE event_type = 'return' AND category IS NOT NULL AND {known} GROUP BY 1, 2),
kept AS (SELECT b.customer_id, b.category FROM b LEFT JOIN r USING (customer_id, category)
         WHERE b.n > coalesce(r.n, 0)),
customers AS (SELECT DISTINCT customer_id FROM b),
popularity AS (SELECT category, count(DISTINCT customer_id) / (SELECT count(*) FROM customers) AS popularity_90d
               FROM orders WHERE {known} AND event_at >= {end} - INTERVAL 90 DAY GROUP BY 1),
-- co-purchase rates from the distinct sets of kept categories (a few hundred) with their customer
-- counts, not from every customer's pairs of categories
owned AS (SELECT customer_id, list(category ORDER BY category) AS kept_set FROM kept GROUP BY 1),
sets AS (SELECT kept_set, unnest(kept_set) AS category, count(*) AS n FROM owned GROUP BY 1),
pairs AS (SELECT a.category AS owned, c.category AS other,
                 sum(a.n) / any_value(na.n) AS rate
          FROM sets a JOIN sets c ON a.kept_set = c.kept_set AND a.category <> c.category
          JOIN (SELECT category, sum(n) AS n FROM sets GROUP BY 1) na ON na.category = a.category
          GROUP BY 1, 2),
set_rates AS (SELECT s.kept_set, p.other AS category, max(p.rate) AS co_purchase_rate
              FROM (SELECT DISTINCT kept_set, category FROM sets) s JOIN pairs p ON p.owned = s.category GROUP BY 1, 2),
web AS (SELECT customer_id, category, count(*) AS views_total,
               count(*) FILTER (WHERE event_type = 'web_product_view' AND event_at >= {end} - INTERVAL 90 DAY) AS views_90d,
               count(*) FILTER (WHERE event_type = 'web_add_to_cart' AND event_at >= {end} - INTERVAL 90 DAY) AS carts_90d,
               date_diff('day', max(event_at)::DATE, DATE '{cutoff.isoformat()}') AS days_since_viewed
        FROM {events} WHERE event_type IN ('web_product_view', 'web_add_to_cart') AND category IS NOT NULL
          AND {known} GROUP BY 1, 2),
cand AS (SELECT k.customer_id, c.category FROM customers k CROSS JOIN cats c
         ANTI JOIN kept USING (customer_id, category)),
co AS (SELECT cand.customer_id, cand.category, r.co_purchase_rate
       FROM cand JOIN owned USING (customer_id) JOIN set_rates r USING (kept_set, category)),
future AS (SELECT DISTINCT customer_id, category FROM orders
           WHERE event_at >= {end} AND event_at < {end} + INTERVAL {int(horizon_days)} DAY)
SELECT cand.customer_id, DATE '{cutoff.isoformat()}' AS cutoff, cand.category,
       coalesce(pop.popularity_90d, 0) AS popularity_90d, coalesce(co.co_purchase_rate, 0) AS co_purchase_rate,
       coalesce(w.views_total, 0) AS views_total, coalesce(w.views_90d, 0) AS views_90d, coalesce(w.carts_90d, 0) AS carts_90d, w.days_since_viewed,
       (r.n IS NOT NULL)::INT AS returned_before,
       coalesce(r.last_return >= {end} - INTERVAL {SUPPRESS_DAYS} DAY, false) AS suppressed,
       (f.customer_id IS NOT NULL)::INT AS bought
FROM cand LEFT JOIN popularity pop USING (category) LEFT JOIN co USING (customer_id, category)
LEFT JOIN web w USING (customer_id, category) LEFT JOIN r USING (customer_id, category)
LEFT JOIN future f USING (customer_id, category)"""


def frame(con, fcfg: FeatureConfig, cutoff: date, horizon_days: int,
          events: str = "core.customer_events") -> pd.DataFrame:
    """Candidate rows of one cutoff joined to the customer's snapshot features."""
    cols = ", ".join(f"f.{c}" for c in CUSTOMER_FEATURES)
    return warehouse.frame(con, f"SELECT c.*, {cols} FROM ({candidates_sql(cutoff, horizon_days, events)}) c "
                                f"JOIN {snapshot(con, fcfg, cutoff, events)} f USING (customer_id) "
                                f"ORDER BY c.customer_id, c.category")


def columns() -> list[str]:
    return list(CANDIDATE_FEATURES) + list(CUSTOMER_FEATURES)


def rank(rows: pd.DataFrame, score) -> pd.DataFrame:
    """The unsuppressed rows' customer, category (and label) with ``score`` and its rank within
    the customer (1 = best; equal scores in row order)."""
    keep = ~rows["suppressed"].to_numpy(bool)
    out = rows.loc[keep, [c for c in ("customer_id", "category", LABEL) if c in rows]]
    s = np.asarray(score, float)[keep]
    # one stable sort by (customer, -score) instead of a groupby rank over the wide frame: at 1M
    # customers' 3.8M candidate rows 7.5 -> 1.5 s
    customer = pd.factorize(out["customer_id"])[0]
    order = np.lexsort((-s, customer))
    grouped = customer[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    ranks = np.empty(len(s), dtype=int)
    ranks[order] = np.arange(len(s)) - np.repeat(starts, np.diff(np.r_[starts, len(s)])) + 1
    return out.assign(score=s, rank=ranks)


def hit_rate(ranked: pd.DataFrame, k: int = TOP) -> tuple[float, int]:
    """Share of the customers who bought a new category for whom one of the top k was one; and
    how many such customers there were."""
    buyers = ranked.groupby("customer_id")["bought"].max()
    buyers = buyers[buyers > 0].index
    if len(buyers) == 0:
        return 0.0, 0
    top = ranked[(ranked["rank"] <= k) & ranked["customer_id"].isin(buyers)]
    return float(top.groupby("customer_id")["bought"].max().reindex(buyers, fill_value=0).mean()), int(len(buyers))


def categories_of(cfg_rows: pd.DataFrame) -> list[str]:
    return sorted(cfg_rows["category"].dropna().unique().tolist())


def train(con, cfg: ModelConfig, fcfg: FeatureConfig, champion=None, events: str = "core.customer_events"):
    first, last = data_window(con, events)
    plan = default_plan(cfg, fcfg, first, last)
    train_set = pd.concat([frame(con, fcfg, c, cfg.horizon_days, events) for c in plan.train], ignore_index=True)
    test_set = frame(con, fcfg, plan.test, cfg.horizon_days, events)
    require(train_set, LABEL, cfg, "next-best-offer training set")
    require(test_set, LABEL, cfg, "next-best-offer test set")
    # the ranking within a customer is what counts: learn which category is bought, from the
    # customers who bought a new one (who buys at all is the churn model's question)
    buyers = train_set[train_set.groupby(["customer_id", "cutoff"])[LABEL].transform("max") > 0]
    # a source the company does not have leaves its features empty: they teach nothing
    cols = [c for c in columns() if c not in uninformative(buyers, columns())]
    model = make_pipeline(preprocessor(cols, scale=False, categorical=("category",)),
                          BoostedClassifier(max_iter=200, learning_rate=0.05,
                                            l2_regularization=1.0, random_state=cfg.random_state))
    model.fit(design(buyers, cols, categorical=("category",)), buyers[LABEL])
    X = design(test_set, cols, categorical=("category",))
    p = model.predict_proba(X)[:, 1]
    metrics = {}
    for name, s in (("popularity", test_set["popularity_90d"].to_numpy(float)), ("gradient_boosting", p)):
        h3, buyers = hit_rate(rank(test_set, s), 3)
        h1, _ = hit_rate(rank(test_set, s), 1)
        metrics[name] = {"hit_rate_at_3": h3, "hit_rate_at_1": h1, "buyers_of_new_categories": buyers,
                         "candidate_rows": int(len(test_set))}
    if metrics["gradient_boosting"]["buyers_of_new_categories"] < cfg.min_positives:
        raise NotEnoughData(f"next-best-offer test set: {metrics['gradient_boosting']['buyers_of_new_categories']} "
                            f"customers bought a new category, fewer than the {cfg.min_positives} required")
    champion_metric = None
    if champion is not None:
        champion_metric = hit_rate(rank(test_set, champion[0].predict_proba(X)[:, 1]), TOP)[0]
    importance = top_predictors(model, X, test_set[LABEL].to_numpy(), "roc_auc", cfg.random_state)
    newest = (train_set["cutoff"] == max(plan.train)).to_numpy()
    card = {
        "task": TASK, "model": "gradient_boosting", "label": f"buys a category it does not own in the "
                                                             f"{cfg.horizon_days} days after the cutoff",
        "main_metric": MAIN_METRIC, "baseline": BASELINE, "categories": categories_of(train_set),
        "train_cutoffs": [c.isoformat() for c in plan.train], "test_cutoff": plan.test.isoformat(),
        "horizon_days": cfg.horizon_days, "features": cols, "suppress_days": SUPPRESS_DAYS,
        "params": simple_params(model[-1]),
        "train_examples": int(len(train_set)), "test_examples": int(len(test_set)), "data_hash": data_hash(train_set),
        "metrics": metrics, "challenger_metric": metrics["gradient_boosting"][MAIN_METRIC],
        "baseline_metric": metrics[BASELINE][MAIN_METRIC], "champion_metric": champion_metric,
        "importance": importance.to_dict("records"),
        # the scores compared later are the offers made: the top three of each customer
        "reference": {"score": reference_bins(_offers(model, train_set[newest], cols)["score"]),
                      # per-category constants (popularity, co-purchase rate) move in steps: not drift
                      **{f: reference_bins(train_set.loc[newest, f]) for f in importance["feature"]
                         if f in CUSTOMER_FEATURES or f.startswith(("views", "carts", "days_since"))}},
    }
    return model, card


# candidate rows the model input is built for at a time: the input of millions of rows at once
# would be a second copy of the frame (and the preprocessor's output a third)
PREDICT_ROWS = 250_000


def predictions(model, rows: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """The model's probability of every candidate row, ``PREDICT_ROWS`` rows at a time."""
    p = [model.predict_proba(design(rows.iloc[i:i + PREDICT_ROWS], cols, categorical=("category",)))[:, 1]
         for i in range(0, len(rows), PREDICT_ROWS)]
    return np.concatenate(p) if p else np.array([])


def _offers(model, rows: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    ranked = rank(rows, predictions(model, rows, cols))
    return ranked[ranked["rank"] <= TOP]


def scoring_frame(con, fcfg: FeatureConfig, day: date, events: str = "core.customer_events",
                  model=None) -> pd.DataFrame:
    return frame(con, fcfg, day, 1, events)


def eligible(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per customer the offers are for: customers with an order and an unsuppressed candidate."""
    return rows[~rows["suppressed"].astype(bool)].drop_duplicates("customer_id")


def score(model, card: dict, rows: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """customer_id, offer_rank (1..3), category, offer_probability, suppressed_categories."""
    if rows.empty:
        return pd.DataFrame(columns=["customer_id", "offer_rank", "category", "offer_probability",
                                     "suppressed_categories"])
    top = _offers(model, rows, card["features"]).sort_values(["customer_id", "rank"])
    # "a, b" per customer: strings summed in sorted order (a Python join per customer took 5 s at 1M)
    held = rows.loc[rows["suppressed"].astype(bool), ["customer_id", "category"]].sort_values(["customer_id", "category"])
    suppressed = (held["category"] + ", ").groupby(held["customer_id"]).sum().str[:-2]
    return pd.DataFrame({"customer_id": top["customer_id"].to_numpy(), "offer_rank": top["rank"].to_numpy(),
                         "category": top["category"].to_numpy(), "offer_probability": top["score"].round(6).to_numpy(),
                         "suppressed_categories": top["customer_id"].map(suppressed).to_numpy()})
