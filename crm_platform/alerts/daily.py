"""The alerts stage one day at a time: the day's customer alerts, KPI alerts, delivery and uplift.

Each ``build_*`` writes the partition of one day and returns what it did; the Dagster assets call
them day by day (a backfill of a range is one run) and report. The rules themselves: rules.py
(customer alerts), kpi.py (bands and data-quality alerts), delivery.py (sinks and the exactly-once
ledger), uplift.py (treated against control).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import pandas as pd

from crm_platform.alerts import kpi, rules, suppression, uplift
from crm_platform.alerts.delivery import CONTACT_FIELDS, Outbox, Sink, log_over_runs_sql
from crm_platform.alerts.rules import SOURCES, AlertConfig, in_control_group, window_days_sql
from crm_platform.contracts.schemas import DeliveryLog
from crm_platform.core.warehouse import replace_partition, table_exists, temp_table

CUSTOMER_ALERTS = "alerts.customer_alerts"
KPI_ALERTS = "alerts.kpi_alerts"
DELIVERY_LOG = "alerts.delivery_log"
UPLIFT = "marts.action_uplift"
SUPPRESSED = f"(SELECT customer_id FROM {suppression.TABLE} WHERE customer_id IS NOT NULL)"


def alert_kinds(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """The kinds of customer alert whose source tables exist, and why each other kind is left out."""
    kinds = [k for k, tables in SOURCES.items() if all(table_exists(con, t) for t in tables)]
    skipped = [f"{k}: no {', '.join(t for t in SOURCES[k] if not table_exists(con, t))} yet"
               for k in SOURCES if k not in kinds]
    return kinds, skipped


def suppressed(con: duckdb.DuckDBPyConnection) -> str | None:
    """The customers nobody may contact, as SQL (None while there is no suppression list)."""
    return SUPPRESSED if table_exists(con, suppression.TABLE) else None


def build_customer_alerts(con: duckdb.DuckDBPyConnection, cfg: AlertConfig, day: date, kinds: list[str],
                          blocked: str | None) -> dict:
    """The customer alerts of ``day`` (rules.py); the candidates, the alerts per kind and the
    control-group alerts of the day."""
    con.execute("CREATE SCHEMA IF NOT EXISTS alerts")
    candidates = temp_table(con, "_candidates", rules.candidates_sql(day, cfg, kinds))
    previous = CUSTOMER_ALERTS if table_exists(con, CUSTOMER_ALERTS) else None
    temp_table(con, "_alerts", rules.alerts_sql(day, cfg, previous, kinds, blocked))
    replace_partition(con, CUSTOMER_ALERTS, "_alerts", "alert_date", day)
    return {"candidates": candidates, **dict(con.execute("SELECT kind, count(*) FROM _alerts GROUP BY 1").fetchall()),
            "control": con.execute("SELECT count(*) FROM _alerts WHERE is_control").fetchall()[0][0]}


def violations_sql(days: list[str], cfg: AlertConfig, blocked: str | None, table: str = CUSTOMER_ALERTS) -> str:
    """Every alert of ``days`` that breaks a rule, recomputed from the table: no e-mail consent, on
    the suppression list, within the suppression window of an earlier alert of its kind, or a
    control flag other than the hash rule gives."""
    in_days = ", ".join(f"DATE '{d}'" for d in days)
    return f"""
SELECT a.alert_id, a.alert_date, a.customer_id, a.kind, 'no e-mail consent' AS rule
FROM {table} a JOIN core.customers c USING (customer_id)
WHERE a.alert_date IN ({in_days}) AND NOT coalesce(c.consent_email, false)
UNION ALL
SELECT a.alert_id, a.alert_date, a.customer_id, a.kind, 'on the suppression list'
FROM {table} a WHERE a.alert_date IN ({in_days}) AND {f"a.customer_id IN {blocked}" if blocked else "false"}
UNION ALL
SELECT a.alert_id, a.alert_date, a.customer_id, a.kind, 'within the suppression window of ' || p.alert_date
FROM {table} a JOIN {table} p ON p.customer_id = a.customer_id AND p.kind = a.kind AND p.alert_date < a.alert_date
 AND p.alert_date >= a.alert_date - {window_days_sql('a.kind', cfg)} * INTERVAL 1 DAY
WHERE a.alert_date IN ({in_days})
UNION ALL
SELECT a.alert_id, a.alert_date, a.customer_id, a.kind, 'control flag differs from the hash rule'
FROM {table} a WHERE a.alert_date IN ({in_days}) AND a.is_control != {in_control_group('a.customer_id', cfg)}"""


def build_kpi_alerts(con: duckdb.DuckDBPyConnection, cfg: AlertConfig, day: date,
                     failed: list[kpi.FailedCheck]) -> None:
    """The KPI alerts of ``day``: KPIs outside their band, and a data-quality alert for each of
    ``failed`` (the checks whose latest evaluation failed; given for the newest day only)."""
    temp_table(con, "_kpi", kpi.band_alerts_sql(day, cfg))
    dq = pd.DataFrame(kpi.data_quality_alerts(day, failed, cfg.data_quality_min_severity), columns=list(kpi.COLUMNS))
    con.register("_dq", dq)
    try:
        temp_table(con, "_kpi_alerts", """SELECT * FROM _kpi UNION ALL BY NAME
            SELECT alert_id::VARCHAR AS alert_id, alert_date::DATE AS alert_date, kind::VARCHAR AS kind,
                   subject::VARCHAR AS subject, reason::VARCHAR AS reason, value::DOUBLE AS value,
                   expected_low::DOUBLE AS expected_low, expected_high::DOUBLE AS expected_high,
                   history_days::BIGINT AS history_days FROM _dq""")
    finally:
        con.unregister("_dq")
    replace_partition(con, KPI_ALERTS, "_kpi_alerts", "alert_date", day)


# what a sink receives of each alert table (control-group alerts are never delivered)
PAYLOAD = {
    CUSTOMER_ALERTS: "SELECT alert_id, alert_date::VARCHAR AS alert_date, kind, customer_id, customer_id AS "
                     "subject, reason, model_version FROM alerts.customer_alerts WHERE NOT is_control",
    KPI_ALERTS: "SELECT alert_id, alert_date::VARCHAR AS alert_date, kind, NULL::VARCHAR AS customer_id, "
                "subject, reason, NULL::VARCHAR AS model_version FROM alerts.kpi_alerts WHERE true",
}


def payload_sql(tables: list[str], start: date, day: date, contact_fields: tuple[str, ...] = (),
                blocked: str | None = None) -> str:
    """The alerts of ``start`` .. ``day`` in the tables that exist, each alert once (a data-quality
    alert can be carried by several days). A customer alert goes out only while the customer's
    golden record still has e-mail consent and they are not on the suppression list (a withdrawal
    after the alert was raised stops a delivery still pending); ``contact_fields`` of the golden
    record are added for sinks that name them; ``blocked``: the suppressed customers (``suppressed``)."""
    parts = [f"{PAYLOAD[t]} AND alert_date BETWEEN DATE '{start}' AND DATE '{day}'" for t in tables]
    extra = "".join(f", c.{f}" for f in contact_fields)
    blocked = blocked or "(SELECT NULL::VARCHAR WHERE false)"
    return (f"SELECT a.*{extra} FROM ({' UNION ALL '.join(parts)}) a LEFT JOIN core.customers c USING (customer_id) "
            f"WHERE a.customer_id IS NULL OR (coalesce(c.consent_email, false) AND a.customer_id NOT IN {blocked}) "
            "QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY alert_date) = 1 "
            "ORDER BY alert_date, kind, alert_id")


@dataclass
class Delivery:
    """What the delivery of one day did: the alerts offered, one log row per sink, the errors."""
    offered: int = 0
    log: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def deliver_day(con: duckdb.DuckDBPyConnection, cfg: AlertConfig, box: Outbox, sinks: list[Sink],
                skipped: list[str], day: date) -> Delivery:
    """Deliver the alerts of ``day`` (and whatever a sink failed to take in the ``retry_days``
    before) to every sink, and write the day's delivery log: what each sink took, with what earlier
    runs of the day sent kept (the outbox's ledger makes every delivery exactly-once)."""
    have = [t for t in PAYLOAD if table_exists(con, t)]
    contact = tuple(f for f in CONTACT_FIELDS if any(f in getattr(k, "fields", ()) for k in sinks))
    start = day - timedelta(days=cfg.retry_days)
    alerts = con.sql(payload_sql(have, start, day, contact, suppressed(con))).df() \
        if have else pd.DataFrame()
    records = alerts.astype(object).where(alerts.notna(), None).to_dict("records")
    report = box.deliver(records, sinks)
    out = Delivery(offered=len(records), errors=list(report.errors))
    out.log = [{"alert_date": day, "sink": s.name, "alerts": len(records), "sent": report.sent[s.name],
                "already_delivered": report.already[s.name], "failed": report.failed[s.name], "note": None}
               for s in sinks]
    out.log += [{"alert_date": day, "sink": note.split(":")[0], "alerts": len(records), "sent": 0,
                 "already_delivered": 0, "failed": 0, "note": note} for note in skipped]
    _write_log(con, out.log, day)
    return out


def _write_log(con: duckdb.DuckDBPyConnection, rows: list[dict], day: date) -> None:
    con.register("_log", pd.DataFrame(rows, columns=list(DeliveryLog.to_schema().columns)))
    try:
        temp_table(con, "_log_t", "SELECT alert_date::DATE AS alert_date, sink::VARCHAR AS sink, "
                   "alerts::BIGINT AS alerts, sent::BIGINT AS sent, already_delivered::BIGINT AS already_delivered, "
                   "failed::BIGINT AS failed, note::VARCHAR AS note FROM _log")
    finally:
        con.unregister("_log")
    log_t = "_log_t"
    if table_exists(con, DELIVERY_LOG):        # a rerun of the day keeps what earlier runs sent
        temp_table(con, "_log_m", log_over_runs_sql("_log_t"))
        log_t = "_log_m"
    replace_partition(con, DELIVERY_LOG, log_t, "alert_date", day)


def build_uplift(con: duckdb.DuckDBPyConnection, cfg: AlertConfig, day: date) -> None:
    """The uplift of treated against control per alert kind, as of the end of ``day`` (uplift.py)."""
    temp_table(con, "_uplift", uplift.uplift_sql(day, cfg))
    replace_partition(con, UPLIFT, "_uplift", "snapshot_date", day)
