"""Uplift of the alerts: what treated customers did after an alert compared with the control group.

As of the end of a day, for every alert kind: the alerts whose follow-up window (``window_days``
after the alert day) has fully passed, split into treated (delivered) and control (withheld).
Outcomes come from the timeline, only from events known by the end of the day: whether the
customer ordered in the window (its complement is the churn of the window) and the net revenue
(orders minus returns) in the window. The uplift is treated minus control with a 95% normal
interval; with fewer than ``min_group`` alerts in either group it is not reported and the note
says why.
"""

from __future__ import annotations

from datetime import date

from crm_platform.alerts.rules import AlertConfig
from crm_platform.core.days import day_end


def uplift_sql(day: date, cfg: AlertConfig, alerts: str = "alerts.customer_alerts") -> str:
    d = f"DATE '{day.isoformat()}'"
    w = int(cfg.uplift_window_days)
    n = int(cfg.uplift_min_group)
    return f"""
WITH done AS (
    SELECT alert_id, alert_date, customer_id, kind, is_control FROM {alerts}
    WHERE alert_date + INTERVAL {w} DAY < {day_end(day)} AND alert_date <= {d}),
outcome AS (
    SELECT a.kind, a.is_control, a.alert_id,
           count(e.event_type) FILTER (WHERE e.event_type = 'order') > 0 AS ordered,
           round(coalesce(sum(CASE e.event_type WHEN 'order' THEN e.value WHEN 'return' THEN -e.value END), 0), 2) AS revenue
    FROM done a LEFT JOIN core.customer_events e
      ON e.customer_id = a.customer_id AND e.event_type IN ('order', 'return')
     AND e.event_at >= a.alert_date + INTERVAL 1 DAY AND e.event_at < a.alert_date + INTERVAL {w + 1} DAY
     AND e.known_at < {day_end(day)}
    GROUP BY ALL),
groups AS (
    SELECT kind,
           count(*) FILTER (WHERE NOT is_control) AS treated_alerts,
           count(*) FILTER (WHERE is_control) AS control_alerts,
           round(avg(ordered::INT) FILTER (WHERE NOT is_control), 6) AS treated_order_rate,
           round(avg(ordered::INT) FILTER (WHERE is_control), 6) AS control_order_rate,
           round(avg(revenue) FILTER (WHERE NOT is_control), 6) AS treated_revenue,
           round(avg(revenue) FILTER (WHERE is_control), 6) AS control_revenue,
           round(var_samp(revenue) FILTER (WHERE NOT is_control), 6) AS treated_revenue_var,
           round(var_samp(revenue) FILTER (WHERE is_control), 6) AS control_revenue_var
    FROM outcome GROUP BY kind),
kinds AS (SELECT DISTINCT kind FROM {alerts} WHERE alert_date <= {d})
SELECT {d} AS snapshot_date, k.kind, {w} AS window_days,
       coalesce(g.treated_alerts, 0) AS treated_alerts, coalesce(g.control_alerts, 0) AS control_alerts,
       g.treated_order_rate, g.control_order_rate, g.treated_revenue, g.control_revenue,
       CASE WHEN ok THEN g.treated_order_rate - g.control_order_rate END AS order_rate_uplift,
       CASE WHEN ok THEN 1.96 * sqrt(g.treated_order_rate * (1 - g.treated_order_rate) / g.treated_alerts
                                     + g.control_order_rate * (1 - g.control_order_rate) / g.control_alerts) END
           AS order_rate_uplift_margin,
       CASE WHEN ok THEN g.treated_revenue - g.control_revenue END AS revenue_uplift,
       CASE WHEN ok THEN 1.96 * sqrt(g.treated_revenue_var / g.treated_alerts
                                     + g.control_revenue_var / g.control_alerts) END AS revenue_uplift_margin,
       CASE WHEN NOT ok THEN printf('uplift needs at least {n} alerts per group with a completed {w}-day window; '
                                    'treated %d, control %d', coalesce(g.treated_alerts, 0), coalesce(g.control_alerts, 0))
       END AS note
FROM kinds k LEFT JOIN groups g USING (kind),
     LATERAL (SELECT coalesce(g.treated_alerts, 0) >= {n} AND coalesce(g.control_alerts, 0) >= {n} AS ok)
ORDER BY k.kind"""


def verdict(uplift: float, margin: float) -> str:
    """Whether a measured uplift is distinguishable from chance, in words (the dashboard's and the
    CLI summary's): an effect only when the 95 % margin does not reach zero."""
    if abs(uplift) <= margin:
        return "not distinguishable from chance"
    return "an effect: more orders" if uplift > 0 else "an effect: fewer orders"
