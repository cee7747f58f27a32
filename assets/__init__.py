"""Dagster assets, thin over the domain code in ``crm_platform``: one module per stage of the chain,
named as the domain's stage packages (ingest, staging, identity, golden, customer360, features,
marts, ml, alerts, reports, governance). ``lib`` holds what they share, ``policy`` what applies
to all of them."""

import warnings

import dagster as dg

# The daily assets rely on BackfillPolicy.single_run() (one run per backfilled range); Dagster
# still marks the parameter beta. Said once here instead of once per asset on every load.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

from assets.alerts import alert_assets
from assets.customer360 import customer360_assets
from assets.features import feature_assets
from assets.golden import golden_assets
from assets.governance import governance_assets, pii_checks
from assets.identity import identity_assets
from assets.ingest import raw_assets
from assets.lib.checks import customer360_checks, identity_checks, staging_checks
from assets.marts import marts_assets
from assets.ml import ml_assets
from assets.reports import report_assets
from assets.staging import staging_assets

__all__ = ["alert_assets", "customer360_assets", "customer360_checks", "feature_assets", "golden_assets",
           "governance_assets", "identity_assets", "identity_checks", "marts_assets", "ml_assets", "pii_checks",
           "raw_assets", "report_assets", "staging_assets", "staging_checks"]
