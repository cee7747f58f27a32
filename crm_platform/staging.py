"""Staging: one table per canonical entity, unioned over every source system that delivers it.

Staging reads the latest loaded version of every raw file, keeps one row per natural key and system
(the most recently loaded wins when a record is delivered again in a later file), and adds what
matching and analysis need: contact keys that point at a person record, and for contacts the
standardized match forms beside the display values.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from crm_platform import standardize, warehouse
from crm_platform.model import LINEAGE_COLUMNS, entity
from crm_platform.sources import Dataset, SourceConfig

LINEAGE = ", ".join(LINEAGE_COLUMNS)


@dataclass
class StagingReport:
    table: str
    rows: int
    rows_by_system: dict[str, int]
    superseded: int  # rows replaced by a later delivery of the same record


def _latest_rows(ds: Dataset) -> str:
    """Rows of a raw table from the newest loaded version of each of its files."""
    return f"""
        SELECT r.*, {ds.trust_rank} AS trust_rank, '{ds.contact_system}' AS contact_system
        FROM raw.{ds.key} r
        JOIN (SELECT source_file, max(version) AS v FROM raw.ingest_manifest
              WHERE dataset = '{ds.key}' AND status = 'loaded' GROUP BY source_file) m
          ON r._source_file = m.source_file AND r._file_version = m.v"""


def _union(con, cfg: SourceConfig, entity_name: str) -> str:
    parts = []
    for ds in cfg.by_entity(entity_name):
        warehouse.ensure_raw_table(con, ds)
        parts.append(_latest_rows(ds))
    if not parts:
        cols = ", ".join(f"NULL::{warehouse.SQL_TYPES[c.type]} AS {c.name}" for c in entity(entity_name).columns)
        return (f"SELECT {cols}, NULL::VARCHAR AS _source_system, NULL::VARCHAR AS _dataset, "
                "NULL::VARCHAR AS _source_file, NULL::INTEGER AS _file_version, NULL::BIGINT AS "
                "_source_line, NULL::TIMESTAMP AS _loaded_at, NULL::INTEGER AS trust_rank, "
                "NULL::VARCHAR AS contact_system WHERE false")
    return "\nUNION ALL BY NAME\n".join(parts)


def _dedupe(key: tuple[str, ...]) -> str:
    return (f"QUALIFY row_number() OVER (PARTITION BY _source_system, {', '.join(key)} "
            "ORDER BY _loaded_at DESC, _source_file DESC, _source_line DESC) = 1")


CONTACTS_SQL = """
WITH src AS ({union}),
named AS (
    SELECT *,
        coalesce(first_name, CASE WHEN contains(full_name, ',') THEN trim(split_part(full_name, ',', 2))
                                  ELSE nullif(regexp_replace(trim(full_name), '\\s*\\S+$', ''), '') END) AS first_raw,
        coalesce(last_name, CASE WHEN contains(full_name, ',') THEN trim(split_part(full_name, ',', 1))
                                 ELSE regexp_extract(trim(full_name), '(\\S+)$') END) AS last_raw,
        std_country(country, 'DE') AS country_iso
    FROM src
    {dedupe}
)
SELECT
    _source_system || ':' || source_record_id AS contact_key,
    _source_system AS source_system,
    _dataset AS dataset,
    coalesce(record_kind, 'contact') AS record_kind,
    source_record_id,
    trust_rank,
    std_display(salutation) AS salutation,
    std_display(first_raw) AS first_name,
    std_display(last_raw) AS last_name,
    std_name(first_raw) AS first_name_std,
    std_name(last_raw) AS last_name_std,
    std_name_key(first_raw) AS first_name_key,
    std_name_key(last_raw) AS last_name_key,
    email,
    std_email(email) AS email_std,
    nullif(split_part(std_email(email), '@', 1), '') AS email_local,
    nullif(split_part(std_email(email), '@', 2), '') AS email_domain,
    phone,
    std_phone(phone, country_iso) AS phone_e164,
    std_display(company) AS company,
    std_display(street) AS street,
    std_street(street) AS street_std,
    std_postcode(postcode, country_iso) AS postcode,
    std_display(city) AS city,
    std_name(city) AS city_std,
    country_iso AS country,
    birth_date,
    nullif(trim(shop_customer_no), '') AS shop_customer_no,
    created_at,
    updated_at,
    consent_email,
    consent_phone,
    {lineage}
FROM named
ORDER BY contact_key
"""


def build_contacts(con: duckdb.DuckDBPyConnection, cfg: SourceConfig) -> StagingReport:
    standardize.register(con)
    sql = CONTACTS_SQL.format(union=_union(con, cfg, "contacts"),
                              dedupe=_dedupe(entity("contacts").key), lineage=LINEAGE)
    return _materialize(con, cfg, "contacts", sql)


def build_events(con: duckdb.DuckDBPyConnection, cfg: SourceConfig, entity_name: str) -> StagingReport:
    """Stage an event entity: canonical columns, lowercased codes, the owner's contact key."""
    ent = entity(entity_name)
    cols = []
    for c in ent.columns:
        cols.append(f"lower({c.name}) AS {c.name}" if c.allowed else c.name)
    owner = (f"CASE WHEN {ent.contact_ref} IS NOT NULL THEN contact_system || ':' || "
             f"{ent.contact_ref} END AS contact_key, " if ent.contact_ref else "")
    sql = f"""
        SELECT {owner}_source_system AS source_system, _dataset AS dataset, {', '.join(cols)}, {LINEAGE}
        FROM ({_union(con, cfg, entity_name)})
        {_dedupe(ent.key)}
        ORDER BY {', '.join(ent.key)}"""
    return _materialize(con, cfg, entity_name, sql)


def _materialize(con, cfg: SourceConfig, entity_name: str, sql: str) -> StagingReport:
    table = f"staging.{entity_name}"
    con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
    by_system = dict(con.execute(
        f"SELECT source_system, count(*) FROM {table} GROUP BY 1 ORDER BY 1").fetchall())
    # Rows offered = rows loaded from the newest version of every file, as the manifest counted them.
    keys = [ds.key for ds in cfg.by_entity(entity_name)] or [""]
    offered = con.execute(
        "SELECT coalesce(sum(rows_loaded), 0) FROM raw.ingest_manifest m WHERE dataset IN "
        f"({', '.join('?' for _ in keys)}) AND status = 'loaded' AND version = (SELECT max(version) "
        "FROM raw.ingest_manifest l WHERE l.dataset = m.dataset AND l.source_file = m.source_file "
        "AND l.status = 'loaded')", keys).fetchall()[0][0]
    rows = sum(by_system.values())
    return StagingReport(table, rows, by_system, offered - rows)


STAGING_ENTITIES = ("contacts", "orders", "order_items", "email_events", "support_tickets",
                    "web_events", "nps_responses", "leads", "marketing_spend")


def build(con: duckdb.DuckDBPyConnection, cfg: SourceConfig, entity_name: str) -> StagingReport:
    warehouse.ensure_layers(con)
    if entity_name == "contacts":
        return build_contacts(con, cfg)
    return build_events(con, cfg, entity_name)
