"""Lifecycle stages as a state machine, and RFM segments, as of the end of a day.

Lifecycle: every customer moves through ``lead`` (known, never bought) → ``first_time_buyer`` →
``repeat_buyer`` → ``loyal`` → ``at_risk`` → ``churned``, and back to an active stage on the next
order (a reactivation). A stage is a function of the customer's orders at an instant: how many,
how many in the loyalty window, and how long since the last one. It can only change at an order or
when a time limit passes after one (``at_risk_days``, ``churn_days``, an order leaving the loyalty
window), so those instants are the only ones evaluated: exact transition times without a day-by-day
scan. Thresholds in ``config/segments.yaml``.

RFM: recency, frequency and monetary value over the window, each scored 1–5 by percentile among
the customers who bought in it (ties share a score), then named by the common R × FM grid.

Everything reads ``core.customer_events`` with ``known_at`` before the end of the day, so the
segments of a day never change when later events arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from crm_platform.features.snapshots import exact_sum, population_sql
from crm_platform.core.days import day_end
from crm_platform.core.settings import DEFAULT_SEGMENTS, read_config
from crm_platform.core.warehouse import replace_partition
from crm_platform.contracts.vocabularies import ACTIVE

# the R x FM grid, first match wins (R and FM are 1..5; FM = round((F + M) / 2))
RFM_GRID = """CASE
    WHEN r >= 4 AND fm >= 4 THEN 'champions'
    WHEN r >= 4 AND fm >= 2 THEN 'potential_loyalists'
    WHEN r = 5 THEN 'new_customers'
    WHEN r = 4 THEN 'promising'
    WHEN r = 3 AND fm >= 4 THEN 'loyal'
    WHEN r = 3 AND fm = 3 THEN 'need_attention'
    WHEN r = 3 THEN 'about_to_sleep'
    WHEN fm = 5 THEN 'cant_lose'
    WHEN fm >= 3 THEN 'at_risk'
    WHEN r = 2 THEN 'hibernating'
    ELSE 'lost' END"""


class SegmentConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SegmentConfig:
    at_risk_days: int
    churn_days: int
    loyal_min_orders: int
    loyal_window_days: int
    rfm_window_days: int
    rfm_min_customers: int


def load_config(path: str | Path = DEFAULT_SEGMENTS) -> SegmentConfig:
    cfg = read_config(path, lambda raw: SegmentConfig(
        int(raw["lifecycle"]["at_risk_days"]), int(raw["lifecycle"]["churn_days"]),
        int(raw["lifecycle"]["loyal_min_orders"]), int(raw["lifecycle"]["loyal_window_days"]),
        int(raw["rfm"]["window_days"]), int(raw["rfm"]["min_customers"])), SegmentConfigError)
    if not 0 < cfg.at_risk_days < cfg.churn_days:
        raise SegmentConfigError(f"{path}: lifecycle needs 0 < at_risk_days < churn_days")
    if cfg.loyal_min_orders < 2 or cfg.loyal_window_days < 1 or cfg.rfm_window_days < 1:
        raise SegmentConfigError(f"{path}: loyal_min_orders >= 2 and positive windows, please")
    return cfg


def _reasons(cfg: SegmentConfig) -> dict[str, str]:
    """Why a stage can change at an instant, by kind."""
    return {"first": "first seen", "order": "order", "at_risk": f"no order for {cfg.at_risk_days} days",
            "churn": f"no order for {cfg.churn_days} days",
            "loyal": f"an order left the {cfg.loyal_window_days}-day loyalty window"}


def transitions_sql(cfg: SegmentConfig, day: date, events: str = "core.customer_events") -> str:
    """Every lifecycle transition up to the end of ``day``, from what was known by then."""
    end = day_end(day)
    reasons = _reasons(cfg)
    bits = {k: 1 << i for i, k in enumerate(reasons)}
    # the reasons of an instant travel as one bit each and become text only on the transitions,
    # joined in the order of their text
    reason = ", ".join(f"CASE WHEN why & {bits[k]} <> 0 THEN '{text}' END" for k, text in
                       sorted(reasons.items(), key=lambda kv: kv[1]))
    return f"""
WITH orders AS (SELECT customer_id, event_at AS t FROM {events}
                WHERE event_type = 'order' AND known_at < {end}),
-- the instants an order can change a stage at: at risk and churned only after the customer's last
-- order before a long enough gap (about a quarter of the orders at 1M customers), and the loyalty
-- window's end only when fewer than the loyal minimum orders are left in it
gaps AS (
    SELECT customer_id, t, lead(t) OVER w AS next_t,
           count(*) OVER (w RANGE BETWEEN CURRENT ROW AND INTERVAL {cfg.loyal_window_days} DAY FOLLOWING)
         - count(*) OVER (w RANGE BETWEEN CURRENT ROW AND CURRENT ROW) AS orders_after_in_window
    FROM orders WINDOW w AS (PARTITION BY customer_id ORDER BY t)),
pop AS ({population_sql(end, events)}),
instants AS (
    SELECT customer_id, instant, bit_or(why) AS why FROM (
        SELECT customer_id, first_seen_at AS instant, {bits['first']} AS why FROM pop
        UNION ALL SELECT customer_id, t, {bits['order']} FROM orders
        UNION ALL SELECT customer_id, t + INTERVAL {cfg.at_risk_days} DAY, {bits['at_risk']} FROM gaps
                  WHERE next_t IS NULL OR next_t > t + INTERVAL {cfg.at_risk_days} DAY
        UNION ALL SELECT customer_id, t + INTERVAL {cfg.churn_days} DAY, {bits['churn']} FROM gaps
                  WHERE next_t IS NULL OR next_t > t + INTERVAL {cfg.churn_days} DAY
        UNION ALL SELECT customer_id, t + INTERVAL {cfg.loyal_window_days} DAY, {bits['loyal']} FROM gaps
                  WHERE orders_after_in_window < {cfg.loyal_min_orders})
    WHERE instant < {end} GROUP BY 1, 2),
-- per instant: the customer's orders up to and including it, the last of them, and those in the
-- loyalty window before it (o.t > instant - window), counted by windows over one time line of
-- orders and instants rather than by joining every instant to every earlier order
line AS (
    SELECT customer_id, t, t AS order_t, NULL AS why FROM orders
    UNION ALL SELECT customer_id, instant, NULL, why FROM instants),
counted AS (
    SELECT customer_id, t, why, order_t,
           count(order_t) OVER (PARTITION BY customer_id ORDER BY t
                                RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS orders,
           max(order_t) OVER (PARTITION BY customer_id ORDER BY t
                              RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS last_order_at,
           count(order_t) OVER (PARTITION BY customer_id ORDER BY t RANGE BETWEEN
               INTERVAL {cfg.loyal_window_days} DAY - INTERVAL 1 MICROSECOND PRECEDING AND CURRENT ROW) AS orders_in_window
    FROM line),
state AS (SELECT customer_id, t AS instant, why, orders, last_order_at, orders_in_window FROM counted
          WHERE order_t IS NULL),
staged AS (
    SELECT customer_id, instant, why, orders, CASE
        WHEN orders = 0 THEN 'lead'
        WHEN instant >= last_order_at + INTERVAL {cfg.churn_days} DAY THEN 'churned'
        WHEN instant >= last_order_at + INTERVAL {cfg.at_risk_days} DAY THEN 'at_risk'
        WHEN orders_in_window >= {cfg.loyal_min_orders} THEN 'loyal'
        WHEN orders >= 2 THEN 'repeat_buyer'
        ELSE 'first_time_buyer' END AS stage
    FROM state),
changes AS (
    SELECT *, lag(stage) OVER (PARTITION BY customer_id ORDER BY instant) AS from_stage FROM staged)
SELECT customer_id, instant AS transition_at, from_stage, stage AS to_stage, concat_ws('; ', {reason}) AS reason,
       orders AS orders_so_far,
       coalesce(from_stage IN ('at_risk', 'churned') AND stage IN {ACTIVE}, false) AS is_reactivation
FROM changes WHERE from_stage IS DISTINCT FROM stage"""


def rfm_sql(cfg: SegmentConfig, day: date, events: str = "core.customer_events") -> str:
    """R, F, M scores and the named segment of every customer who ordered in the window."""
    end = day_end(day)
    return f"""
WITH o AS (
    SELECT customer_id, date_diff('day', max(event_at)::DATE, DATE '{day.isoformat()}') AS recency_days,
           count(*) AS frequency, {exact_sum('value', empty=None)} AS monetary
    FROM {events} WHERE event_type = 'order' AND known_at < {end}
      AND event_at >= {end} - INTERVAL {cfg.rfm_window_days} DAY
    GROUP BY 1),
scored AS (
    SELECT *, least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY recency_days DESC)))::INT AS r,
              least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY frequency)))::INT AS f,
              least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY monetary)))::INT AS m
    FROM o)
SELECT customer_id, recency_days, frequency, monetary, r AS rfm_r, f AS rfm_f, m AS rfm_m,
       {RFM_GRID.replace('fm', 'round((f + m) / 2)::INT')} AS rfm_segment
FROM scored"""


def build_day(con, cfg: SegmentConfig, day: date, events: str = "core.customer_events",
              keep_history: bool = False) -> dict:
    """Replace the day's rows of marts.lifecycle_transitions (transitions on that day) and
    marts.customer_segments (every customer's stage and RFM segment at its end). ``keep_history``:
    leave every transition up to the day's end in the temporary table ``_transitions`` (the KPIs
    of the same day read it; the caller drops it)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _transitions AS {transitions_sql(cfg, day, events)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rfm AS {rfm_sql(cfg, day, events)}")
    buyers = con.execute("SELECT count(*) FROM _rfm").fetchall()[0][0]
    enough = buyers >= cfg.rfm_min_customers
    note = "NULL" if enough else (f"'too few buyers in the last {cfg.rfm_window_days} days ({buyers} < "
                                  f"{cfg.rfm_min_customers}) for RFM quintiles'")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _segments AS
        WITH cur AS (SELECT customer_id, arg_max(to_stage, transition_at) AS lifecycle_stage,
                            max(transition_at) AS stage_since FROM _transitions GROUP BY 1)
        SELECT DATE '{day.isoformat()}' AS snapshot_date, c.customer_id, c.lifecycle_stage, c.stage_since,
               r.recency_days, r.frequency, r.monetary,
               {'r.rfm_r, r.rfm_f, r.rfm_m, r.rfm_segment' if enough else
                'NULL::INT AS rfm_r, NULL::INT AS rfm_f, NULL::INT AS rfm_m, NULL::VARCHAR AS rfm_segment'},
               CASE WHEN r.customer_id IS NULL THEN 'no order in the last {cfg.rfm_window_days} days'
                    ELSE {note} END AS rfm_note
        FROM cur c LEFT JOIN _rfm r USING (customer_id)""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _day_transitions AS
        SELECT * FROM _transitions WHERE transition_at >= DATE '{day.isoformat()}' AND transition_at < {day_end(day)}""")
    replace_partition(con, "marts.lifecycle_transitions", "_day_transitions", "transition_at::DATE", day)
    replace_partition(con, "marts.customer_segments", "_segments", "snapshot_date", day)
    out = {
        "customers": con.execute("SELECT count(*) FROM _segments").fetchall()[0][0],
        "transitions_that_day": con.execute("SELECT count(*) FROM _day_transitions").fetchall()[0][0],
        "stages": dict(con.execute("SELECT lifecycle_stage, count(*) FROM _segments GROUP BY 1 ORDER BY 2 DESC").fetchall()),
        "rfm_segments": dict(con.execute("SELECT coalesce(rfm_segment, rfm_note), count(*) FROM _segments "
                                         "GROUP BY 1 ORDER BY 2 DESC").fetchall()),
        "rfm_buyers": int(buyers), "rfm_computed": enough,
    }
    for t in ("_rfm", "_segments", "_day_transitions") + (() if keep_history else ("_transitions",)):
        con.execute(f"DROP TABLE {t}")
    return out

