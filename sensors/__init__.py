"""Jobs, schedules and sensors.

For now one job refreshes the whole graph; the alerts and automation issue adds the daily schedule,
the landing-folder sensor and the run-failure sensor here.
"""

import dagster as dg

full_refresh_job = dg.define_asset_job(
    "full_refresh", selection=dg.AssetSelection.all(),
    description="Ingest every new landing file and rebuild every derived table.")

jobs = [full_refresh_job]
schedules: list = []
sensors: list = []
