"""Dagster assets, thin over the domain code in ``crm_platform``: one module per stage."""

import warnings

import dagster as dg

# The daily assets rely on BackfillPolicy.single_run() (one run per backfilled range); Dagster
# still marks the parameter beta. Said once here instead of once per asset on every load.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

from assets.alerts import alert_assets
from assets.checks import customer360_checks, identity_checks, staging_checks
from assets.customer360 import customer360_assets
from assets.dashboard import dashboard_assets
from assets.features import feature_assets
from assets.governance import governance_assets
from assets.identity import identity_assets
from assets.ingestion import raw_assets
from assets.kpis import kpi_assets
from assets.models import model_assets
from assets.segments import segment_assets
from assets.staging import staging_assets

__all__ = ["alert_assets", "customer360_assets", "customer360_checks", "dashboard_assets", "feature_assets", "governance_assets", "identity_assets", "identity_checks", "kpi_assets", "model_assets", "raw_assets",
           "segment_assets", "staging_assets", "staging_checks"]
