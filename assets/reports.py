"""The business dashboard asset (domain code in crm_platform/reports)."""

from datetime import date

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.lib import keys
from assets.lib.checks import check_name, latest_evaluations
from assets.lib.config import KPIS as KPI_CONFIG
from assets.lib.metadata import markdown_table
from assets.lib.partitions import daily_asset
from crm_platform import reports as dashboard
from crm_platform.core import settings
from crm_platform.contracts.schemas import AtRiskCustomers
from resources.models import ModelStore

DASHBOARD = keys.DASHBOARD
DEPS = [keys.KPI_DAILY, keys.COHORTS, keys.SEGMENTS, keys.TRANSITIONS, keys.UPLIFT, keys.CHURN_SCORES,
        keys.CLV_SCORES, keys.NEXT_BEST_OFFER, keys.CUSTOMER_ALERTS, keys.KPI_ALERTS, keys.OUTBOX,
        keys.IDENTITY["resolution_quality"]]
CHECK_AT_RISK = check_name(AtRiskCustomers)


def check_statuses(warehouse: DuckDBResource) -> list[dashboard.CheckStatus]:
    return [dashboard.CheckStatus(ev.asset, ev.check, ev.passed, ev.severity, ev.description)
            for ev in latest_evaluations(warehouse)]


@daily_asset(
    key=DASHBOARD, group_name="reports", kinds={"plotly", "html"}, deps=DEPS,
    check_specs=[
        dg.AssetCheckSpec(CHECK_AT_RISK, asset=DASHBOARD, description=(
            "The top at-risk high-value customers shown on the dashboard pass the Pandera model AtRiskCustomers "
            f"({AtRiskCustomers.__doc__.strip()}); a failing list is withheld from the page.")),
        dg.AssetCheckSpec("no_personal_data", asset=DASHBOARD, blocking=True, description=(
            "No text of the dashboard (tiles, captions, tables, chart labels and hover text) looks like an "
            "e-mail address or a phone number: customers appear by id only.")),
    ],
)
def marts_dashboard(context: dg.AssetExecutionContext, warehouse: DuckDBResource, models: ModelStore):
    """The business dashboard as one self-contained HTML file (plotly embedded, opens offline):
    KPI header with CAC vs CLV per channel, KPI trends over the daily partitions, lifecycle funnel
    and transitions, RFM segments, cohort retention, churn-risk distribution with the top at-risk
    high-value customers (ids only), model calibration and lift, identity-resolution health,
    data-quality status and alerts with their control-group uplift. ``reports/dashboard.html``
    shows the newest day; rendering an older partition writes ``reports/dashboard_<day>.html``."""
    day = date.fromisoformat(max(context.partition_keys))
    cards = dashboard.champion_cards(models.registry())
    checks = check_statuses(warehouse)
    with warehouse.get_connection() as con:
        out = dashboard.render_day(con, day, settings.paths().reports, KPI_CONFIG, cards, checks)
    tiles = pd.DataFrame([{"kpi": t.label, "value": t.value, "change": t.detail} for t in out.tiles])
    yield dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(out.path)), "as_of": day.isoformat(),
        "size_kb": round(out.bytes / 1024, 1), "charts_and_tables_drawn": len(out.drawn),
        "not_enough_data": dg.MetadataValue.json(out.not_enough_data),
        "kpis": dg.MetadataValue.md(markdown_table(tiles, 20, 60)),
        "checks_read": len(checks)})
    failures = out.failures.get("top_at_risk")
    yield dg.AssetCheckResult(
        check_name=CHECK_AT_RISK, passed=failures is not None and failures.empty,
        severity=dg.AssetCheckSeverity.ERROR if failures is not None else dg.AssetCheckSeverity.WARN,
        description=(out.not_enough_data.get("top_at_risk", "no list") + ": nothing to validate" if failures is None
                     else f"{len(failures)} failure(s), list withheld" if len(failures) else "the list passes"),
        metadata={"failures": dg.MetadataValue.md(markdown_table(failures, 20) if failures is not None else "")})
    yield dg.AssetCheckResult(
        check_name="no_personal_data", passed=not out.personal_data, severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(out.personal_data)} text(s) look like an e-mail address or phone number"
        if out.personal_data else "no e-mail address or phone number in the page's texts")


def report_assets() -> list:
    return [marts_dashboard]
