"""Alert assets: the day's customer and KPI alerts, their delivery through the outbox, the uplift
of treated vs control, and the contact suppression list (domain code in crm_platform/alerts).

``alerts/customer_alerts`` and ``alerts/kpi_alerts`` decide what to say; ``alerts/outbox`` is the
only asset that talks to the outside world, and its ledger makes every delivery exactly-once, so
re-materializing or backfilling any of them never sends an alert twice.
"""

from datetime import date, timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.checks import (latest_evaluations, partition_check, partition_check_spec, step_check,
                               step_check_spec)
from assets.lib.metadata import markdown_table, table_metadata
from assets.lib.partitions import daily_asset
from crm_platform.alerts import kpi, rules, suppression, uplift
from crm_platform.alerts.delivery import CONTACT_FIELDS, log_over_runs_sql
from crm_platform.alerts.rules import SOURCES, in_control_group, window_days_sql
from crm_platform.contracts.schemas import ActionUplift, ContactSuppression, CustomerAlerts, DeliveryLog, KpiAlerts
from crm_platform.contracts.validation import validate_table
from crm_platform.core.warehouse import replace_partition, table_exists
from resources.alerts import Alerting

CUSTOMER_ALERTS, KPI_ALERTS, OUTBOX, UPLIFT = keys.CUSTOMER_ALERTS, keys.KPI_ALERTS, keys.OUTBOX, keys.UPLIFT
SUPPRESSION = keys.SUPPRESSION
SCORES = [keys.CHURN_SCORES, keys.CLV_SCORES, keys.NEXT_BEST_OFFER]
SUPPRESSED = f"(SELECT customer_id FROM {suppression.TABLE} WHERE customer_id IS NOT NULL)"


def _daily(key: dg.AssetKey, group: str, deps: list, checks: list, kinds=frozenset({"duckdb", "sql"}), **kw):
    return daily_asset(key=key, group_name=group, kinds=set(kinds), deps=deps, check_specs=checks, **kw)


def _temp(con, name: str, sql: str) -> int:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
    return con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]


@policy.asset(key=SUPPRESSION, group_name="alerts", kinds={"duckdb", "python"}, tags={"pii": "hashed"},
              deps=[keys.CUSTOMERS],
              check_specs=[step_check_spec(ContactSuppression, SUPPRESSION,
                                           "Hashes only, one row per identifier and customer."),
                           dg.AssetCheckSpec("no_rejected_rows", asset=SUPPRESSION, description=(
                               "Every row of the suppression files is a valid e-mail or customer id; rejected "
                               "rows are in governance.suppression_rejects with file, line and reason."))])
def contact_suppression(context: dg.AssetExecutionContext, warehouse: DuckDBResource, alerting: Alerting):
    """People nobody may contact, from the CSV files in ``CRM_PLATFORM_HOME/suppression/`` (column
    ``email`` or ``customer_id``, optional ``reason``): salted hashes of the normalized identifiers
    (never the identifier), resolved to today's customers. Customer alerts skip everyone on it."""
    paths = alerting.paths
    with warehouse.get_connection() as con:
        counts = suppression.build(con, paths.suppression, paths.hash_salt())
        result = validate_table(con, suppression.TABLE, ContactSuppression, allow_empty=True)
        rejects = con.sql(f"SELECT * FROM {suppression.REJECTS} LIMIT 20").df()
        meta = table_metadata(con, suppression.TABLE)
    yield dg.MaterializeResult(metadata={**meta, **counts, "folder": str(paths.suppression),
                                         "rejects": dg.MetadataValue.md(markdown_table(rejects, 20, 80))})
    yield step_check(ContactSuppression, result)
    yield dg.AssetCheckResult(check_name="no_rejected_rows", passed=counts["rejected"] == 0,
                              severity=dg.AssetCheckSeverity.WARN,
                              description=f"{counts['rejected']} row(s) or file(s) rejected" if counts["rejected"]
                              else f"{counts['entries']} entries, {counts['resolved']} resolved to customers")


RESPECT_CHECK = dg.AssetCheckSpec("alerts_respect_the_customer", asset=CUSTOMER_ALERTS, blocking=True, description=(
    "On the days just written, recomputed from the table: no alert to a customer without e-mail consent or "
    "on the suppression list, no second alert of a kind within its suppression window, and the control flag "
    "is exactly the hash rule."))


@_daily(CUSTOMER_ALERTS, "alerts", [*SCORES, keys.TRANSITIONS, keys.FEATURES, keys.CUSTOMERS, keys.EVENTS, SUPPRESSION],
        [partition_check_spec(CustomerAlerts, CUSTOMER_ALERTS), RESPECT_CHECK])
def customer_alerts(context: dg.AssetExecutionContext, warehouse: DuckDBResource, alerting: Alerting):
    """The customer alerts of the partition's day: churn risk of valuable customers (churn
    probability × predicted 12-month value), lifecycle transitions worth acting on (became at risk,
    first purchase, reactivated) and the top next-best-offer, each with a reason a marketer can read
    and the model version behind it. Only customers with e-mail consent who are not on the
    suppression list; one alert per kind within its suppression window; no offer after a return or
    while a ticket is open. The control group's alerts are kept, flagged, and never delivered.
    Rules in config/alerts.yaml."""
    cfg = alerting.config()
    table = "alerts.customer_alerts"
    days = sorted(context.partition_keys)
    per_day, skipped = {}, []
    with warehouse.get_connection() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS alerts")
        kinds = [k for k, tables in SOURCES.items() if all(table_exists(con, t) for t in tables)]
        skipped = [f"{k}: no {', '.join(t for t in SOURCES[k] if not table_exists(con, t))} yet"
                   for k in SOURCES if k not in kinds]
        blocked = SUPPRESSED if table_exists(con, suppression.TABLE) else None
        for day in days:
            d = date.fromisoformat(day)
            candidates = _temp(con, "_candidates", rules.candidates_sql(d, cfg, kinds))
            _temp(con, "_alerts", rules.alerts_sql(d, cfg, table if table_exists(con, table) else None, kinds, blocked))
            replace_partition(con, table, "_alerts", "alert_date", d)
            per_day[day] = {"candidates": candidates, **dict(con.execute(
                "SELECT kind, count(*) FROM _alerts GROUP BY 1").fetchall()),
                "control": con.execute("SELECT count(*) FROM _alerts WHERE is_control").fetchall()[0][0]}
        # a day without alerts is a valid day (everyone suppressed, nothing called for)
        check = partition_check(con, table, "alert_date", days, CustomerAlerts, CUSTOMER_ALERTS, allow_empty=True)
        violations = con.sql(_violations_sql(table, days, cfg, blocked)).df()
        last = days[-1]
        by_kind = con.sql(f"""SELECT kind, count(*) FILTER (WHERE NOT is_control) AS treated,
                count(*) FILTER (WHERE is_control) AS control FROM {table} WHERE alert_date = DATE '{last}'
                GROUP BY 1 ORDER BY 1""").df()
        meta = table_metadata(con, table, where=f"alert_date = DATE '{last}'")
    yield dg.MaterializeResult(metadata={
        **meta, "alerts_per_day": dg.MetadataValue.json(per_day),
        "by_kind": dg.MetadataValue.md(markdown_table(by_kind)),
        "kinds_without_source": dg.MetadataValue.json(skipped)})
    yield check
    yield dg.AssetCheckResult(
        check_name="alerts_respect_the_customer", passed=violations.empty, severity=dg.AssetCheckSeverity.ERROR,
        description="no alert breaks consent, the suppression list, the suppression window or the control rule"
        if violations.empty else f"{len(violations)} alert(s) break a rule",
        metadata={"violations": dg.MetadataValue.md(markdown_table(violations, 20, 80))})


def _violations_sql(table: str, days: list[str], cfg: rules.AlertConfig, blocked: str | None) -> str:
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


def failed_checks(context: dg.AssetExecutionContext) -> list[kpi.FailedCheck]:
    """Every asset check of the run's asset graph whose latest evaluation failed."""
    return [kpi.FailedCheck(key.asset_key.to_user_string(), key.name, ev.severity.value, run_id, ev.description or "")
            for key, run_id, ev in latest_evaluations(context) if not ev.passed]


@_daily(KPI_ALERTS, "alerts", [keys.KPI_DAILY],
        [partition_check_spec(KpiAlerts, KPI_ALERTS),
         dg.AssetCheckSpec("kpis_have_a_band", asset=KPI_ALERTS, description=(
             "Every configured KPI had enough history on the day to be checked against its band."))])
def kpi_alerts(context: dg.AssetExecutionContext, warehouse: DuckDBResource, alerting: Alerting):
    """KPIs of the whole base that left their expected band on the partition's day (the median of
    their own trailing values ± robust spread; direction per KPI in config/alerts.yaml), and, on the
    last day of the run, a data-quality alert for every asset check whose latest evaluation failed
    (one alert per failure: its id comes from the check and what it found)."""
    cfg = alerting.config()
    table = "alerts.kpi_alerts"
    days = sorted(context.partition_keys)
    failed = failed_checks(context)
    bands = None
    with warehouse.get_connection() as con:
        for day in days:
            d = date.fromisoformat(day)
            _temp(con, "_kpi", kpi.band_alerts_sql(d, cfg))
            dq = pd.DataFrame(kpi.data_quality_alerts(d, failed, cfg.data_quality_min_severity) if day == days[-1]
                              else [], columns=list(kpi.COLUMNS))
            con.register("_dq", dq)
            _temp(con, "_kpi_alerts", """SELECT * FROM _kpi UNION ALL BY NAME
                SELECT alert_id::VARCHAR AS alert_id, alert_date::DATE AS alert_date, kind::VARCHAR AS kind,
                       subject::VARCHAR AS subject, reason::VARCHAR AS reason, value::DOUBLE AS value,
                       expected_low::DOUBLE AS expected_low, expected_high::DOUBLE AS expected_high,
                       history_days::BIGINT AS history_days FROM _dq""")
            con.unregister("_dq")
            replace_partition(con, table, "_kpi_alerts", "alert_date", d)
        bands = con.sql(kpi.band_sql(date.fromisoformat(days[-1]), cfg)).df()
        # most days no KPI leaves its band
        check = partition_check(con, table, "alert_date", days, KpiAlerts, KPI_ALERTS, allow_empty=True)
        meta = table_metadata(con, table, where=f"alert_date = DATE '{days[-1]}'")
    unbanded = bands[bands["alert"].isna()]
    yield dg.MaterializeResult(metadata={
        **meta, "bands": dg.MetadataValue.md(markdown_table(bands.round(4), 20)),
        "failed_checks": dg.MetadataValue.json([f"{f.asset}:{f.check} ({f.severity})" for f in failed])})
    yield check
    yield dg.AssetCheckResult(
        check_name="kpis_have_a_band", passed=unbanded.empty, severity=dg.AssetCheckSeverity.WARN,
        description=f"all {len(bands)} KPIs checked against their band" if unbanded.empty else
        "not checked (fewer than {} days of history or no value): ".format(cfg.kpi_bands.min_history_days)
        + ", ".join(f"{r.kpi} ({r.history_days} days)" for r in unbanded.itertuples()))


# what a sink receives of each alert table (control-group alerts are never delivered)
PAYLOAD = {
    "alerts.customer_alerts": "SELECT alert_id, alert_date::VARCHAR AS alert_date, kind, customer_id, customer_id AS "
                              "subject, reason, model_version FROM alerts.customer_alerts WHERE NOT is_control",
    "alerts.kpi_alerts": "SELECT alert_id, alert_date::VARCHAR AS alert_date, kind, NULL::VARCHAR AS customer_id, "
                         "subject, reason, NULL::VARCHAR AS model_version FROM alerts.kpi_alerts WHERE true",
}


def payload_sql(tables: list[str], start: date, day: date, contact_fields: tuple[str, ...] = (),
                suppression: bool = False) -> str:
    """The alerts of ``start`` .. ``day`` in the tables that exist, each alert once (a data-quality
    alert can be carried by several days). A customer alert goes out only while the customer's
    golden record still has e-mail consent and they are not on the suppression list (a withdrawal
    after the alert was raised stops a delivery still pending); ``contact_fields`` of the golden
    record are added for sinks that name them."""
    parts = [f"{PAYLOAD[t]} AND alert_date BETWEEN DATE '{start}' AND DATE '{day}'" for t in tables]
    extra = "".join(f", c.{f}" for f in contact_fields)
    blocked = ("SELECT customer_id FROM governance.contact_suppression WHERE customer_id IS NOT NULL"
               if suppression else "SELECT NULL::VARCHAR WHERE false")
    return (f"SELECT a.*{extra} FROM ({' UNION ALL '.join(parts)}) a LEFT JOIN core.customers c USING (customer_id) "
            f"WHERE a.customer_id IS NULL OR (coalesce(c.consent_email, false) AND a.customer_id NOT IN ({blocked})) "
            "QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY alert_date) = 1 "
            "ORDER BY alert_date, kind, alert_id")


@_daily(OUTBOX, "alerts", [CUSTOMER_ALERTS, KPI_ALERTS],
        [partition_check_spec(DeliveryLog, OUTBOX),
         dg.AssetCheckSpec("everything_delivered", asset=OUTBOX, description=(
             "Every configured sink took every alert it was offered; what it did not is sent again by "
             "the next delivery."))], kinds=frozenset({"duckdb", "python"}))
def outbox(context: dg.AssetExecutionContext, warehouse: DuckDBResource, alerting: Alerting):
    """Delivers the alerts of the partition's day (and whatever a sink failed to take in the
    ``retry_days`` before) to every sink of config/alerts.yaml: the JSON-lines outbox and the CSV
    for CRM import under ``CRM_PLATFORM_HOME/outbox/``, and the webhook when its URL is set. The
    ledger records what each sink took, so a rerun or backfill sends nothing twice. Control-group
    alerts are never delivered."""
    cfg = alerting.config()
    box = alerting.outbox()
    sinks, skipped = alerting.sinks()
    days = sorted(context.partition_keys)
    log, errors, offered = [], [], 0
    with warehouse.get_connection() as con:
        have = [t for t in PAYLOAD if table_exists(con, t)]
        contact = tuple(f for f in CONTACT_FIELDS if any(f in getattr(k, "fields", ()) for k in sinks))
        suppressed = table_exists(con, "governance.contact_suppression")
        for day in days:
            d = date.fromisoformat(day)
            start = d - timedelta(days=cfg.retry_days)
            alerts = con.sql(payload_sql(have, start, d, contact, suppressed)).df() if have else pd.DataFrame()
            records = alerts.astype(object).where(alerts.notna(), None).to_dict("records")
            report = box.deliver(records, sinks)
            offered += len(records)
            errors += report.errors
            log += [{"alert_date": d, "sink": s.name, "alerts": len(records), "sent": report.sent[s.name],
                     "already_delivered": report.already[s.name], "failed": report.failed[s.name], "note": None}
                    for s in sinks]
            log += [{"alert_date": d, "sink": note.split(":")[0], "alerts": len(records), "sent": 0,
                     "already_delivered": 0, "failed": 0, "note": note} for note in skipped]
        frame = pd.DataFrame(log, columns=list(DeliveryLog.to_schema().columns))
        for day in days:
            part = frame[frame["alert_date"] == date.fromisoformat(day)]
            con.register("_log", part)
            _temp(con, "_log_t", "SELECT alert_date::DATE AS alert_date, sink::VARCHAR AS sink, alerts::BIGINT AS alerts, "
                  "sent::BIGINT AS sent, already_delivered::BIGINT AS already_delivered, failed::BIGINT AS failed, "
                  "note::VARCHAR AS note FROM _log")
            con.unregister("_log")
            log_t = "_log_t"
            if table_exists(con, "alerts.delivery_log"):        # a rerun of the day keeps what earlier runs sent
                _temp(con, "_log_m", log_over_runs_sql("_log_t"))
                log_t = "_log_m"
            replace_partition(con, "alerts.delivery_log", log_t, "alert_date", date.fromisoformat(day))
        check = partition_check(con, "alerts.delivery_log", "alert_date", days, DeliveryLog, OUTBOX,
                                allow_empty=not sinks and not skipped)
    totals = frame.groupby("sink")[["sent", "already_delivered", "failed"]].sum()
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(offered), "outbox": str(box.root),
        "per_sink": dg.MetadataValue.md(markdown_table(totals.reset_index())),
        "sinks_left_out": dg.MetadataValue.json(skipped), "errors": dg.MetadataValue.json(errors[:20])})
    yield check
    failed = int(frame["failed"].sum())
    yield dg.AssetCheckResult(
        check_name="everything_delivered", passed=failed == 0, severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{int(frame['sent'].sum())} sent, {int(frame['already_delivered'].sum())} already delivered"
                     if failed == 0 else f"{failed} alert(s) not delivered (sent again next time): "
                     + "; ".join(errors[:3])))


@_daily(UPLIFT, "alerts", [CUSTOMER_ALERTS, keys.EVENTS], [partition_check_spec(ActionUplift, UPLIFT)])
def action_uplift(context: dg.AssetExecutionContext, warehouse: DuckDBResource, alerting: Alerting):
    """Per alert kind, as of the end of the partition's day: order rate (1 - churn) and net revenue in
    the window after the alert of treated customers against the control group, over the alerts
    whose window has passed, with the uplift and its 95% margin; too small a group gives a note
    instead of a number."""
    cfg = alerting.config()
    days = sorted(context.partition_keys)
    with warehouse.get_connection() as con:
        for day in days:
            d = date.fromisoformat(day)
            _temp(con, "_uplift", uplift.uplift_sql(d, cfg))
            replace_partition(con, "marts.action_uplift", "_uplift", "snapshot_date", d)
        # a day before the first alert has nothing to measure
        alerted = con.execute("SELECT count(*) FROM alerts.customer_alerts WHERE alert_date <= ?",
                              [date.fromisoformat(days[0])]).fetchall()[0][0]
        check = partition_check(con, "marts.action_uplift", "snapshot_date", days, ActionUplift, UPLIFT,
                                allow_empty=alerted == 0)
        meta = table_metadata(con, "marts.action_uplift", where=f"snapshot_date = DATE '{days[-1]}'")
    yield dg.MaterializeResult(metadata={**meta, "window_days": cfg.uplift_window_days})
    yield check


def alert_assets() -> list:
    return [contact_suppression, customer_alerts, kpi_alerts, outbox, action_uplift]
