"""KPI assets: daily KPIs and cohort retention (domain code in crm_platform/kpis.py)."""

from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.checks import partition_check, partition_check_spec
from assets.features import PARTITIONS
from assets.metadata import markdown_table, table_metadata, table_spec
from assets.segments import CONFIG as SEGMENT_CONFIG
from assets.segments import DEPS
from crm_platform import kpis, settings
from crm_platform.schemas import CohortRetention, KpiDaily

CONFIG = kpis.load_config(settings.segments_file())
KPI = dg.AssetKey(["marts", "kpi_daily"])
COHORTS = dg.AssetKey(["marts", "cohort_retention"])


def _spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    return table_spec(key, description, DEPS, "kpis")


@dg.multi_asset(
    specs=[
        _spec(KPI, "KPIs of the partition's day over the trailing window: active customers, churn and retention "
              "rate, orders, revenue, average order value, repeat-purchase rate, historic CLV (order value - "
              "returns - support cost), NPS, lead-to-buyer and sales lead conversion. Long format; a rate with "
              "too small a base is null with a note."),
        _spec(COHORTS, "Acquisition-month cohorts x months since acquisition: cohort size, customers ordering "
              "in that month, retention and revenue, as known at the end of the partition's day."),
    ],
    partitions_def=PARTITIONS,
    check_specs=[partition_check_spec(KpiDaily, KPI), partition_check_spec(CohortRetention, COHORTS)],
    pool="duckdb",
)
def kpi_marts(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
    """KPIs and cohort retention as of the end of each partition's day, from events known by then."""
    days = context.partition_keys
    out = {}
    with warehouse.get_connection() as con:
        for day in days:
            out[day] = kpis.build_day(con, SEGMENT_CONFIG, CONFIG, date.fromisoformat(day))
        last = days[-1]
        trend = con.sql(f"""SELECT kpi, round(value, 4) AS value, note FROM marts.kpi_daily
            WHERE kpi_date = DATE '{last}' ORDER BY kpi""").df()
        grid = con.sql(f"""PIVOT (SELECT strftime(cohort_month, '%Y-%m') AS cohort, cohort_size,
                months_since_acquisition AS m, round(retention, 2) AS retention
            FROM marts.cohort_retention WHERE snapshot_date = DATE '{last}' AND months_since_acquisition <= 6)
            ON m USING first(retention) ORDER BY cohort DESC""").df()
        checks = [partition_check(con, "marts.kpi_daily", "kpi_date", days, KpiDaily, KPI),
                  partition_check(con, "marts.cohort_retention", "snapshot_date", days, CohortRetention, COHORTS)]
        meta_k = table_metadata(con, "marts.kpi_daily", where=f"kpi_date = DATE '{last}'", preview_rows=20)
        meta_c = table_metadata(con, "marts.cohort_retention", where=f"snapshot_date = DATE '{last}'")
    values = out[last]["kpis"]
    yield dg.MaterializeResult(asset_key=KPI, metadata={
        **meta_k, "kpis": dg.MetadataValue.md(markdown_table(trend, 20, 80)),
        "not_reported": dg.MetadataValue.json(out[last]["not_reported"]),
        **{f"kpi/{k}": float(v) for k, v in values.items() if v is not None}})
    yield dg.MaterializeResult(asset_key=COHORTS, metadata={
        **meta_c, "retention_first_6_months": dg.MetadataValue.md(markdown_table(grid, 40))})
    yield from checks


def kpi_assets() -> list:
    return [kpi_marts]
