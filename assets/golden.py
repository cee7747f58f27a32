"""Golden records: one row per customer, every field chosen by the survivorship rules, with its
provenance (domain code in crm_platform/golden)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.metadata import markdown_table, table_metadata, table_spec
from crm_platform.golden import survivorship as golden
from crm_platform.identity import guards
from resources.identity import IdentityResolution

CUSTOMERS, PROVENANCE = keys.CUSTOMERS, keys.PROVENANCE


@policy.multi_asset(
    specs=[
        table_spec(CUSTOMERS, "Golden customer records: one row per customer_id, each field chosen by the "
                   "survivorship rules in config (trust rank, most recent, most frequent, longest, consent = "
                   "most restrictive).", [keys.CROSSWALK], "core"),
        table_spec(PROVENANCE, "For every golden field: the value, the staged record that supplied it and "
                   "the survivorship rule that chose it.", [keys.CROSSWALK], "core"),
    ],
    check_specs=[dg.AssetCheckSpec("provenance_for_every_field", asset=CUSTOMERS, blocking=True,
                                   description="Every non-null golden field has exactly one provenance row, "
                                               "and every customer id has a golden record.")],
)
def golden_records(warehouse: DuckDBResource, identity: IdentityResolution):
    """Build core.customers and core.customer_field_provenance from the crosswalk; daily, only
    the customers resolved since the last build (golden.build)."""
    rules = identity.survivorship()
    with warehouse.get_connection() as con:
        counts = golden.build(con, rules, incremental=True)
        by_rule = con.sql("SELECT field, rule, source_dataset, count(*) AS n FROM core.customer_field_provenance "
                          "GROUP BY ALL ORDER BY field, n DESC").df()
        meta = {k: table_metadata(con, ".".join(k.path)) for k in (CUSTOMERS, PROVENANCE)}
        n, rows = guards.missing_provenance(con, [o for fr in rules for o in fr.outputs])
    yield dg.MaterializeResult(asset_key=CUSTOMERS, metadata={
        **meta[CUSTOMERS], "rules": dg.MetadataValue.json({fr.name: fr.rule for fr in rules}),
        "build_mode": counts["mode"], "build_mode_reason": counts["reason"],
        "customers_rebuilt_this_run": counts["customers_rebuilt"]})
    yield dg.MaterializeResult(asset_key=PROVENANCE, metadata={
        **meta[PROVENANCE], "values_by_rule_and_source": dg.MetadataValue.md(markdown_table(by_rule, 60))})
    # no customer at all: the crosswalk passed its checks empty, so no source declares contacts
    yield dg.AssetCheckResult(asset_key=CUSTOMERS, check_name="provenance_for_every_field", passed=n == 0,
                              description=f"{n} fields without provenance" if n else
                              f"holds for {counts['customers']:,} customers" if counts["customers"] else
                              "no customer (absent: no source declares contacts)",
                              metadata={"violations": int(n), "examples": dg.MetadataValue.md(markdown_table(rows))})


def golden_assets() -> list:
    return [golden_records]
