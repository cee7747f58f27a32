"""The Dagster code location: every asset, check, resource, job, schedule and sensor of the platform.

Loaded by ``workspace.yaml`` (``dagster dev -w workspace.yaml``). The source declaration is read
here, so a broken ``sources.yaml`` stops the code location from loading with a message that says
where and why.
"""

import dagster as dg

from assets import (alert_assets, customer360_assets, customer360_checks, feature_assets, golden_assets,
                    governance_assets, identity_assets, identity_checks, marts_assets, ml_assets, pii_checks,
                    policy, raw_assets, report_assets, staging_assets, staging_checks)
from assets.lib.checks import register_location
from crm_platform.core import settings
from crm_platform.ingest.sources import load_sources
from resources import build_resources
from resources.executors import run_executor
from sensors import jobs, schedules, sensors

_sources = load_sources(settings.sources_file())

# in the order of the chain; owners, tags, automation and freshness: assets/policy.py
_assets = policy.apply([
    *raw_assets(_sources), *staging_assets(_sources), *identity_assets(), *golden_assets(), *customer360_assets(),
    *feature_assets(), *marts_assets(), *ml_assets(), *alert_assets(), *report_assets(), *governance_assets()])

defs = dg.Definitions(
    assets=_assets,
    asset_checks=[*staging_checks(_sources), *identity_checks(_sources), *customer360_checks(_sources),
                  *pii_checks({k for a in _assets for k in a.keys})],
    resources=build_resources(),
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    # CRM_PLATFORM_EXECUTOR, by default in_process: DuckDB allows one writer, a run one Spark session
    executor=run_executor(),
)
register_location(defs)
