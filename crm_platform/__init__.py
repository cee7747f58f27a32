"""crm_platform: CRM analytics on Dagster, from source ingestion to golden customers, models and alerts.

Domain logic lives in this package as plain functions on DuckDB connections and DataFrames; the
Dagster assets in ``assets/`` are thin wrappers around it.
"""

__version__ = "0.1.0"
