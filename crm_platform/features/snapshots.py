"""Point-in-time customer features: one snapshot per day, each computed only from what was known
by the end of that day.

``features.customer_features`` holds one row per (snapshot_date, customer_id). A snapshot reads
``core.customer_events`` with ``known_at`` before the end of the snapshot day and nothing else
from the activity tables, so appending later events cannot change it (a test holds this). The
population of a snapshot: customers with a contact record created, or an event known, by then.

All set work in one DuckDB statement; configuration (windows, the engagement weights) in
``config/features.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from crm_platform.core.settings import DEFAULT_FEATURES, read_config
from crm_platform.core.warehouse import replace_partition
from crm_platform.core.days import day_end

TABLE = "features.customer_features"
# event types grouped into the channels the engagement breadth counts
# (purchase, e-mail, web, support, survey, sales), one bit each: the breadth is the number of bits
# set, an aggregate without a per-customer set of distinct values
CHANNEL_BIT = """CASE WHEN event_type IN ('order', 'order_cancelled', 'return') THEN 1
    WHEN event_type LIKE 'email_%' THEN 2 WHEN event_type LIKE 'web_%' THEN 4
    WHEN event_type LIKE 'ticket_%' THEN 8 WHEN event_type = 'nps_answer' THEN 16
    ELSE 32 END"""
CHANNEL_GROUPS = 6


class FeatureConfigError(ValueError):
    pass


@dataclass(frozen=True)
class FeatureConfig:
    partitions_start: date | None        # None: the first day with data (``partitions_start``)
    windows: tuple[int, ...]
    activity_window_days: int
    engagement_weights: dict[str, float]


def load_config(path: str | Path = DEFAULT_FEATURES) -> FeatureConfig:
    cfg = read_config(path, lambda raw: FeatureConfig(
        partitions_start=None if str(raw.get("partitions_start", "auto")) == "auto"
        else date.fromisoformat(str(raw["partitions_start"])),
        windows=tuple(int(w) for w in raw["windows"]),
        activity_window_days=int(raw["activity_window_days"]),
        engagement_weights={str(k): float(v) for k, v in raw["engagement_weights"].items()}), FeatureConfigError)
    if not cfg.windows or min(cfg.windows) < 1 or cfg.activity_window_days < 1:
        raise FeatureConfigError(f"{path}: windows and activity_window_days must be positive days")
    return cfg


def population_sql(end: str, events: str = "core.customer_events") -> str:
    """customer_id, first_seen_at of every customer known before ``end``: a contact record
    created, or an event known, by then. A record without a creation date counts from its last
    change (it existed then), one without either from its load into the warehouse (the platform
    knew it then): a newsletter subscriber exported without ``created_at`` and with no event would
    otherwise never be scored."""
    return f"""SELECT customer_id, min(seen) AS first_seen_at FROM (
        SELECT x.customer_id, coalesce(c.created_at, c.updated_at, c._loaded_at) AS seen FROM identity.crosswalk x
        JOIN staging.contacts c USING (contact_key) WHERE coalesce(c.created_at, c.updated_at, c._loaded_at) < {end}
        UNION ALL SELECT customer_id, known_at FROM {events} WHERE known_at < {end}) GROUP BY 1"""


def _rate(num: str, den: str) -> str:
    """A share in [0, 1]; null when there is nothing to divide by (not 0, not 1)."""
    return f"CASE WHEN ({den}) > 0 THEN least(({num}) / ({den}), 1) END"


def exact_sum(column: str, where: str | None = None, digits: int = 2, empty: str | None = "0") -> str:
    """The sum of ``column`` (over the rows ``where`` holds; ``empty`` for none), each value taken
    to ``digits`` decimals (cents, for money) and added up exactly. A sum of doubles comes out in
    its last bits as the threads happened to add it, and a rerun of a day must write the same
    tables: at 1M customers two runs of the features differed for 140,000 customers, and the
    historic CLV total of the KPIs differed after rounding to 6 decimals."""
    total = f"sum({column}::DECIMAL(18, {digits}))" + (f" FILTER (WHERE {where})" if where else "")
    return f"coalesce({total}, {empty})::DOUBLE" if empty is not None else f"{total}::DOUBLE"


def snapshot_sql(cfg: FeatureConfig, cutoff: date, events: str = "core.customer_events") -> str:
    """The SELECT of one snapshot: features as known at the end of ``cutoff``."""
    end = day_end(cutoff)
    since = lambda days: f"{end} - INTERVAL {int(days)} DAY"  # noqa: E731
    a = cfg.activity_window_days
    recent_order = lambda days: f"event_type = 'order' AND event_at >= {since(days)}"  # noqa: E731
    rfm = ",\n".join(
        f"count(*) FILTER (WHERE {recent_order(w)}) AS frequency_{w}d, "
        f"{exact_sum('value', recent_order(w))} AS monetary_{w}d"
        for w in cfg.windows)
    # DOUBLE weights: the average of DECIMAL literals keeps only a few decimals on Spark
    weights = "CASE event_type " + " ".join(
        f"WHEN '{k}' THEN CAST({float(v)!r} AS DOUBLE)" for k, v in cfg.engagement_weights.items()) + " END"
    return f"""
WITH ev AS (SELECT * FROM {events} WHERE known_at < {end}),
pop AS ({population_sql(end, events)}),
agg AS (
    SELECT customer_id,
        max(event_at) FILTER (WHERE event_type = 'order') AS last_order_at,
        max(known_at) AS latest_event_known_at,
        count(*) FILTER (WHERE event_type = 'order') AS orders_total,
        {exact_sum('value', "event_type = 'order'")} AS revenue_total,
        {exact_sum('discount', "event_type = 'order'")} AS discount_total,
        {exact_sum('value', "event_type = 'return'")} AS returned_total,
        {rfm},
        count(*) FILTER (WHERE event_type = 'email_send' AND event_at >= {since(a)}) AS emails_sent_{a}d,
        count(*) FILTER (WHERE event_type = 'email_open' AND event_at >= {since(a)}) AS emails_opened_{a}d,
        count(*) FILTER (WHERE event_type = 'email_click' AND event_at >= {since(a)}) AS emails_clicked_{a}d,
        count(*) FILTER (WHERE event_type = 'email_unsubscribe') > 0 AS unsubscribed,
        count(*) FILTER (WHERE event_type = 'ticket_opened') AS tickets_total,
        count(*) FILTER (WHERE event_type = 'ticket_closed_escalated') AS tickets_escalated,
        avg(value) FILTER (WHERE event_type LIKE 'ticket_closed%') AS satisfaction_avg,
        arg_max(value, event_at) FILTER (WHERE event_type = 'nps_answer') AS nps_last,
        avg(value) FILTER (WHERE event_type = 'nps_answer') AS nps_avg,
        arg_min(channel, event_at) FILTER (WHERE event_type = 'lead_created') AS lead_channel,
        count(*) FILTER (WHERE ({weights}) IS NOT NULL AND event_at >= {since(a)}) AS interactions_{a}d,
        bit_count(bit_or({CHANNEL_BIT}) FILTER (WHERE ({weights}) IS NOT NULL AND event_at >= {since(a)}))
          AS channels_{a}d,
        avg({weights}) FILTER (WHERE ({weights}) IS NOT NULL AND event_at >= {since(a)}) AS action_value_{a}d
    FROM ev GROUP BY 1),
cats AS (
    SELECT customer_id, count(DISTINCT c) AS category_breadth
    FROM (SELECT customer_id, unnest(categories) AS c FROM ev WHERE event_type = 'order') GROUP BY 1),
-- distinct counts as groups of their own: a distinct aggregate per customer over every event
-- holds a set of values per customer in memory
tickets AS (
    SELECT customer_id, count(*) FILTER (WHERE opened) - count(*) FILTER (WHERE closed) AS tickets_open
    FROM (SELECT customer_id, source_record_id, bool_or(event_type = 'ticket_opened') AS opened,
                 bool_or(event_type LIKE 'ticket_closed%') AS closed
          FROM ev WHERE (event_type = 'ticket_opened' OR event_type LIKE 'ticket_closed%')
            AND source_record_id IS NOT NULL GROUP BY 1, 2)
    GROUP BY 1),
carts AS (
    SELECT customer_id, count(*) AS web_sessions_{a}d,
           count(*) FILTER (WHERE carted AND NOT checked_out) AS cart_abandonments_{a}d
    FROM (SELECT customer_id, session_id, bool_or(event_type = 'web_add_to_cart') AS carted,
                 bool_or(event_type = 'web_checkout') AS checked_out
          FROM ev WHERE channel = 'web' AND session_id IS NOT NULL AND event_at >= {since(a)} GROUP BY 1, 2)
    GROUP BY 1)
SELECT DATE '{cutoff.isoformat()}' AS snapshot_date, p.customer_id,
    date_diff('day', p.first_seen_at::DATE, DATE '{cutoff.isoformat()}') AS tenure_days,
    date_diff('day', g.last_order_at::DATE, DATE '{cutoff.isoformat()}') AS recency_days,
    coalesce(g.orders_total, 0) AS orders_total, coalesce(g.revenue_total, 0) AS revenue_total,
    {", ".join(f"coalesce(g.frequency_{w}d, 0) AS frequency_{w}d, coalesce(g.monetary_{w}d, 0) AS monetary_{w}d"
               for w in cfg.windows)},
    g.revenue_total / nullif(g.orders_total, 0) AS avg_order_value,
    {_rate("g.returned_total", "g.revenue_total")} AS return_rate,
    {_rate("g.discount_total", "g.revenue_total + g.discount_total")} AS discount_share,
    coalesce(c.category_breadth, 0) AS category_breadth,
    coalesce(g.emails_sent_{a}d, 0) AS emails_sent_{a}d,
    {_rate(f"g.emails_opened_{a}d", f"g.emails_sent_{a}d")} AS email_open_rate_{a}d,
    {_rate(f"g.emails_clicked_{a}d", f"g.emails_sent_{a}d")} AS email_click_rate_{a}d,
    coalesce(g.unsubscribed, false) AS unsubscribed,
    coalesce(g.tickets_total, 0) AS tickets_total, coalesce(t.tickets_open, 0) AS tickets_open,
    coalesce(g.tickets_escalated, 0) AS tickets_escalated, g.satisfaction_avg,
    g.nps_last, g.nps_avg,
    coalesce(k.web_sessions_{a}d, 0) AS web_sessions_{a}d,
    coalesce(k.cart_abandonments_{a}d, 0) AS cart_abandonments_{a}d,
    g.lead_channel,
    coalesce(ln(1 + g.interactions_{a}d) * g.channels_{a}d / {CHANNEL_GROUPS} * g.action_value_{a}d, 0)
      AS engagement_score,
    g.latest_event_known_at
FROM pop p LEFT JOIN agg g USING (customer_id) LEFT JOIN cats c USING (customer_id)
LEFT JOIN tickets t USING (customer_id) LEFT JOIN carts k USING (customer_id)"""


def build_snapshot(con, cfg: FeatureConfig, cutoff: date, events: str = "core.customer_events") -> int:
    """Replace the snapshot of ``cutoff`` in features.customer_features; return its row count."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _snapshot AS {snapshot_sql(cfg, cutoff, events)}")
    replace_partition(con, TABLE, "_snapshot", "snapshot_date", cutoff)
    n = con.execute("SELECT count(*) FROM _snapshot").fetchall()[0][0]
    con.execute("DROP TABLE _snapshot")
    return int(n)
