"""The nightly schedules: time follows the data, never the wall clock.

``nightly_refresh`` loads what the sources dropped (the core refresh); the core refresh records
the newest day with data (``record_data_days``), which is where the daily partitions end.
``daily_snapshots_schedule`` then computes every day with data that has not been delivered yet, as
one run - and nothing when no new day arrived, so a quiet night delivers no alert for an empty day.
"""

from datetime import date, timedelta

import dagster as dg

from assets.lib import keys
from assets.lib.partitions import PARTITIONS
from crm_platform.core import settings
from sensors.defaults import schedule_status
from crm_platform.core.days import newest_data_day

# the asset whose materialization marks a day as done: its alerts were delivered
DELIVERED = keys.OUTBOX
# a longer gap (an outage) is left to a backfill the user starts: old alerts are rarely worth sending
MAX_CATCH_UP_DAYS = 31


def range_tags(start: date, end: date) -> dict:
    """The run tags of a single-run backfill of the days ``start`` .. ``end``."""
    return {"dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat()}


def days_to_compute(newest_data_day: date | None, loaded_last: date, done: set[str]) -> tuple[date, date] | str:
    """The first and last day to compute, or why there is none. ``loaded_last`` is the last daily
    partition of the loaded code location, ``done`` the days already delivered."""
    if newest_data_day is None:
        return "no event on the timeline yet: nothing to compute"
    if newest_data_day > loaded_last:
        return (f"data up to {newest_data_day} has arrived, but this code location was loaded with daily "
                f"partitions up to {loaded_last}: reload it (Deployment > Reload; dagster-daemon reloads "
                "by itself within a minute) and the next tick computes the new days")
    newest_done = max((date.fromisoformat(d) for d in done), default=None)
    if newest_done is not None and newest_done >= newest_data_day:
        return f"no new day with data: {newest_data_day} is the newest and was delivered"
    first = newest_data_day if newest_done is None else newest_done + timedelta(days=1)
    return max(first, newest_data_day - timedelta(days=MAX_CATCH_UP_DAYS - 1)), newest_data_day


def daily_schedule(job) -> dg.ScheduleDefinition:
    @dg.schedule(name="daily_snapshots_schedule", job=job, cron_schedule="30 2 * * *",
                 default_status=schedule_status(),
                 description="Every night at 02:30 (UTC), after the core refresh: the features, segments, KPIs, "
                             "scores and alerts of every day with data not delivered yet (one run); nothing on a "
                             "night without new data.")
    def _schedule(context: dg.ScheduleEvaluationContext):
        span = days_to_compute(newest_data_day(settings.paths().last_day_file),
                               PARTITIONS.end.date() - timedelta(days=1),
                               context.instance.get_materialized_partitions(DELIVERED))
        if isinstance(span, str):
            return dg.SkipReason(span)
        first, last = span
        return dg.RunRequest(run_key=f"days:{first}:{last}", tags=range_tags(first, last))

    return _schedule


def refresh_schedule(job) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="nightly_refresh", job=job, cron_schedule="0 2 * * *", default_status=schedule_status(),
        description="Every night at 02:00 (UTC): ingest what the sources dropped and rebuild the core; "
                    "it records the newest day with data, where the daily partitions end.")
