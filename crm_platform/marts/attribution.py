"""Channel attribution of orders: first-touch, last-touch and linear multi-touch.

A touch is a marketing contact on a customer's timeline: a web visit that landed with a UTM tag
(paid search, social, display, affiliate, newsletter, organic search, referral), a newsletter
click, or a sales lead being created. An order is credited to the customer's touches in the
``lookback_days`` before it: all to the first (first-touch), all to the last (last-touch) or
evenly (linear). An order with no touch in the window is credited to ``direct``. Everything is
read as known by the end of the day, so a day's attribution never changes later.
"""

from __future__ import annotations

from datetime import date

from crm_platform.core.days import day_end
from crm_platform.core.warehouse import replace_partition
from crm_platform.contracts.vocabularies import ATTRIBUTION_RULES as RULES

# the channel of a touch; UTM sources are named like the marketing spend's channels except the
# newsletter, which the spend books as e-mail
TOUCHES = """
    SELECT customer_id, event_at AS touch_at, CASE
        WHEN event_type = 'email_click' THEN 'email'
        WHEN event_type = 'lead_created' THEN 'sales'
        WHEN split_part(campaign, '-', 1) = 'newsletter' THEN 'email'
        ELSE split_part(campaign, '-', 1) END AS channel
    FROM core.customer_events
    WHERE known_at < {end} AND (event_type IN ('email_click', 'lead_created')
          OR (channel = 'web' AND campaign IS NOT NULL AND event_type = 'web_page_view'))"""


def attribution_sql(start: str, end: str, lookback_days: int) -> str:
    """Credit rows (order, rule, channel, credit, revenue) for the orders placed in [start, end),
    as known at ``end`` (SQL timestamp expressions)."""
    return f"""
WITH known AS (SELECT * FROM core.customer_events WHERE known_at < {end}),
firsts AS (SELECT customer_id, min(event_at) AS first_order_at FROM known WHERE event_type = 'order' GROUP BY 1),
orders AS (
    SELECT o.customer_id, o.source_record_id AS order_id, o.event_at AS order_at, o.value AS revenue,
           o.event_at = f.first_order_at AS is_first_order
    FROM known o JOIN firsts f USING (customer_id)
    WHERE o.event_type = 'order' AND o.event_at >= {start} AND o.event_at < {end}),
t AS ({TOUCHES.format(end=end)}),
paths AS (
    SELECT o.*, t.channel, t.touch_at,
           row_number() OVER (PARTITION BY o.order_id ORDER BY t.touch_at, t.channel) AS k,
           count(*) OVER (PARTITION BY o.order_id) AS n
    FROM orders o JOIN t ON t.customer_id = o.customer_id AND t.touch_at <= o.order_at
                        AND t.touch_at > o.order_at - INTERVAL {int(lookback_days)} DAY),
credits AS (
    SELECT order_id, 'first_touch' AS rule, channel, 1.0 AS credit FROM paths WHERE k = 1
    UNION ALL SELECT order_id, 'last_touch', channel, 1.0 FROM paths WHERE k = n
    UNION ALL SELECT order_id, 'linear', channel, sum(1.0 / n) FROM paths GROUP BY 1, 2, 3
    UNION ALL SELECT o.order_id, r.rule, 'direct', 1.0 FROM orders o CROSS JOIN
        (SELECT unnest({list(RULES)}) AS rule) r
        WHERE o.order_id NOT IN (SELECT order_id FROM paths))
SELECT o.order_at::DATE AS order_date, o.order_id, o.customer_id, o.is_first_order, c.rule, c.channel,
       round(c.credit, 6) AS credit, round(c.credit * o.revenue, 4) AS revenue_credit
FROM credits c JOIN orders o USING (order_id)"""


def build_day(con, day: date, lookback_days: int) -> dict:
    """Replace the day's rows of marts.channel_attribution (orders placed on that day)."""
    start = f"DATE '{day.isoformat()}'"
    end = day_end(day)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _attr AS {attribution_sql(start, end, lookback_days)}")
    replace_partition(con, "marts.channel_attribution", "_attr", "order_date", day)
    out = {rule: dict(con.execute("SELECT channel, round(sum(revenue_credit), 2) FROM _attr WHERE rule = ? "
                                  "GROUP BY 1 ORDER BY 2 DESC", [rule]).fetchall()) for rule in RULES}
    out["orders"] = con.execute("SELECT count(DISTINCT order_id) FROM _attr").fetchall()[0][0]
    con.execute("DROP TABLE _attr")
    return out
