"""Jobs, schedules and sensors.

`full_refresh` rebuilds every table that is not partitioned; `daily_snapshots` builds the
feature snapshot, the segments and the KPIs of a day (or a backfilled range). The alerts and automation
issue adds the daily schedule, the landing-folder sensor and the run-failure sensor here.
"""

import dagster as dg

# every asset partitioned by day
DAILY = dg.AssetSelection.assets(dg.AssetKey(["features", "customer_features"]),
                                 dg.AssetKey(["marts", "lifecycle_transitions"]),
                                 dg.AssetKey(["marts", "customer_segments"]),
                                 dg.AssetKey(["marts", "kpi_daily"]), dg.AssetKey(["marts", "cohort_retention"]),
                                 dg.AssetKey(["marts", "behaviour_clusters"]),
                                 dg.AssetKey(["marts", "behaviour_cluster_profiles"]),
                                 dg.AssetKey(["marts", "lookalikes"]), dg.AssetKey(["marts", "channel_attribution"]),
                                 dg.AssetKey(["ml", "churn_scores"]), dg.AssetKey(["ml", "clv_scores"]),
                                 dg.AssetKey(["ml", "next_best_offer"]), dg.AssetKey(["ml", "lead_scores"]))

full_refresh_job = dg.define_asset_job(
    "full_refresh", selection=dg.AssetSelection.all() - DAILY,
    description="Ingest every new landing file and rebuild every derived table that is not partitioned by day.")

daily_job = dg.define_asset_job(
    "daily_snapshots", selection=DAILY,
    description="The point-in-time features, segments and KPIs of one day (or a backfilled range of days).")

jobs = [full_refresh_job, daily_job]
schedules: list = []
sensors: list = []
