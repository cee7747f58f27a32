"""KPI assets: daily KPIs and cohort retention (domain code in crm_platform/marts/kpis.py)."""

from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.checks import partition_check, partition_check_spec
from assets.features import PARTITIONS, SINGLE_RUN, TIMELINE_DEPS
from assets.metadata import image, markdown_table, table_metadata, table_spec
from crm_platform.marts import attribution
from crm_platform.marts import kpis
from crm_platform.core import settings
from crm_platform.core.plots import trend_plot
from crm_platform.contracts.schemas import ChannelAttribution, CohortRetention, KpiDaily
from crm_platform.contracts.vocabularies import KPIS

CONFIG = kpis.load_config(settings.segments_file())
KPI = dg.AssetKey(["marts", "kpi_daily"])
# the KPIs plotted over time in the asset's metadata
TREND = ("active_customers", "churn_rate", "revenue", "repeat_purchase_rate", "nps")
SHARES = frozenset(k for k in TREND if KPIS[k][1])
COHORTS = dg.AssetKey(["marts", "cohort_retention"])


def kpi_specs(deps) -> list[dg.AssetSpec]:
    """The KPI tables, written by the lifecycle step (assets/segments.py) from the transitions it
    computes; the engagement KPI also reads the day's feature snapshot."""
    deps = [*deps, dg.AssetKey(["features", "customer_features"])]
    return [
        table_spec(KPI, "KPIs of the partition's day over the trailing window: active customers, churn and retention "
                   "rate, orders, revenue, average order value, repeat-purchase rate, historic CLV (order value - "
                   "returns - support cost), NPS, engagement, lead-to-buyer and sales lead conversion, CAC and ROMI "
                   "per channel. Long format; a rate with too small a base is null with a note.", deps, "kpis"),
        table_spec(COHORTS, "Acquisition-month cohorts x months since acquisition: cohort size, customers ordering "
                   "in that month, retention and revenue, as known at the end of the partition's day.", deps, "kpis"),
    ]


KPI_CHECKS = [partition_check_spec(KpiDaily, KPI), partition_check_spec(CohortRetention, COHORTS)]


def kpi_results(con, days: list[str], out: dict) -> list:
    """Materializations (with the KPIs, their trend and the cohort grid) and checks of the KPI
    tables, after ``kpis.build_day`` of ``days`` returned ``out``."""
    last = days[-1]
    trend = con.sql(f"""SELECT kpi, round(value, 4) AS value, note FROM marts.kpi_daily
        WHERE kpi_date = DATE '{last}' ORDER BY kpi""").df()
    grid = con.sql(f"""PIVOT (SELECT strftime(cohort_month, '%Y-%m') AS cohort, cohort_size,
            months_since_acquisition AS m, round(retention, 2) AS retention
        FROM marts.cohort_retention WHERE snapshot_date = DATE '{last}' AND months_since_acquisition <= 6)
        ON m USING first(retention) ORDER BY cohort DESC""").df()
    checks = [partition_check(con, "marts.kpi_daily", "kpi_date", days, KpiDaily, KPI),
              partition_check(con, "marts.cohort_retention", "snapshot_date", days, CohortRetention, COHORTS,
                              allow_empty={d for d in days if out[d]["orders_known"] == 0})]
    history = con.sql(f"""PIVOT (SELECT kpi_date, kpi, value FROM marts.kpi_daily WHERE channel IS NULL
            AND kpi IN {TREND} AND kpi_date BETWEEN DATE '{last}' - INTERVAL 90 DAY AND DATE '{last}')
        ON kpi IN {TREND} USING first(value) ORDER BY kpi_date""").df().set_index("kpi_date")
    meta_k = table_metadata(con, "marts.kpi_daily", where=f"kpi_date = DATE '{last}'", preview_rows=20)
    meta_c = table_metadata(con, "marts.cohort_retention", where=f"snapshot_date = DATE '{last}'")
    values = out[last]["kpis"]
    return [
        dg.MaterializeResult(asset_key=KPI, metadata={
            **meta_k, "kpis": dg.MetadataValue.md(markdown_table(trend, 20, 80)),
            "not_reported": dg.MetadataValue.json(out[last]["not_reported"]),
            "kpi_trend": image(trend_plot(history, f"KPIs up to {last} (30-day windows)", SHARES), "KPI trend"),
            **{f"kpi/{k}": float(v) for k, v in values.items() if v is not None}}),
        dg.MaterializeResult(asset_key=COHORTS, metadata={
            **meta_c, "retention_first_6_months": dg.MetadataValue.md(markdown_table(grid, 40))}),
        *checks]


ATTRIBUTION = dg.AssetKey(["marts", "channel_attribution"])


@dg.asset(
    key=ATTRIBUTION, partitions_def=PARTITIONS, backfill_policy=SINGLE_RUN, group_name="kpis", kinds={"duckdb", "sql"},
    owners=["team:data"], tags={"layer": "marts"}, pool="duckdb", deps=TIMELINE_DEPS,
    check_specs=[partition_check_spec(ChannelAttribution, ATTRIBUTION)],
)
def channel_attribution(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
    """The orders placed on the partition's day, credited to the marketing touches (UTM-tagged
    web visits, newsletter clicks, sales leads) in the lookback window before each: first-touch,
    last-touch and linear multi-touch; ``direct`` when none. CAC and ROMI per channel in
    marts/kpi_daily use it."""
    days = context.partition_keys
    with warehouse.get_connection() as con:
        out = {day: attribution.build_day(con, date.fromisoformat(day), CONFIG.attribution_lookback_days)
               for day in days}
        last = days[-1]
        empty = out[last]["orders"] == 0
        check = partition_check(con, "marts.channel_attribution", "order_date", days, ChannelAttribution,
                                ATTRIBUTION, allow_empty={d for d in days if out[d]["orders"] == 0})
        by_rule = con.sql(f"""PIVOT (SELECT channel, rule, round(sum(revenue_credit), 2) AS revenue
                FROM marts.channel_attribution WHERE order_date = DATE '{last}' GROUP BY ALL)
            ON rule USING first(revenue) ORDER BY channel""").df() if not empty else None
        meta = table_metadata(con, "marts.channel_attribution", where=f"order_date = DATE '{last}'")
    yield dg.MaterializeResult(metadata={
        **meta, "orders": out[last]["orders"], "lookback_days": CONFIG.attribution_lookback_days,
        "revenue_by_channel_and_rule": dg.MetadataValue.md(
            markdown_table(by_rule, 20) if by_rule is not None else "_no orders that day_")})
    yield check


def kpi_assets() -> list:
    """The KPI group's own step; the KPI tables themselves are written by the lifecycle step."""
    return [channel_attribution]
