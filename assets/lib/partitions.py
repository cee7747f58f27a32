"""The daily partitions every day-partitioned asset shares, and the decorators that apply them.

One span of days for features, segments, KPIs, scores, alerts and the dashboard: from the first day
with data (unless features.yaml names one) to the newest day with data, never the wall clock. A
backfill of a range of days is one run: every daily asset loops over its days in one connection.
"""

from datetime import timedelta

import dagster as dg

from assets import policy
from assets.lib import config
from crm_platform.core import settings
from crm_platform.core.days import partitions_end, partitions_start

PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=partitions_start(config.FEATURES.partitions_start, settings.paths().first_day_file).isoformat(),
    end_date=(partitions_end(settings.paths().last_day_file) + timedelta(days=1)).isoformat())
SINGLE_RUN = dg.BackfillPolicy.single_run()


def daily_asset(**kw):
    """``@dg.asset`` of a table with one partition per day."""
    return policy.asset(partitions_def=PARTITIONS, backfill_policy=SINGLE_RUN, **kw)


def daily_multi_asset(**kw):
    """``@dg.multi_asset`` of tables with one partition per day."""
    return policy.multi_asset(partitions_def=PARTITIONS, backfill_policy=SINGLE_RUN, **kw)
