"""Raw layer: one asset per declared source dataset, built from sources.yaml by one factory."""


import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.metadata import markdown_table, table_metadata
from crm_platform.ingest.load import ingest_dataset
from crm_platform.ingest.sources import Dataset, SourceConfig
from resources.warehouse import LandingZone

KIND = {"csv": "csv", "jsonl": "json", "parquet": "parquet"}


def build_raw_asset(ds: Dataset) -> dg.AssetsDefinition:
    key = keys.raw(ds.key)

    @policy.asset(
        key=key,
        group_name="ingestion",
        kinds={"duckdb", KIND[ds.format]},
        tags={"source_system": ds.system},
        description=(
            f"Raw {ds.entity} records from the {ds.system} system ({ds.description or ds.system}): "
            f"files matching `{ds.path}`, mapped to canonical column names and types, one row per "
            "accepted record with its file, version and line. Each file is loaded once; rows that "
            "break a rule go to raw.quarantine_rows with the reason; rows of people on the erasure list "
            "are kept out (counted there, without the record)."),
        metadata={"source_system": ds.system, "path_glob": ds.path, "format": ds.format,
                  "trust_rank": ds.trust_rank, "entity": ds.entity},
        check_specs=[
            dg.AssetCheckSpec("rows_reconcile", asset=key, description=(
                "For every file ever loaded: rows read = rows loaded + rows quarantined.")),
            dg.AssetCheckSpec("files_readable", asset=key, description=(
                "No file of this dataset sits in quarantine without a later good version.")),
        ],
    )
    def raw_dataset(context: dg.AssetExecutionContext, warehouse: DuckDBResource,
                    landing: LandingZone) -> dg.MaterializeResult:
        """Load new or changed landing files of one dataset; see crm_platform.ingest.load."""
        with warehouse.get_connection() as con:
            report = ingest_dataset(con, ds, landing.landing, landing.quarantine, erased=landing.erased())
            files = con.execute(
                "SELECT source_file, version, status, rows_read, rows_loaded, rows_quarantined, "
                "reason FROM raw.ingest_manifest WHERE dataset = ? ORDER BY loaded_at, source_file",
                [ds.key]).df()
            unbalanced = files[files.rows_read != files.rows_loaded + files.rows_quarantined]
            stuck = con.execute(
                "SELECT q.source_file, q.reason FROM raw.ingest_manifest q WHERE q.dataset = ? "
                "AND q.status = 'quarantined' AND NOT EXISTS (SELECT 1 FROM raw.ingest_manifest g "
                "WHERE g.dataset = q.dataset AND g.source_file = q.source_file "
                "AND g.status = 'loaded' AND g.version > q.version)", [ds.key]).fetchall()
            reasons = con.execute(
                "SELECT reason, count(*) AS rows FROM raw.quarantine_rows WHERE dataset = ? "
                "GROUP BY 1 ORDER BY 2 DESC LIMIT 10", [ds.key]).df()
            meta = table_metadata(con, f"raw.{ds.key}")
        for f in report.changed_files:
            context.log.info(f"{f.source_file} changed since it was last loaded: loaded as version "
                             f"{f.version}")
        for f in report.by_status("quarantined"):
            context.log.warning(f"{f.source_file} quarantined: {f.reason}")
        this_run = pd.DataFrame([vars(f) for f in report.files if f.status != "skipped"])
        meta.update({
            "files_loaded": len(report.by_status("loaded")),
            "files_skipped_already_loaded": len(report.by_status("skipped")),
            "files_quarantined": len(report.by_status("quarantined")),
            "files_changed_new_version": dg.MetadataValue.md(
                "\n".join(f"- `{f.source_file}` loaded as version {f.version}"
                          for f in report.changed_files) or "_none_"),
            "rows_loaded_this_run": report.rows_loaded,
            "rows_quarantined_this_run": report.rows_quarantined,
            "files_this_run": dg.MetadataValue.md(markdown_table(
                this_run[["source_file", "version", "status", "rows_read", "rows_loaded",
                          "rows_quarantined", "reason"]] if len(this_run) else this_run, 50, 80)),
            "quarantine_reasons": dg.MetadataValue.md(markdown_table(reasons, 10, 100)),
        })
        checks = [
            dg.AssetCheckResult(
                check_name="rows_reconcile", passed=bool(len(files) and unbalanced.empty),
                description=("no file has been offered yet" if files.empty else
                             f"{len(unbalanced)} of {len(files)} files do not reconcile"),
                metadata={"files": len(files), "rows_read": int(files.rows_read.sum()),
                          "rows_loaded": int(files.rows_loaded.sum()),
                          "rows_quarantined": int(files.rows_quarantined.sum())}),
            dg.AssetCheckResult(
                check_name="files_readable", passed=not stuck,
                description=("every file was readable" if not stuck else
                             f"{len(stuck)} file(s) in quarantine: " + "; ".join(
                                 f"{f}: {r}" for f, r in stuck)[:2000]),
                metadata={"quarantined_files": len(stuck)}),
        ]
        return dg.MaterializeResult(metadata=meta, check_results=checks)

    return raw_dataset


def raw_assets(cfg: SourceConfig) -> list[dg.AssetsDefinition]:
    return [build_raw_asset(ds) for ds in cfg.datasets]
