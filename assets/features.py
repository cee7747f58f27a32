"""Feature assets: daily point-in-time snapshots of every customer (domain code in
crm_platform/features/snapshots.py)."""

from datetime import date
import time

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.checks import partition_check, partition_check_spec
from assets.lib.metadata import markdown_table, table_metadata
from assets.lib.config import FEATURES as CONFIG
from assets.lib.partitions import daily_asset
from crm_platform.features import snapshots as features
from crm_platform.contracts.schemas import CustomerFeatures
from resources.warehouse import heavy

KEY = keys.FEATURES


def _partition(day: str) -> str:
    return f"(SELECT * FROM {features.TABLE} WHERE snapshot_date = DATE '{day}')"


@daily_asset(
    key=KEY, group_name="features", kinds=set(policy.HEAVY_KINDS), deps=keys.TIMELINE_DEPS,
    check_specs=[partition_check_spec(CustomerFeatures, KEY)],
)
def customer_features(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
    """Point-in-time features of every customer as known at the end of the partition's day: RFM
    over the configured windows, tenure, order value, return rate, discount share, category
    breadth, e-mail rates, tickets, NPS, web sessions and cart abandonment, lead origin and the
    engagement score (see docs/customer360.md). Reads only events with known_at before the end of
    the day, so a snapshot never changes when later events arrive."""
    days = context.partition_keys
    rows, seconds = {}, {}
    with warehouse.get_connection() as con:
        with heavy(warehouse, con) as engine:
            for day in days:
                t = time.perf_counter()
                rows[day] = features.build_snapshot(engine, CONFIG, date.fromisoformat(day))
                seconds[day] = round(time.perf_counter() - t, 2)
        check = partition_check(con, features.TABLE, "snapshot_date", days, CustomerFeatures, KEY)
        last = _partition(days[-1])
        summary = con.sql(f"SELECT column_name AS feature, min, max, round(TRY_CAST(avg AS DOUBLE), 3) AS mean, "
                          f"null_percentage FROM (SUMMARIZE SELECT * FROM {last}) WHERE column_name NOT IN "
                          f"('snapshot_date', 'customer_id')").df()
        meta = table_metadata(con, features.TABLE, where=f"snapshot_date = DATE '{days[-1]}'")
    yield dg.MaterializeResult(metadata={
        **meta, "dagster/row_count": dg.MetadataValue.int(sum(rows.values())),
        "customers_per_snapshot": dg.MetadataValue.json(rows), "seconds_per_snapshot": dg.MetadataValue.json(seconds),
        "feature_summary": dg.MetadataValue.md(markdown_table(summary, 60))})
    yield check


def feature_assets() -> list:
    return [customer_features]
