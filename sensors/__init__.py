"""Jobs, schedules and sensors: how the platform runs by itself.

* ``daily_refresh`` runs the whole chain for one day that already has data: ingestion, identity,
  golden records, timeline and the suppression list, then that day's features, segments, KPIs,
  scores, alerts, delivery and uplift (by hand, e.g. to recompute a day).
* ``refresh_core`` is the part not partitioned by day: nightly (``nightly_refresh``), and by the
  ``landing_files`` sensor when a source drops a file. It records the newest day with data, where
  the daily partitions end (sensors/days.py): time follows the data, not the wall clock.
* ``daily_snapshots`` is the day-partitioned part: ``daily_snapshots_schedule`` runs it after the
  nightly refresh for every day with data not delivered yet; also for backfills of a range of days
  (one run per backfill: every daily asset loops over its days in one connection). The
  ``follow_parents`` automation sensor brings the latest day's partitions up to date when a parent
  changes (each asset's AutomationCondition: ``FOLLOW_PARENTS`` in assets/policy.py).
* ``retrain_models`` trains the four models behind their quality gates: weekly by schedule, and
  for one model when the ``drift_retraining`` sensor sees its scores drift.
* ``governance_requests`` registers erasure/export request files and carries them out (``subject_requests`` sensor).
* ``run_failures`` turns a failed run into a data-quality alert.
"""

import dagster as dg

from assets import policy
from assets.lib import keys
from sensors.folders import landing_sensor, requests_sensor
from sensors.runs import drift_sensor, run_failures
from sensors.days import daily_schedule, refresh_schedule
from sensors.defaults import schedule_status, sensor_status

MODELS = dg.AssetSelection.assets(*keys.SCORED_BY.values())
REQUESTS = dg.AssetSelection.assets(keys.REQUESTS, keys.SUBJECT_REQUESTS)
# every asset partitioned by day (assets/policy.py tags them)
DAILY = dg.AssetSelection.tag(policy.CADENCE, policy.DAILY)

CHAIN = dg.AssetSelection.all() - MODELS - REQUESTS

chain_job = dg.define_asset_job(
    "daily_refresh", selection=CHAIN,
    description="The whole chain for one day: ingest new landing files, resolve identities, rebuild the golden "
                "records and the timeline, then the day's features, segments, KPIs, scores, alerts and delivery.")

refresh_job = dg.define_asset_job(
    "refresh_core", selection=dg.AssetSelection.all() - DAILY - MODELS - REQUESTS,
    description="Ingest every new landing file and rebuild every table that is not partitioned by day: "
                "staging, identity resolution, golden records, the timeline, the contact suppression list.")

daily_job = dg.define_asset_job(
    "daily_snapshots", selection=DAILY,
    description="The point-in-time features, segments, KPIs, scores and alerts of one day (or a backfilled "
                "range of days, in one run), with the delivery of that day's alerts.")

retrain_job = dg.define_asset_job(
    "retrain_models", selection=MODELS,
    description="Train the churn, CLV, next-best-offer and lead-scoring models; each quality gate decides "
                "whether the challenger becomes champion.")

requests_job = dg.define_asset_job("governance_requests", selection=REQUESTS,
                                   description="Register the erasure and export request files and carry out the pending ones.")

jobs = [chain_job, refresh_job, daily_job, retrain_job, requests_job]

schedules = [
    refresh_schedule(refresh_job), daily_schedule(daily_job),
    dg.ScheduleDefinition(name="weekly_retraining", job=retrain_job, cron_schedule="0 3 * * 0",
                          execution_timezone="Europe/Berlin", default_status=schedule_status(),
                          description="Sundays at 03:00: retrain every model behind its quality gate."),
]

automation = dg.AutomationConditionSensorDefinition(
    "follow_parents", target=dg.AssetSelection.all(), default_status=sensor_status(),
    description="Evaluates each asset's AutomationCondition: derived tables and the latest day's partitions "
                "follow their parents without a hand-written job.")

sensors = [landing_sensor(refresh_job), requests_sensor(requests_job), run_failures, drift_sensor(retrain_job),
           automation]
