"""The raw layer: one typed table per declared dataset, with the lineage of every row, and the
bookkeeping of ingestion (the manifest of files seen, the quarantined rows)."""
from __future__ import annotations

import duckdb

from crm_platform.core import warehouse
from crm_platform.contracts.entities import entity
from crm_platform.ingest.sources import Dataset


SQL_TYPES = {"str": "VARCHAR", "email": "VARCHAR", "timestamp": "TIMESTAMP", "date": "DATE",
             "int": "BIGINT", "decimal": "DECIMAL(18,2)", "bool": "BOOLEAN"}


LINEAGE_DDL = """
    _source_system VARCHAR NOT NULL,
    _dataset VARCHAR NOT NULL,
    _source_file VARCHAR NOT NULL,
    _file_version INTEGER NOT NULL,
    _source_line BIGINT NOT NULL,
    _loaded_at TIMESTAMP NOT NULL
"""


BOOKKEEPING_DDL = """
CREATE TABLE IF NOT EXISTS raw.ingest_manifest (
    dataset VARCHAR NOT NULL,
    source_system VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,      -- path relative to the landing folder
    size_bytes BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    version INTEGER NOT NULL,          -- 1 for the first content seen at this path, then 2, 3 ...
    status VARCHAR NOT NULL,           -- loaded | quarantined
    rows_read BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    reason VARCHAR,                    -- why a whole file was quarantined
    quarantine_path VARCHAR,
    loaded_at TIMESTAMP NOT NULL,
    fields_quarantined BIGINT DEFAULT 0, -- values set to NULL in loaded rows (raw.quarantine_rows.field)
    notes VARCHAR                      -- what was repaired in a loaded file (NUL bytes removed, ...)
);
CREATE TABLE IF NOT EXISTS raw.quarantine_rows (
    dataset VARCHAR NOT NULL,
    source_system VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    file_version INTEGER NOT NULL,
    source_line BIGINT,
    reason VARCHAR NOT NULL,
    record VARCHAR,                    -- the offending record as delivered (JSON or raw line)
    quarantined_at TIMESTAMP NOT NULL,
    field VARCHAR                      -- the column whose value was set to NULL while the row loaded;
                                       -- NULL when the whole row was kept out
);
ALTER TABLE raw.quarantine_rows ADD COLUMN IF NOT EXISTS field VARCHAR;
ALTER TABLE raw.ingest_manifest ADD COLUMN IF NOT EXISTS fields_quarantined BIGINT DEFAULT 0;
ALTER TABLE raw.ingest_manifest ADD COLUMN IF NOT EXISTS notes VARCHAR;
"""


def ensure_raw_table(con: duckdb.DuckDBPyConnection, ds: Dataset) -> str:
    """Create ``raw.<system>_<dataset>`` with the entity's typed columns plus lineage."""
    ent = entity(ds.entity)
    cols = ",\n    ".join(f"{c.name} {SQL_TYPES[c.type]}" for c in ent.columns)
    table = f"raw.{ds.key}"
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (\n    {cols},\n{LINEAGE_DDL})")
    return table


def ensure_layers(con: duckdb.DuckDBPyConnection) -> None:
    """Every layer's schema and the bookkeeping tables of ingestion."""
    warehouse.ensure_layers(con)
    con.execute(BOOKKEEPING_DDL)
