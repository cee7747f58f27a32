"""Governance assets: the register of erasure and export requests, carrying them out, the audit log
and the checks that keep personal data out of the analytical layers (domain code in
crm_platform/governance)."""

from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.checks import step_check, step_check_spec
from assets.lib.metadata import markdown_table, table_metadata
from crm_platform.core import settings
from crm_platform.core import audit
from crm_platform.governance import pii, requests
from crm_platform.governance.erasure import LIST_TABLE, list_path, sync_list_table
from crm_platform.contracts.schemas import AuditLog, ErasedIdentifiers, GovernanceRequests
from crm_platform.contracts.validation import validate_table
from crm_platform.core.warehouse import connect, table_exists
from resources.alerts import Alerting
from resources.warehouse import LandingZone, read_only

REQUESTS = keys.REQUESTS


@policy.asset(key=REQUESTS, group_name="governance", kinds={"duckdb", "python"}, tags={"pii": "identifier"},
              check_specs=[step_check_spec(GovernanceRequests, REQUESTS),
                           dg.AssetCheckSpec("no_invalid_requests", asset=REQUESTS, description=(
                               "Every request file was readable and complete; invalid ones are registered with "
                               "the reason so the sender can be answered."))])
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
    yield step_check(GovernanceRequests, result)
    yield dg.AssetCheckResult(check_name="no_invalid_requests", passed=counts["new_invalid"] == 0,
                              severity=dg.AssetCheckSeverity.WARN,
                              description=f"{counts['new']} new request(s), {counts['new_invalid']} invalid, "
                                          f"{counts['pending']} pending")


SUBJECT_REQUESTS = keys.SUBJECT_REQUESTS
AUDIT = "governance.audit_log"


@policy.asset(key=SUBJECT_REQUESTS, group_name="governance", deps=[REQUESTS], kinds={"duckdb", "python"},
              tags={"pii": "none"},
              check_specs=[
                  dg.AssetCheckSpec("erasures_verified", asset=SUBJECT_REQUESTS, description=(
                      "Every erasure carried out left no trace: a scan of every table and file under the home "
                      "found none of the person's identifiers.")),
                  step_check_spec(AuditLog, SUBJECT_REQUESTS), step_check_spec(ErasedIdentifiers, SUBJECT_REQUESTS)])
def subject_requests(context: dg.AssetExecutionContext, warehouse: DuckDBResource, landing: LandingZone):
    """Carries out the pending erasure and export requests of ``governance.requests``: an erasure
    removes the person from every table and file, puts their hashed identifiers on the erasure list
    and writes a receipt under ``governance/receipts/``; an export writes ``exports/<request id>.json``.
    Each is recorded in ``governance.audit_log``. Only request ids, counts and outcomes are shown here."""
    paths = settings.Paths(Path(landing.home))
    results = requests.carry_out(lambda: connect(warehouse.database), paths, landing.sources())
    with warehouse.get_connection() as con:
        audit.ensure(con)
        sync_list_table(con, paths)
        checks = [validate_table(con, AUDIT, AuditLog, allow_empty=True),
                  validate_table(con, LIST_TABLE, ErasedIdentifiers, allow_empty=not list_path(paths).exists())]
        recent = con.sql(f"SELECT logged_at, action, actor, subject, outcome FROM {AUDIT} "
                         "ORDER BY logged_at DESC LIMIT 20").df()
        listed = con.execute(f"SELECT count(*) FROM {LIST_TABLE}").fetchall()[0][0]
    frame = pd.DataFrame(results, columns=["request_id", "request_type", "status", "verified", "rows_removed", "reason"])
    yield dg.MaterializeResult(metadata={
        "requests_carried_out": len(results), "erasure_list_entries": int(listed),
        "this_run": dg.MetadataValue.md(markdown_table(frame, 50, 80)),
        "audit_log_latest": dg.MetadataValue.md(markdown_table(recent, 20, 60))})
    erasures = [r for r in results if r["request_type"] == "erase" and r["verified"] is not None]
    failed = [r["request_id"] for r in erasures if not r["verified"]]
    yield dg.AssetCheckResult(check_name="erasures_verified", passed=not failed, severity=dg.AssetCheckSeverity.ERROR,
                              description=(f"{len(erasures)} erasure(s) this run, all verified" if erasures else
                                           "no erasure this run") if not failed else
                              f"traces left after erasure {', '.join(failed)}: see the receipts")
    for model, result in zip((AuditLog, ErasedIdentifiers), checks):
        yield step_check(model, result)


def pii_check(key: dg.AssetKey, table: str) -> dg.AssetChecksDefinition:
    """Fails when ``table`` (written by an analytical asset) holds a column of direct personal data,
    or text that looks like an e-mail address or a phone number."""

    @policy.asset_check(asset=key, name="no_direct_pii", description=(
        f"{table} carries the customer_id only: no column of direct personal data (names, e-mail, phone, "
        "address, birth date, free text) and no value that looks like an e-mail address or phone number."))
    def no_direct_pii(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        with read_only(warehouse) as con:
            if not table_exists(con, table):
                # not created (too little data, e.g. nobody to cluster): nothing to scan, said as a warning
                return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                           description=f"{table} does not exist: nothing to scan")
            cols = con.execute(f"SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name || '.' || "
                               f"table_name = '{table}'").fetchall()
            named = pii.direct_columns([c for c, _ in cols])
            text = [c for c, t in cols if "VARCHAR" in t]
            content = [(c, n) for c, n in con.execute(pii.content_violations_sql(table, text)).fetchall() if n]
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        problems = [f"column {c} is personal data" for c in named] + \
                   [f"{n} value(s) of {c} look like an e-mail address or phone number" for c, n in content]
        return dg.AssetCheckResult(
            passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(problems) if problems else
            f"{len(cols)} columns, {len(text)} text columns over {rows:,} rows: no personal data",
            metadata={"columns": len(cols), "text_columns_scanned": len(text), "rows": int(rows),
                      "pii_columns": dg.MetadataValue.json(named)})

    return no_direct_pii


# the table of an analytical asset whose key is not its table's name
TABLE_OF = {keys.OUTBOX: "alerts.delivery_log"}
# analytical assets that are files, not tables: they scan their own text (the dashboard's no_personal_data)
FILES = {keys.DASHBOARD}


def pii_checks(asset_keys) -> list[dg.AssetChecksDefinition]:
    """A ``no_direct_pii`` check on every asset of the analytical layers."""
    return [pii_check(k, TABLE_OF.get(k, ".".join(k.path))) for k in sorted(asset_keys, key=str)
            if k.path[0] in pii.ANALYTICAL_LAYERS and not k.path[-1].endswith("_model")  # models are registry files
            and k not in FILES]


def governance_assets() -> list:
    return [request_register, subject_requests]
