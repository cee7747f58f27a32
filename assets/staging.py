"""Staging layer: one standardized table per canonical entity, unioned over all systems."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.metadata import markdown_table, table_metadata
from crm_platform.staging import tables as staging
from crm_platform.contracts.entities import entity
from crm_platform.ingest.sources import SourceConfig
from resources.warehouse import LandingZone, heavy

MATCH_FIELDS = ("email_std", "phone_e164", "last_name_std", "first_name_std", "birth_date",
                "street_std", "postcode", "city_std")


def build_staging_asset(entity_name: str, cfg: SourceConfig) -> dg.AssetsDefinition:
    ent = entity(entity_name)

    @policy.asset(
        key=keys.staging(entity_name),
        deps=[keys.raw(ds.key) for ds in staging.datasets_of(cfg, entity_name)],
        group_name="staging",
        kinds=set(policy.HEAVY_KINDS),
        description=(f"{ent.doc} Latest version of every loaded file from every system, one row "
                     "per record and system, timestamps in UTC, with lineage columns. Incremental: "
                     "only files loaded since the last build are read and merged in."),
    )
    def staging_table(warehouse: DuckDBResource, landing: LandingZone) -> dg.MaterializeResult:
        """Bring the staging table of one entity up to date with the raw layer (new files merged
        in, or a full rebuild); see crm_platform.staging.tables."""
        cfg_now = landing.sources()
        raw_tables = ["raw.ingest_manifest", *(f"raw.{ds.key}" for ds in staging.datasets_of(cfg_now, entity_name))]
        with warehouse.get_connection() as con:
            with heavy(warehouse, con, reads=raw_tables) as engine:
                report = staging.build(engine, cfg_now, entity_name)
            meta = table_metadata(con, report.table)
            if entity_name == "contacts":
                fill = con.sql(
                    "SELECT source_system, count(*) AS records, " + ", ".join(
                        f"round(100.0 * count({c}) / count(*), 1) AS {c}_pct" for c in MATCH_FIELDS)
                    + " FROM staging.contacts GROUP BY 1 ORDER BY 1").df()
                meta["match_field_fill_rate"] = dg.MetadataValue.md(markdown_table(fill, 20, 20))
        meta.update({"build_mode": report.mode, "build_mode_reason": report.reason,
                     "file_versions_read": report.files_read, "rows_staged_this_run": report.rows_read})
        meta["rows_by_system"] = dg.MetadataValue.json(report.rows_by_system)
        if not staging.datasets_of(cfg, entity_name):
            meta["absent"] = f"no source declares {entity_name}: leaves out {ent.leaves_out}"
        meta["rows_superseded_by_later_delivery"] = report.superseded
        return dg.MaterializeResult(metadata=meta)

    return staging_table


def staging_assets(cfg: SourceConfig) -> list[dg.AssetsDefinition]:
    return [build_staging_asset(e, cfg) for e in staging.STAGING_ENTITIES]
