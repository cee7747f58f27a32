"""KPI marts as of the end of a day: ``marts.kpi_daily`` (one row per KPI and day, long format)
and ``marts.cohort_retention`` (acquisition-month cohorts x months since acquisition).

Everything is computed from ``core.customer_events`` known by the end of the day and the
lifecycle history of ``crm_platform.marts.segments`` as of that day, so a day's KPIs never change when
later events arrive, and a backfill gives the rows each day computed alone would. Rates whose
base is too small to mean anything are not reported: the value is null and ``note`` says why.
Definitions: docs/customer360.md; thresholds in config/segments.yaml (``kpis``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from crm_platform.marts import segments
from crm_platform.marts.attribution import attribution_sql
from crm_platform.features.snapshots import TABLE, exact_sum
from crm_platform.core.days import day_end
from crm_platform.core.settings import DEFAULT_SEGMENTS, read_config
from crm_platform.core.warehouse import replace_partition, table_exists
from crm_platform.contracts.vocabularies import ACTIVE

# decimals KPI values are stored with (far below any business meaning, far above float noise)
DIGITS = 6


@dataclass(frozen=True)
class KpiConfig:
    window_days: int
    support_cost_per_ticket: float
    support_cost_per_escalation: float
    min_base: int
    min_cohort: int
    attribution_lookback_days: int = 30
    min_channel_customers: int = 10


def load_config(path: str | Path = DEFAULT_SEGMENTS) -> KpiConfig:
    cfg = read_config(path, lambda raw: KpiConfig(
        int(raw["window_days"]), float(raw["support_cost_per_ticket"]), float(raw["support_cost_per_escalation"]),
        int(raw["min_base"]), int(raw["min_cohort"]), int(raw.get("attribution_lookback_days", 30)),
        int(raw.get("min_channel_customers", 10))), segments.SegmentConfigError, section="kpis")
    if cfg.window_days < 1 or cfg.min_base < 1 or cfg.min_cohort < 1:
        raise segments.SegmentConfigError(f"{path}: kpis: window and minimum sizes must be positive")
    return cfg


def _stage_at(instant: str) -> str:
    """Each customer's lifecycle stage at ``instant`` from the transition history ``_hist``."""
    return f"""(SELECT customer_id, arg_max(to_stage, transition_at) AS stage FROM _hist
                WHERE transition_at < {instant} GROUP BY 1)"""


def kpi_sql(cfg: KpiConfig, day: date) -> str:
    end = day_end(day)
    start = f"({end} - INTERVAL {cfg.window_days} DAY)"
    w = f"event_at >= {start} AND event_at < {end}"
    active = str(ACTIVE)
    return f"""
WITH ev AS (SELECT * FROM core.customer_events WHERE known_at < {end}),
now_ AS {_stage_at(end)}, before AS {_stage_at(start)},
base AS (
    SELECT
      (SELECT count(*) FROM now_ WHERE stage IN {active}) AS active_now,
      (SELECT count(*) FROM before WHERE stage IN {active} OR stage = 'at_risk') AS churn_base,
      (SELECT count(*) FROM _hist WHERE to_stage = 'churned' AND transition_at >= {start}
         AND transition_at < {end}) AS churned,
      (SELECT count(*) FROM before WHERE stage IN {active}) AS retention_base,
      (SELECT count(*) FROM before b JOIN now_ n USING (customer_id)
         WHERE b.stage IN {active} AND n.stage IN {active}) AS retained,
      (SELECT count(*) FROM before WHERE stage = 'lead') AS leads_before,
      (SELECT count(*) FROM before b JOIN now_ n USING (customer_id)
         WHERE b.stage = 'lead' AND n.stage <> 'lead') AS leads_bought),
win AS (
    SELECT count(*) FILTER (WHERE event_type = 'order' AND {w}) AS orders,
           {exact_sum('value', f"event_type = 'order' AND {w}")} AS revenue,
           count(*) FILTER (WHERE event_type = 'nps_answer' AND {w}) AS answers,
           count(*) FILTER (WHERE event_type = 'nps_answer' AND {w} AND value >= 9) AS promoters,
           count(*) FILTER (WHERE event_type = 'nps_answer' AND {w} AND value <= 6) AS detractors,
           count(*) FILTER (WHERE event_type = 'lead_converted' AND {w}) AS leads_converted
    FROM ev),
-- one pass over the customers: buyers in the window, those of them with a second order ever, and
-- the historic value of everyone who ever ordered
per_customer AS (
    SELECT count(*) FILTER (WHERE window_orders > 0) AS buyers,
           count(*) FILTER (WHERE window_orders > 0 AND orders >= 2) AS repeaters,
           count(*) FILTER (WHERE orders > 0) AS clv_customers,
           {exact_sum('value', 'orders > 0', empty=None)} AS clv_total
    FROM (
        SELECT customer_id, count(*) FILTER (WHERE event_type = 'order') AS orders,
               count(*) FILTER (WHERE event_type = 'order' AND {w}) AS window_orders,
               {exact_sum('value', "event_type = 'order'")} - {exact_sum('value', "event_type = 'return'")}
             - {cfg.support_cost_per_ticket} * count(*) FILTER (WHERE event_type = 'ticket_opened')
             - {cfg.support_cost_per_escalation} * count(*) FILTER (WHERE event_type = 'ticket_closed_escalated') AS value
        FROM ev GROUP BY 1)),
-- sales leads created by the end and not converted before the window, one row per lead record
leads AS (
    SELECT count(*) FILTER (WHERE created) - count(*) FILTER (WHERE converted_before) AS open_leads FROM (
        SELECT source_record_id, bool_or(event_type = 'lead_created') AS created,
               bool_or(event_type = 'lead_converted' AND event_at < {start}) AS converted_before
        FROM ev WHERE event_type IN ('lead_created', 'lead_converted') AND event_at < {end}
          AND source_record_id IS NOT NULL GROUP BY 1)),
k(kpi, numerator, denominator, value) AS (
    SELECT 'active_customers', active_now, NULL, active_now FROM base
    UNION ALL SELECT 'churn_rate', churned, churn_base, churned / nullif(churn_base, 0) FROM base
    UNION ALL SELECT 'retention_rate', retained, retention_base, retained / nullif(retention_base, 0) FROM base
    UNION ALL SELECT 'orders', orders, NULL, orders FROM win
    UNION ALL SELECT 'revenue', revenue, NULL, revenue FROM win
    UNION ALL SELECT 'average_order_value', revenue, orders, revenue / nullif(orders, 0) FROM win
    UNION ALL SELECT 'repeat_purchase_rate', repeaters, buyers, repeaters / nullif(buyers, 0) FROM per_customer
    UNION ALL SELECT 'historic_clv', clv_total, clv_customers, clv_total / nullif(clv_customers, 0) FROM per_customer
    UNION ALL SELECT 'nps', promoters - detractors, answers, 100.0 * (promoters - detractors) / nullif(answers, 0) FROM win
    UNION ALL SELECT 'lead_to_buyer_rate', leads_bought, leads_before, leads_bought / nullif(leads_before, 0) FROM base
    UNION ALL SELECT 'sales_lead_conversion_rate', leads_converted, open_leads,
                     leads_converted / nullif(open_leads, 0) FROM win, leads)
SELECT DATE '{day.isoformat()}' AS kpi_date, kpi, NULL::VARCHAR AS channel, {cfg.window_days} AS window_days,
       CAST(CASE WHEN denominator IS NOT NULL AND denominator < {cfg.min_base} THEN NULL ELSE value END AS DOUBLE) AS value,
       CAST(numerator AS DOUBLE) AS numerator, CAST(denominator AS DOUBLE) AS denominator,
       CASE WHEN denominator IS NOT NULL AND denominator < {cfg.min_base}
            THEN 'base of ' || CAST(denominator AS BIGINT) || ' below {cfg.min_base}: not reported' END AS note
FROM k"""


def channel_kpi_sql(cfg: KpiConfig, day: date) -> str:
    """CAC and ROMI per marketing channel over the window, from the spend and the attribution of
    the window's orders (first-touch new customers for CAC, linear revenue for ROMI)."""
    end = day_end(day)
    start = f"({end} - INTERVAL {cfg.window_days} DAY)"
    m = cfg.min_channel_customers
    return f"""
WITH a AS ({attribution_sql(start, end, cfg.attribution_lookback_days)}),
spend AS (SELECT channel, sum(amount)::DOUBLE AS spend FROM staging.marketing_spend
          WHERE spend_date >= {start}::DATE AND spend_date < {end}::DATE GROUP BY 1),
new_ AS (SELECT channel, {exact_sum('credit', digits=6, empty=None)} AS customers FROM a
         WHERE rule = 'first_touch' AND is_first_order GROUP BY 1),
rev AS (SELECT channel, {exact_sum('revenue_credit', digits=4, empty=None)} AS revenue FROM a WHERE rule = 'linear' GROUP BY 1),
c AS (SELECT s.channel, s.spend, coalesce(n.customers, 0) AS customers, coalesce(r.revenue, 0) AS revenue
      FROM spend s LEFT JOIN new_ n USING (channel) LEFT JOIN rev r USING (channel))
SELECT DATE '{day.isoformat()}' AS kpi_date, 'cac' AS kpi, channel, {cfg.window_days} AS window_days,
       CASE WHEN customers >= {m} THEN spend / customers END AS value, spend AS numerator, customers AS denominator,
       CASE WHEN customers < {m} THEN round(customers, 1) || ' new customers credited, below {m}: not reported' END AS note
FROM c
UNION ALL
SELECT DATE '{day.isoformat()}', 'romi', channel, {cfg.window_days}, (revenue - spend) / nullif(spend, 0),
       revenue - spend, spend, CASE WHEN spend = 0 THEN 'no spend' END
FROM c"""


def engagement_sql(con, cfg: KpiConfig, day: date) -> str:
    """Mean engagement score of the day's feature snapshot (features/customer_features builds
    it first in the daily job); without one, the KPI says so."""
    head = f"SELECT DATE '{day.isoformat()}' AS kpi_date, 'engagement' AS kpi, {cfg.window_days} AS window_days"
    if table_exists(con, TABLE) and con.execute(f"SELECT count(*) FROM {TABLE} WHERE snapshot_date = ?",
                                                [day]).fetchall()[0][0]:
        total = exact_sum("engagement_score", digits=9, empty=None)
        return (f"{head}, {total} / count(engagement_score) AS value, {total} AS numerator, "
                f"count(*)::DOUBLE AS denominator, NULL AS note FROM {TABLE} WHERE snapshot_date = DATE '{day.isoformat()}'")
    return f"{head}, NULL::DOUBLE AS value, NULL::DOUBLE AS numerator, NULL::DOUBLE AS denominator, " \
           f"'no feature snapshot for the day' AS note"


def cohort_sql(cfg: KpiConfig, day: date) -> str:
    end = day_end(day)
    return f"""
WITH o AS (SELECT customer_id, event_at, value FROM core.customer_events
           WHERE event_type = 'order' AND known_at < {end}),
first_ AS (SELECT customer_id, date_trunc('month', min(event_at))::DATE AS cohort_month FROM o GROUP BY 1),
sizes AS (SELECT cohort_month, count(*) AS cohort_size FROM first_ GROUP BY 1),
months AS (
    SELECT cohort_month, cohort_size,
           unnest(range(0, 1 + date_diff('month', cohort_month, DATE '{day.isoformat()}'))) AS months_since_acquisition
    FROM sizes),
activity AS (
    SELECT f.cohort_month, date_diff('month', f.cohort_month, date_trunc('month', o.event_at)::DATE) AS months_since_acquisition,
           count(DISTINCT o.customer_id) AS active_customers, {exact_sum('o.value', empty=None)} AS revenue
    FROM o JOIN first_ f USING (customer_id) GROUP BY 1, 2)
SELECT DATE '{day.isoformat()}' AS snapshot_date, m.cohort_month, m.months_since_acquisition, m.cohort_size,
       coalesce(a.active_customers, 0) AS active_customers,
       CASE WHEN m.cohort_size >= {cfg.min_cohort} THEN coalesce(a.active_customers, 0) / m.cohort_size END AS retention,
       coalesce(a.revenue, 0) AS revenue,
       m.cohort_month + INTERVAL (m.months_since_acquisition + 1) MONTH <= {end} AS month_complete,
       CASE WHEN m.cohort_size < {cfg.min_cohort}
            THEN 'cohort of ' || m.cohort_size || ' below {cfg.min_cohort}: retention not reported' END AS note
FROM months m LEFT JOIN activity a USING (cohort_month, months_since_acquisition)"""


def build_day(con, seg_cfg: segments.SegmentConfig, cfg: KpiConfig, day: date, history: str | None = None) -> dict:
    """Replace the day's rows of marts.kpi_daily and marts.cohort_retention. ``history``: a table
    with every lifecycle transition up to the day's end (``segments.build_day(...,
    keep_history=True)`` of the same day leaves one); computed when None."""
    if history is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _hist AS {segments.transitions_sql(seg_cfg, day)}")
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW _hist AS SELECT * FROM {history}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _kpi AS SELECT * FROM ({kpi_sql(cfg, day)}) "
                f"UNION ALL BY NAME SELECT * FROM ({channel_kpi_sql(cfg, day)}) "
                f"UNION ALL BY NAME SELECT * FROM ({engagement_sql(con, cfg, day)})")
    # sums of doubles come out in the last bits as the threads happened to add them: a rerun of the
    # day must write the same values
    con.execute(f"UPDATE _kpi SET value = round(value, {DIGITS}), numerator = round(numerator, {DIGITS}), "
                f"denominator = round(denominator, {DIGITS})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _cohorts AS {cohort_sql(cfg, day)}")
    replace_partition(con, "marts.kpi_daily", "_kpi", "kpi_date", day)
    replace_partition(con, "marts.cohort_retention", "_cohorts", "snapshot_date", day)
    out = {"kpis": {k: v for k, v in con.execute("SELECT kpi, value FROM _kpi WHERE channel IS NULL").fetchall()},
           "by_channel": {f"{k}/{c}": v for k, c, v in con.execute(
               "SELECT kpi, channel, value FROM _kpi WHERE channel IS NOT NULL ORDER BY 1, 2").fetchall()},
           "not_reported": dict(con.execute("SELECT kpi || coalesce('/' || channel, ''), note FROM _kpi "
                                            "WHERE note IS NOT NULL").fetchall()),
           "cohort_rows": con.execute("SELECT count(*) FROM _cohorts").fetchall()[0][0]}
    # no cohort at all is right only while nobody has ordered (a newsletter or a support desk alone)
    out["orders_known"] = None if out["cohort_rows"] else con.execute(
        f"SELECT count(*) FROM core.customer_events WHERE event_type = 'order' AND known_at < {day_end(day)}"
    ).fetchall()[0][0]
    con.execute("DROP TABLE _hist" if history is None else "DROP VIEW _hist")
    for t in ("_kpi", "_cohorts"):
        con.execute(f"DROP TABLE {t}")
    return out
