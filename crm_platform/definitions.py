"""The Dagster code location: every asset, check, resource and job of the platform.

Loaded by ``workspace.yaml`` (``dagster dev -w workspace.yaml``). The source declaration is read
here, so a broken ``sources.yaml`` stops the code location from loading with a message that says
where and why.
"""

import dagster as dg

from assets import (customer360_assets, customer360_checks, feature_assets, identity_assets, identity_checks,
                    kpi_assets, model_assets, raw_assets, segment_assets, staging_assets, staging_checks)
from crm_platform import settings
from crm_platform.sources import load_sources
from resources import build_resources
from sensors import jobs, schedules, sensors

_sources = load_sources(settings.sources_file())

defs = dg.Definitions(
    assets=[*raw_assets(_sources), *staging_assets(_sources), *identity_assets(), *customer360_assets(),
            *feature_assets(), *segment_assets(), *kpi_assets(), *model_assets()],
    asset_checks=[*staging_checks(), *identity_checks(), *customer360_checks()],
    resources=build_resources(),
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    # DuckDB allows one writer at a time: run the steps of a run one after another.
    executor=dg.in_process_executor,
)
