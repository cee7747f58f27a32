"""Labels from the future of a cutoff, and the cutoff plan that keeps them out of training.

A training row is (customer, cutoff): the features of the snapshot at the end of the cutoff day
(``features.customer_features``) and a label computed only from what happened *after* it:

* churn: the customer (acquired by the cutoff) places no order in the ``horizon_days`` after it;
* clv_12m: net value (orders − returns) in the 365 days after it;
* cross_sell: product categories bought in the horizon that the customer had never bought before;
* lead_conversion: an open sales lead at the cutoff converts within the horizon.

A label needs its whole horizon observed: a cutoff whose horizon reaches past the newest event
is refused. The test cutoff must lie later than every training cutoff plus the horizon, so no
training label overlaps the test period; ``plan_cutoffs`` refuses any other plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from crm_platform.features.snapshots import exact_sum
from crm_platform.core.days import day_end

CLV_DAYS = 365


class LeakageError(ValueError):
    """A cutoff plan that would let a training label see the test period, or a label whose
    horizon is not observed yet."""


@dataclass(frozen=True)
class CutoffPlan:
    train: tuple[date, ...]
    test: date
    horizon_days: int


def plan_cutoffs(train: list[date], test: date, horizon_days: int, data_end: date,
                 label_days: int | None = None) -> CutoffPlan:
    """Check and return a cutoff plan. ``label_days``: the longest label window (default the
    horizon; 365 when the plan serves CLV)."""
    span = max(horizon_days, label_days or horizon_days)
    if not train:
        raise LeakageError("no training cutoff")
    if horizon_days < 1:
        raise LeakageError(f"horizon must be at least a day, not {horizon_days}")
    late = [c for c in train if c + timedelta(days=span) >= test]
    if late:
        raise LeakageError(f"training cutoff(s) {', '.join(map(str, sorted(late)))} plus the {span}-day label "
                           f"window reach the test cutoff {test}: their labels would see the test period")
    if test + timedelta(days=span) > data_end:
        raise LeakageError(f"the test cutoff {test} plus {span} days passes the last day with data ({data_end}): "
                           f"its labels are not observed yet")
    return CutoffPlan(tuple(sorted(train)), test, horizon_days)


def churn_sql(cutoff: date, horizon_days: int, events: str = "core.customer_events") -> str:
    """customer_id, churned (1 = no order in the horizon) for customers with an order by the cutoff."""
    end = day_end(cutoff)
    return f"""
SELECT customer_id, DATE '{cutoff.isoformat()}' AS cutoff,
       (count(*) FILTER (WHERE event_at >= {end} AND event_at < {end} + INTERVAL {int(horizon_days)} DAY) = 0)::INT AS churned
FROM {events} WHERE event_type = 'order'
GROUP BY 1 HAVING count(*) FILTER (WHERE event_at < {end} AND known_at < {end}) > 0"""


def clv_sql(cutoff: date, events: str = "core.customer_events") -> str:
    """customer_id, clv_12m (orders − returns in the 365 days after the cutoff) for customers
    with an order by the cutoff."""
    end = day_end(cutoff)
    after = f"event_at >= {end} AND event_at < {end} + INTERVAL {CLV_DAYS} DAY"
    return f"""
SELECT customer_id, DATE '{cutoff.isoformat()}' AS cutoff,
       {exact_sum('value', f"event_type = 'order' AND {after}")}
     - {exact_sum('value', f"event_type = 'return' AND {after}")} AS clv_12m
FROM {events} WHERE event_type IN ('order', 'return')
GROUP BY 1 HAVING count(*) FILTER (WHERE event_type = 'order' AND event_at < {end} AND known_at < {end}) > 0"""


def cross_sell_sql(cutoff: date, horizon_days: int, events: str = "core.customer_events") -> str:
    """customer_id, new_categories (bought in the horizon, never before the cutoff) for customers
    with an order by the cutoff."""
    end = day_end(cutoff)
    return f"""
WITH cats AS (SELECT customer_id, event_at, known_at, unnest(categories) AS category
              FROM {events} WHERE event_type = 'order' AND categories IS NOT NULL),
before AS (SELECT DISTINCT customer_id, category FROM cats WHERE event_at < {end} AND known_at < {end}),
after AS (SELECT DISTINCT customer_id, category FROM cats
          WHERE event_at >= {end} AND event_at < {end} + INTERVAL {int(horizon_days)} DAY)
SELECT b.customer_id, DATE '{cutoff.isoformat()}' AS cutoff,
       coalesce(list_sort(list(a.category) FILTER (WHERE a.category IS NOT NULL)), []) AS new_categories
FROM (SELECT DISTINCT customer_id FROM before) b
LEFT JOIN (SELECT * FROM after ANTI JOIN before USING (customer_id, category)) a USING (customer_id)
GROUP BY 1, 2"""


def lead_conversion_sql(cutoff: date, horizon_days: int, events: str = "core.customer_events") -> str:
    """lead_id, customer_id, the lead's source channel, deal value and age in days, and converted
    (within the horizon) for the sales leads open at the cutoff."""
    end = day_end(cutoff)
    return f"""
SELECT source_record_id AS lead_id, any_value(customer_id) AS customer_id, DATE '{cutoff.isoformat()}' AS cutoff,
       arg_min(channel, event_at) AS lead_source, arg_min(value, event_at) AS lead_value,
       date_diff('day', min(event_at)::DATE, DATE '{cutoff.isoformat()}') AS lead_age_days,
       (count(*) FILTER (WHERE event_type = 'lead_converted' AND event_at >= {end}
                         AND event_at < {end} + INTERVAL {int(horizon_days)} DAY) > 0)::INT AS converted
FROM {events} WHERE event_type IN ('lead_created', 'lead_converted')
GROUP BY 1
HAVING count(*) FILTER (WHERE event_type = 'lead_created' AND event_at < {end} AND known_at < {end}) > 0
   AND count(*) FILTER (WHERE event_type = 'lead_converted' AND event_at < {end}) = 0"""


# churn horizon from the purchase cadence: most repeat orders come within it (a customer quiet
# for longer than 4 in 5 of the shop's order gaps is overdue), in whole months
CADENCE_QUANTILE = 0.8
CADENCE_STEP_DAYS = 30
MIN_CADENCE_GAPS = 100


@dataclass(frozen=True)
class ChurnDefinition:
    horizon_days: int
    source: str          # how the horizon was set, for the model card

    def describe(self) -> dict:
        return {"horizon_days": self.horizon_days, "source": self.source}


def churn_horizon(con, configured: int | None, fallback: int, first: date, last: date,
                  events: str = "core.customer_events") -> ChurnDefinition:
    """The churn horizon: ``configured`` if set; else the ``CADENCE_QUANTILE`` of the days between
    a customer's consecutive order days, rounded up to whole ``CADENCE_STEP_DAYS`` (``fallback``
    with fewer than ``MIN_CADENCE_GAPS`` gaps); at most a third of the history, which must hold a
    training label window, a test label window and a horizon of features before them."""
    if configured is not None:
        return ChurnDefinition(configured, "configured (churn_horizon_days)")
    gaps, q = con.execute(f"""
        WITH d AS (SELECT DISTINCT customer_id, event_at::DATE AS day FROM {events} WHERE event_type = 'order'),
        g AS (SELECT date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day), day) AS gap FROM d)
        SELECT count(gap), quantile_cont(gap, {CADENCE_QUANTILE}) FROM g""").fetchall()[0]
    if gaps < MIN_CADENCE_GAPS:
        days, source = fallback, (f"horizon_days ({fallback}): only {gaps} repeat orders, fewer than the "
                                  f"{MIN_CADENCE_GAPS} a purchase cadence is read from")
    else:
        days = max(CADENCE_STEP_DAYS, -(-int(np.ceil(q)) // CADENCE_STEP_DAYS) * CADENCE_STEP_DAYS)
        source = (f"purchase cadence: {int(CADENCE_QUANTILE * 100)}% of {gaps:,} gaps between a customer's orders "
                  f"are at most {q:.0f} days, rounded up to whole {CADENCE_STEP_DAYS} days")
    room = (last - first).days // 3 // CADENCE_STEP_DAYS * CADENCE_STEP_DAYS
    if days > room >= CADENCE_STEP_DAYS:
        source += f"; shortened from {days} to {room} days, a third of the history from {first} to {last}"
        days = room
    return ChurnDefinition(days, source)
