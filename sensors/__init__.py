"""Jobs, schedules and sensors.

`full_refresh` rebuilds every table that is not partitioned; `daily_features` builds the feature
snapshot of a day (or a backfilled range). The alerts and automation issue adds the daily schedule,
the landing-folder sensor and the run-failure sensor here.
"""

import dagster as dg

from assets.features import PARTITIONS

DAILY = dg.AssetSelection.assets(dg.AssetKey(["features", "customer_features"]))

full_refresh_job = dg.define_asset_job(
    "full_refresh", selection=dg.AssetSelection.all() - DAILY,
    description="Ingest every new landing file and rebuild every derived table that is not partitioned by day.")

daily_features_job = dg.define_asset_job(
    "daily_features", selection=DAILY, partitions_def=PARTITIONS,
    description="The point-in-time feature snapshot of one day (or a backfilled range of days).")

jobs = [full_refresh_job, daily_features_job]
schedules: list = []
sensors: list = []
