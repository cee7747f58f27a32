"""Governance assets: the register of erasure and export requests (domain code in
crm_platform/governance)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.metadata import markdown_table, table_metadata
from crm_platform.governance import requests
from crm_platform.schemas import GovernanceRequests
from crm_platform.validation import validate_table
from resources.alerts import Alerting

REQUESTS = dg.AssetKey(["governance", "requests"])


@dg.asset(key=REQUESTS, group_name="governance", kinds={"duckdb", "python"}, owners=["team:data"],
          tags={"layer": "governance", "pii": "identifier"}, pool="duckdb",
          check_specs=[dg.AssetCheckSpec(f"pandera_{GovernanceRequests.__name__}", asset=REQUESTS,
                                         description=(GovernanceRequests.__doc__ or "").strip()),
                       dg.AssetCheckSpec("no_invalid_requests", asset=REQUESTS, description=(
                           "Every request file was readable and complete; invalid ones are registered with the "
                           "reason so the sender can be answered."))])
def request_register(context: dg.AssetExecutionContext, warehouse: DuckDBResource, alerting: Alerting):
    """Erasure and export requests dropped as JSON files into ``CRM_PLATFORM_HOME/requests/`` (picked
    up by the ``subject_requests`` sensor): each file registered once, ``pending`` until carried out
    or ``invalid`` with the reason."""
    folder = alerting.paths.requests
    with warehouse.get_connection() as con:
        counts = requests.register(con, folder)
        result = validate_table(con, requests.TABLE, GovernanceRequests,
                                allow_empty=not requests.request_files(folder))
        invalid = con.sql(f"SELECT source_file, reason FROM {requests.TABLE} WHERE status = 'invalid' "
                          "ORDER BY received_at DESC LIMIT 20").df()
        meta = table_metadata(con, requests.TABLE, preview_rows=0)
    meta.pop("preview")   # identifiers are personal data: no preview
    yield dg.MaterializeResult(metadata={**meta, **counts, "folder": str(folder),
                                         "invalid": dg.MetadataValue.md(markdown_table(invalid, 20, 80))})
    yield dg.AssetCheckResult(check_name=f"pandera_{GovernanceRequests.__name__}", passed=result.passed,
                              description=result.summary())
    yield dg.AssetCheckResult(check_name="no_invalid_requests", passed=counts["new_invalid"] == 0,
                              severity=dg.AssetCheckSeverity.WARN,
                              description=f"{counts['new']} new request(s), {counts['new_invalid']} invalid, "
                                          f"{counts['pending']} pending")


def governance_assets() -> list:
    return [request_register]
