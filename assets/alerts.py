"""Alert assets: the day's customer and KPI alerts, their delivery through the outbox, the uplift
of treated vs control, and the contact suppression list (domain code in crm_platform/alerts).

``alerts/customer_alerts`` and ``alerts/kpi_alerts`` decide what to say; ``alerts/outbox`` is the
only asset that talks to the outside world, and its ledger makes every delivery exactly-once, so
re-materializing or backfilling any of them never sends an alert twice.
"""

from datetime import date

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.checks import (latest_evaluations, partition_check, partition_check_spec, step_check,
                               step_check_spec)
from assets.lib.metadata import markdown_table, table_metadata
from assets.lib.partitions import daily_asset
from crm_platform.alerts import daily, kpi, suppression
from crm_platform.contracts.schemas import ActionUplift, ContactSuppression, CustomerAlerts, DeliveryLog, KpiAlerts
from crm_platform.contracts.validation import validate_table
from resources.alerts import Alerting

CUSTOMER_ALERTS, KPI_ALERTS, OUTBOX, UPLIFT = keys.CUSTOMER_ALERTS, keys.KPI_ALERTS, keys.OUTBOX, keys.UPLIFT
SUPPRESSION = keys.SUPPRESSION
SCORES = [keys.CHURN_SCORES, keys.CLV_SCORES, keys.NEXT_BEST_OFFER]


def _daily(key: dg.AssetKey, group: str, deps: list, checks: list, kinds=frozenset({"duckdb", "sql"}), **kw):
    return daily_asset(key=key, group_name=group, kinds=set(kinds), deps=deps, check_specs=checks, **kw)


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
    table = daily.CUSTOMER_ALERTS
    days = sorted(context.partition_keys)
    with warehouse.get_connection() as con:
        kinds, skipped = daily.alert_kinds(con)
        blocked = daily.suppressed(con)
        per_day = {day: daily.build_customer_alerts(con, cfg, date.fromisoformat(day), kinds, blocked) for day in days}
        # a day without alerts is a valid day (everyone suppressed, nothing called for)
        check = partition_check(con, table, "alert_date", days, CustomerAlerts, CUSTOMER_ALERTS, allow_empty=True)
        violations = con.sql(daily.violations_sql(days, cfg, blocked)).df()
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


def failed_checks(warehouse: DuckDBResource) -> list[kpi.FailedCheck]:
    """Every asset check of the code location whose latest evaluation failed."""
    return [kpi.FailedCheck(ev.asset, ev.check, ev.severity, ev.run_id, ev.description)
            for ev in latest_evaluations(warehouse) if not ev.passed]


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
    table = daily.KPI_ALERTS
    days = sorted(context.partition_keys)
    failed = failed_checks(warehouse)
    with warehouse.get_connection() as con:
        for day in days:
            daily.build_kpi_alerts(con, cfg, date.fromisoformat(day), failed if day == days[-1] else [])
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
    with warehouse.get_connection() as con:
        done = [daily.deliver_day(con, cfg, box, sinks, skipped, date.fromisoformat(day)) for day in days]
        check = partition_check(con, daily.DELIVERY_LOG, "alert_date", days, DeliveryLog, OUTBOX,
                                allow_empty=not sinks and not skipped)
    offered, errors = sum(d.offered for d in done), [e for d in done for e in d.errors]
    frame = pd.DataFrame([row for d in done for row in d.log], columns=list(DeliveryLog.to_schema().columns))
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
            daily.build_uplift(con, cfg, date.fromisoformat(day))
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
