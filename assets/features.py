"""Feature assets: daily point-in-time snapshots of every customer (domain code in
crm_platform/features.py)."""

from datetime import date
import time

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.metadata import markdown_table, table_metadata
from crm_platform import features, settings
from crm_platform.schemas import CustomerFeatures
from crm_platform.validation import validate_table

CONFIG = features.load_config(settings.features_file())
PARTITIONS = dg.DailyPartitionsDefinition(start_date=CONFIG.partitions_start.isoformat())
KEY = dg.AssetKey(["features", "customer_features"])


def _partition(day: str) -> str:
    return f"(SELECT * FROM {features.TABLE} WHERE snapshot_date = DATE '{day}')"


@dg.asset(
    key=KEY, partitions_def=PARTITIONS, group_name="features", kinds={"duckdb", "sql"},
    owners=["team:data"], tags={"layer": "features"}, pool="duckdb",
    deps=[dg.AssetKey(["core", "customer_events"]), dg.AssetKey(["identity", "crosswalk"]),
          dg.AssetKey(["staging", "contacts"])],
    check_specs=[dg.AssetCheckSpec(
        "pandera_CustomerFeatures", asset=KEY, blocking=True,
        description="Validates the snapshot(s) just written against the Pandera model CustomerFeatures: "
                    "one row per customer, shares within [0, 1], nested windows, and no feature computed "
                    "from an event known after the end of its snapshot day.")],
)
def customer_features(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
    """Point-in-time features of every customer as known at the end of the partition's day: RFM
    over the configured windows, tenure, order value, return rate, discount share, category
    breadth, e-mail rates, tickets, NPS, web sessions and cart abandonment, lead origin and the
    engagement score (see docs/customer360.md). Reads only events with known_at before the end of
    the day, so a snapshot never changes when later events arrive."""
    days = context.partition_keys
    rows, seconds, results = {}, {}, []
    with warehouse.get_connection() as con:
        for day in days:
            t = time.perf_counter()
            rows[day] = features.build_snapshot(con, CONFIG, date.fromisoformat(day))
            seconds[day] = round(time.perf_counter() - t, 2)
            results.append(validate_table(con, _partition(day), CustomerFeatures))
        last = _partition(days[-1])
        summary = con.sql(f"SELECT column_name AS feature, min, max, round(TRY_CAST(avg AS DOUBLE), 3) AS mean, "
                          f"null_percentage FROM (SUMMARIZE SELECT * FROM {last}) WHERE column_name NOT IN "
                          f"('snapshot_date', 'customer_id')").df()
        meta = table_metadata(con, last)
    failed = [r for r in results if not r.passed]
    yield dg.MaterializeResult(metadata={
        **meta, "dagster/row_count": dg.MetadataValue.int(sum(rows.values())),
        "customers_per_snapshot": dg.MetadataValue.json(rows), "seconds_per_snapshot": dg.MetadataValue.json(seconds),
        "feature_summary": dg.MetadataValue.md(markdown_table(summary, 60))})
    yield dg.AssetCheckResult(
        check_name="pandera_CustomerFeatures", passed=not failed,
        description="; ".join(r.summary() for r in (failed or results[-1:])),
        metadata={"snapshots_validated": len(results), "rows_validated": sum(r.rows for r in results),
                  "failure_count": sum(r.failure_count for r in results)})


def feature_assets() -> list:
    return [customer_features]
