"""The Dagster code location: every asset, check, resource, job, schedule and sensor of the platform.

Loaded by ``workspace.yaml`` (``dagster dev -w workspace.yaml``). The source declaration is read
here, so a broken ``sources.yaml`` stops the code location from loading with a message that says
where and why.
"""

from datetime import timedelta

import dagster as dg

from assets.checks import register_location
from assets.governance import pii_checks
from assets import (alert_assets, customer360_assets, customer360_checks, dashboard_assets, feature_assets,
                    governance_assets,
                    identity_assets, identity_checks, kpi_assets, model_assets, raw_assets, segment_assets,
                    staging_assets, staging_checks)
from crm_platform.core import settings
from crm_platform.ingest.sources import load_sources
from resources import build_resources
from sensors import FOLLOW_PARENTS, RETRAIN, jobs, schedules, sensors

_sources = load_sources(settings.sources_file())

# What the business reads every morning: stale after a day and a bit, failed after two.
FRESH = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))
BUSINESS = {("marts", "kpi_daily"), ("marts", "customer_segments"), ("ml", "churn_scores"), ("ml", "clv_scores"),
            ("alerts", "customer_alerts"), ("alerts", "kpi_alerts"), ("alerts", "outbox"), ("marts", "dashboard")}
# Started by their own triggers, not by their parents: ingestion (landing sensor, schedule), the
# models (weekly schedule, drift sensor) and the request register (requests sensor).
OWN_TRIGGER = {tuple(m) for m in RETRAIN.values()} | {("governance", "requests"), ("governance", "subject_requests")}


# Personal data by layer (crm_platform/governance/pii.py): the source layers hold it, the analytical
# layers carry the customer id only (their no_direct_pii checks), governance keeps hashes.
PII_BY_LAYER = {"raw": "direct", "staging": "direct", "identity": "direct", "core": "direct",
                "features": "pseudonymous", "ml": "pseudonymous", "marts": "pseudonymous", "alerts": "pseudonymous"}


def automate(spec: dg.AssetSpec) -> dg.AssetSpec:
    key = tuple(spec.key.path)
    own = key in OWN_TRIGGER or key[0] == "raw"
    tags = dict(spec.tags)
    if "pii" not in tags and key[0] in PII_BY_LAYER:
        tags["pii"] = PII_BY_LAYER[key[0]]
    return spec.replace_attributes(automation_condition=None if own else FOLLOW_PARENTS, tags=tags,
                                   freshness_policy=FRESH if key in BUSINESS else spec.freshness_policy)


_assets = dg.map_asset_specs(automate, [
    *raw_assets(_sources), *staging_assets(_sources), *identity_assets(), *customer360_assets(),
    *feature_assets(), *segment_assets(), *kpi_assets(), *model_assets(), *alert_assets(),
    *dashboard_assets(), *governance_assets()])

defs = dg.Definitions(
    assets=_assets,
    asset_checks=[*staging_checks(_sources), *identity_checks(_sources), *customer360_checks(_sources),
                  *pii_checks({k for a in _assets for k in a.keys})],
    resources=build_resources(),
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    # DuckDB allows one writer at a time: run the steps of a run one after another.
    executor=dg.in_process_executor,
)
register_location(defs)
