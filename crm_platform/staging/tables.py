"""Staging: one table per canonical entity, unioned over every source system that delivers it.

Staging reads the latest loaded version of every raw file, keeps one row per natural key and system
(the most recently loaded wins when a record is delivered again in a later file), and adds what
matching and analysis need: contact keys that point at a person record, and for contacts the
standardized match forms beside the display values.

Staging is incremental: ``staging.build_state`` remembers which file versions each table was built
from. When the only change since is new files (the daily case), only their rows are read,
standardized and merged in: rows of records they deliver again replace the staged ones, the rest
are appended - the same rows a full rebuild gives. A new version of a file already staged, a change
of the source declaration or of the staging query, or a missing state rebuilds the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from crm_platform.core import standardize
from crm_platform.core import warehouse
from crm_platform.ingest import raw
from crm_platform.contracts.buildstate import fingerprint as query_fingerprint
from crm_platform.contracts.entities import LINEAGE_COLUMNS, entity
from crm_platform.contracts.schemas import StagingBuildState
from crm_platform.ingest.sources import Dataset, SourceConfig
from crm_platform.ingest.raw import SQL_TYPES, ensure_raw_table

LINEAGE = ", ".join(LINEAGE_COLUMNS)


@dataclass
class StagingReport:
    table: str
    rows: int
    rows_by_system: dict[str, int]
    superseded: int  # rows replaced by a later delivery of the same record
    mode: str = "full"         # or "incremental"
    reason: str = ""           # why this mode
    files_read: int = 0        # file versions whose rows were read this time
    rows_read: int = 0         # rows staged this time (all of them in a full build)


STATE = "staging.build_state"
FILES = "_stage_files"      # the file versions a build reads (temporary)


def generation(con: duckdb.DuckDBPyConnection, entity_name: str) -> str:
    """When the staged table of ``entity_name`` was last built in full ('' before any build with
    state): a full rebuild keeps load times but starts a new generation, which tells readers that
    build on it incrementally (the match, the checks) that they must start over."""
    if not warehouse.table_exists(con, STATE):
        return ""
    return con.execute(f"SELECT coalesce(min(built_at)::VARCHAR, '') FROM {STATE} WHERE entity = ?",
                       [entity_name]).fetchall()[0][0]


def _read_files(ds: Dataset) -> str:
    """The join keeping the rows of raw.<dataset> r from the file versions this build reads."""
    return f"JOIN {FILES} m ON m.dataset = '{ds.key}' AND r._source_file = m.source_file AND r._file_version = m.version"


def _latest_rows(ds: Dataset) -> str:
    """Rows of a raw table from the file versions this build reads."""
    return f"""
        SELECT r.*, {ds.trust_rank} AS trust_rank, '{ds.contact_system}' AS contact_system,
               '{ds.default_country}' AS default_country
        FROM raw.{ds.key} r
        {_read_files(ds)}"""


# the record kind of a contact known only from the events that carry its id
IMPLIED_KIND = {"orders": "customer", "web_events": "customer", "email_events": "subscriber",
                "support_tickets": "requester", "nps_responses": "respondent", "leads": "lead_contact"}


def _implied_contacts(cfg: SourceConfig, ds: Dataset) -> str:
    """The contact records a dataset's event rows imply (``SourceConfig.implying_contacts``): one
    row per event with the id it carries and nothing else known; staging keeps the newest per id."""
    ref = entity(ds.entity).contact_ref
    known = {"source_record_id": f"r.{ref}", "record_kind": f"'{IMPLIED_KIND[ds.entity]}'"}
    cols = ", ".join(f"{known.get(c.name, f'NULL::{SQL_TYPES[c.type]}')} AS {c.name}"
                     for c in entity("contacts").columns)
    return f"""
        SELECT {cols}, '{ds.contact_system}' AS _source_system, r._dataset, r._source_file, r._file_version,
               r._source_line, r._loaded_at, {cfg.trust_ranks[ds.contact_system]} AS trust_rank,
               '{ds.contact_system}' AS contact_system, '{ds.default_country}' AS default_country
        FROM raw.{ds.key} r
        {_read_files(ds)}
        WHERE r.{ref} IS NOT NULL"""


def datasets_of(cfg: SourceConfig, entity_name: str) -> list[Dataset]:
    """The datasets a staging table is built from: for contacts also the events implying them."""
    return cfg.by_entity(entity_name) + (cfg.implying_contacts() if entity_name == "contacts" else [])


def _union(con, cfg: SourceConfig, entity_name: str) -> str:
    parts = []
    for ds in cfg.by_entity(entity_name):
        ensure_raw_table(con, ds)
        parts.append(_latest_rows(ds))
    if entity_name == "contacts":
        for ds in cfg.implying_contacts():
            ensure_raw_table(con, ds)
            parts.append(_implied_contacts(cfg, ds))
    if not parts:
        cols = ", ".join(f"NULL::{SQL_TYPES[c.type]} AS {c.name}" for c in entity(entity_name).columns)
        return (f"SELECT {cols}, NULL::VARCHAR AS _source_system, NULL::VARCHAR AS _dataset, "
                "NULL::VARCHAR AS _source_file, NULL::INTEGER AS _file_version, NULL::BIGINT AS "
                "_source_line, NULL::TIMESTAMP AS _loaded_at, NULL::INTEGER AS trust_rank, "
                "NULL::VARCHAR AS contact_system, NULL::VARCHAR AS default_country WHERE false")
    return "\nUNION ALL BY NAME\n".join(parts)


def _newest(src: str, key: tuple[str, ...]) -> str:
    """The rows of ``src`` that are the newest delivery of their record (system and key): the
    latest load, then the latest file, then the latest line. The few records delivered more than
    once are found by counting over the key columns alone, and only their rows are compared, so
    the wide rows are neither sorted nor partitioned (a newest-of over every key costs 13 s of
    20M web events)."""
    k = ("_source_system", *key)
    order = lambda t: f"struct_pack(l := {t}_loaded_at, f := {t}_source_file, n := {t}_source_line)"  # noqa: E731
    same = lambda a, b: " AND ".join(f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in k)  # noqa: E731
    return f"""SELECT s.* FROM ({src}) s LEFT JOIN (
            SELECT {', '.join(k)}, max({order('')}) AS _newest FROM ({src}) a SEMI JOIN (
                SELECT {', '.join(k)} FROM ({src}) GROUP BY ALL HAVING count(*) > 1) twice ON {same('a', 'twice')}
            GROUP BY ALL) d ON {same('s', 'd')}
        WHERE d._newest IS NULL OR {order('s.')} = d._newest"""


CONTACTS_SQL = """
-- match forms of crm_platform.core.standardize version {standardize_version}
WITH src AS ({newest}),
named AS (
    SELECT *,
        coalesce(first_name, {first_of_full}) AS first_raw,
        coalesce(last_name, {last_of_full}) AS last_raw,
        std_country(country, default_country) AS country_iso
    FROM src
)
SELECT
    _source_system || ':' || source_record_id AS contact_key,
    _source_system AS source_system,
    _dataset AS dataset,
    coalesce(lower(record_kind), 'contact') AS record_kind,
    source_record_id,
    trust_rank,
    std_display(salutation) AS salutation,
    std_display(first_raw) AS first_name,
    std_display(last_raw) AS last_name,
    std_name(first_raw) AS first_name_std,
    std_name(last_raw) AS last_name_std,
    std_name_key(first_raw) AS first_name_key,
    std_name_key(last_raw) AS last_name_key,
    std_phonetic(first_raw) AS first_name_phonetic,
    std_phonetic(last_raw) AS last_name_phonetic,
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
    std_identifier(national_id) AS national_id,
    created_at,
    updated_at,
    consent_email,
    consent_phone,
    {lineage}
FROM named
ORDER BY contact_key
"""


def contacts_sql(con: duckdb.DuckDBPyConnection, cfg: SourceConfig) -> str:
    standardize.register(con)
    return CONTACTS_SQL.format(newest=_newest(_union(con, cfg, "contacts"), entity("contacts").key),
                               lineage=LINEAGE, first_of_full=standardize.name_part_sql("full_name", "first"),
                               last_of_full=standardize.name_part_sql("full_name", "last"),
                               standardize_version=standardize.VERSION)


def events_sql(con: duckdb.DuckDBPyConnection, cfg: SourceConfig, entity_name: str) -> str:
    """Stage an event entity: canonical columns, lowercased codes, the owner's contact key. Not
    sorted: every reader joins or aggregates, and sorting 20M web events took 13 s."""
    ent = entity(entity_name)
    cols = []
    for c in ent.columns:
        cols.append(f"lower({c.name}) AS {c.name}" if c.allowed else c.name)
    owner = (f"CASE WHEN {ent.contact_ref} IS NOT NULL THEN contact_system || ':' || "
             f"{ent.contact_ref} END AS contact_key, " if ent.contact_ref else "")
    return f"""
        SELECT {owner}_source_system AS source_system, _dataset AS dataset, {', '.join(cols)}, {LINEAGE}
        FROM ({_newest(_union(con, cfg, entity_name), ent.key)})"""


def _latest_files(con, keys: list[str]) -> None:
    """The newest loaded version of every file of the datasets, as the temporary FILES table."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {FILES} AS
        SELECT dataset, source_file, max(version) AS version FROM raw.ingest_manifest
        WHERE status = 'loaded' AND list_contains(?, dataset) GROUP BY ALL""", [keys])


def _why_full(con, table: str, entity_name: str, fingerprint: str) -> str | None:
    """None when the table can be brought up to date from new files alone, else the reason not."""
    if not warehouse.table_exists(con, table):
        return "first build"
    if not warehouse.table_exists(con, STATE):
        return "no build state"
    state = con.execute(f"SELECT count(*), count(*) FILTER (WHERE query_hash <> ?) FROM {STATE} "
                        "WHERE entity = ?", [fingerprint, entity_name]).fetchall()[0]
    if not state[0]:
        return "no build state"
    if state[1]:
        return "the source declaration or the staging query changed"
    stale = con.execute(f"""SELECT count(*) FROM {STATE} s LEFT JOIN {FILES} f USING (dataset, source_file)
        WHERE s.entity = ? AND (f.version IS NULL OR f.version <> s.version)""", [entity_name]).fetchall()[0][0]
    if stale:
        return f"{stale} staged file(s) have a newer version"
    if any(c.allowed for c in entity(entity_name).columns if c.name in entity(entity_name).key):
        return "a key column is normalized"     # staged keys would not be the raw keys
    return None


def _materialize(con, cfg: SourceConfig, entity_name: str, sql: str) -> StagingReport:
    table = f"staging.{entity_name}"
    keys = [ds.key for ds in datasets_of(cfg, entity_name)] or [""]
    fingerprint = query_fingerprint(sql)
    _latest_files(con, keys)
    reason = _why_full(con, table, entity_name, fingerprint)
    con.execute(f"""CREATE TABLE IF NOT EXISTS {STATE} (entity VARCHAR, dataset VARCHAR, source_file VARCHAR,
        version INTEGER, query_hash VARCHAR, built_at TIMESTAMP)""")
    try:
        with warehouse.transaction(con):
            if reason:
                con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
                con.execute(f"DELETE FROM {STATE} WHERE entity = ?", [entity_name])
                files_read, rows_read = con.execute(f"SELECT (SELECT count(*) FROM {FILES}), count(*) FROM {table}").fetchall()[0]
            else:
                files_read, rows_read = _merge_new(con, table, entity_name, sql)
            con.execute(f"INSERT INTO {STATE} SELECT ?, dataset, source_file, version, ?, now()::TIMESTAMP "
                        f"FROM {FILES}", [entity_name, fingerprint])
            StagingBuildState.validate(con.execute(f"SELECT * FROM {STATE} WHERE entity = ?", [entity_name]).df())
    finally:
        con.execute(f"DROP TABLE IF EXISTS {FILES}")
    by_system = dict(con.execute(
        f"SELECT source_system, count(*) FROM {table} GROUP BY 1 ORDER BY 1").fetchall())
    # Rows offered = rows loaded from the newest version of every file of the entity's own datasets
    # (not of the events implying contacts), as the manifest counted them.
    own = [ds.key for ds in cfg.by_entity(entity_name)] or [""]
    offered, own_rows = con.execute(
        "SELECT coalesce(sum(rows_loaded), 0), (SELECT count(*) FROM " + table + " WHERE list_contains($own, dataset)) "
        "FROM raw.ingest_manifest m WHERE list_contains($own, dataset) AND status = 'loaded' AND version = "
        "(SELECT max(version) FROM raw.ingest_manifest l WHERE l.dataset = m.dataset AND "
        "l.source_file = m.source_file AND l.status = 'loaded')", {"own": own}).fetchall()[0]
    rows = sum(by_system.values())
    return StagingReport(table, rows, by_system, offered - own_rows, "full" if reason else "incremental",
                         reason or "only new files since the last build", int(files_read), int(rows_read))


def _merge_new(con, table: str, entity_name: str, sql: str) -> tuple[int, int]:
    """Stage the rows of the file versions not yet staged: they replace staged rows of the same
    record (a later delivery wins, as in a full build) and the rest are appended. FILES is
    narrowed to those versions."""
    con.execute(f"""DELETE FROM {FILES} f WHERE EXISTS (SELECT 1 FROM {STATE} s WHERE s.entity = ?
        AND s.dataset = f.dataset AND s.source_file = f.source_file AND s.version = f.version)""", [entity_name])
    files = con.execute(f"SELECT count(*) FROM {FILES}").fetchall()[0][0]
    if not files:
        return 0, 0
    con.execute(f"CREATE OR REPLACE TEMP TABLE _staged_new AS {sql}")
    same = " AND ".join(f"t.{c} IS NOT DISTINCT FROM n.{c}" for c in ("source_system", *entity(entity_name).key))
    con.execute(f"DELETE FROM {table} t USING _staged_new n WHERE {same}")
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _staged_new")
    n = con.execute("SELECT count(*) FROM _staged_new").fetchall()[0][0]
    con.execute("DROP TABLE _staged_new")
    return files, n


def without_data(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(entity, what it leaves out) of every staged entity without a row: an export the company
    does not have (or that has not arrived), in the words the summary and the dashboard use."""
    out = []
    for name in STAGING_ENTITIES:
        table = f"staging.{name}"
        if not warehouse.table_exists(con, table) or not con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]:
            out.append((name, entity(name).leaves_out))
    return out


STAGING_ENTITIES = ("contacts", "orders", "order_items", "email_events", "support_tickets",
                    "web_events", "nps_responses", "leads", "marketing_spend")


def build(con: duckdb.DuckDBPyConnection, cfg: SourceConfig, entity_name: str) -> StagingReport:
    raw.ensure_layers(con)
    sql = contacts_sql(con, cfg) if entity_name == "contacts" else events_sql(con, cfg, entity_name)
    return _materialize(con, cfg, entity_name, sql)
