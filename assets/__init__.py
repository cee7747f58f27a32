"""Dagster assets, thin over the domain code in ``crm_platform``: one module per stage."""

from assets.checks import staging_checks
from assets.ingestion import raw_assets
from assets.staging import staging_assets

__all__ = ["raw_assets", "staging_assets", "staging_checks"]
