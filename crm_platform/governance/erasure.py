"""Erasure (GDPR Art. 17): remove a person from every table and file, prove it, keep them out.

:func:`erase` carries out one request, in this order:

1. **Resolve** the person through the identity graph (crm_platform.governance.subject). An e-mail
   address several customers hold is refused unless the request names the customer meant or
   asks for all of them; e-mail addresses and phone numbers another record or line holds too
   are kept (:func:`keep_shared_identifiers`).
2. **Erasure list first.** Salted SHA-256 hashes of the person's identifiers (e-mail, contact keys,
   shop number, web cookie, order ids) are appended to ``governance/erased_identifiers.csv`` under
   ``CRM_PLATFORM_HOME`` (and mirrored in ``governance.erased_identifiers``). Ingestion keeps every
   row matching a hash out of the raw layer, so a re-delivered old export cannot bring the person
   back, even if the warehouse is rebuilt from scratch. Plain identifiers are never stored.
3. **Warehouse**, in one transaction: the person's raw rows (every file version) and quarantined
   rows; every row of every other table keyed by one of their customer ids, contact keys, order ids,
   cookies or alert ids - staging, identity (records, pairs, links, review queue, crosswalk, id
   registry, id history), core, features, model scores, segments, alerts. Aggregates (KPIs) keep
   their counts. The ingest manifest's counts are reduced by the rows removed.
4. **Files**: records naming the person are cut from landing files, quarantined copies, outbox
   files and ledger, review files and the generator's truth - CSV files through a CSV parser, so a
   quoted field over several lines leaves with its record; Parquet files are rewritten without
   their rows; the dashboard is drawn again without them; other documents naming them (exports,
   request files) are deleted. A landing file rewritten this way keeps its place in the manifest
   (its new fingerprint is recorded), so it is not loaded again.
5. **Compaction**: DuckDB keeps deleted values in free blocks until they are reused, so the
   warehouse is copied into a fresh file which replaces it.
6. **Verification**: every text column of every table and every file under ``CRM_PLATFORM_HOME``
   (the orchestrator's run history included) is scanned for the person's identifiers; the erasure
   receipt ``governance/receipts/<request id>.json`` records the request id, times, what was removed
   where, and the verification result - counts and names of tables and files, never the
   identifiers.

What is scanned for: customer ids, contact keys and source record ids, shop numbers, cookies,
order/ticket/lead/response ids, alert ids, and the e-mail addresses and phone numbers no other
record holds (a shared family address stays with the other person). Records never linked to the
person are not reached; the receipt says so and counts the unlinked records of the same name. Names are not scanned for:
other people share them; they leave with the records that hold them.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from crm_platform.core import engines, warehouse
from crm_platform.core import audit
from crm_platform.governance.subject import AmbiguousSubject, Subject, _q, register_hashes, resolve
from crm_platform.ingest.erased import match_sql
from crm_platform.core.settings import Paths
from crm_platform.ingest.sources import SourceConfig
from crm_platform.governance.scrub import (files_under, hits, keep_shared_identifiers, list_path, parquet_hits, scrub_files,
                                          sql_quote, token_regex, truth_persons)

LIST_TABLE = "governance.erased_identifiers"
LIST_COLUMNS = ["identifier_hash", "identifier_type", "request_id", "erased_at", "salt_id"]
# columns that key a row to the person, by what they hold
KEY_COLUMNS = {
    "customer_id": "customer_ids", "old_customer_id": "customer_ids", "new_customer_id": "customer_ids",
    "retired_into": "customer_ids", "contact_key": "contact_keys", "source_contact_key": "contact_keys",
    "left_id": "contact_keys", "right_id": "contact_keys", "order_id": "order_ids", "visitor_id": "visitor_ids",
    "alert_id": "alert_ids", "ticket_id": "other_ids", "lead_id": "other_ids", "response_id": "other_ids"}


class ErasureListError(RuntimeError):
    """The erasure list cannot be applied (its salt is missing or changed)."""


class ErasureRefused(RuntimeError):
    """The erasure cannot cover every place the person's data is kept: nothing was changed."""


def new_request_id() -> str:
    return uuid.uuid4().hex[:24]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def receipts_dir(paths: Paths) -> Path:
    return paths.home / "governance" / "receipts"


def salt_id(salt: str) -> str:
    """A fingerprint of the salt (not the salt): tells whether a list was hashed with it."""
    return hashlib.sha256(f"salt-id|{salt}".encode()).hexdigest()[:12]


def load_list(paths: Paths) -> tuple[pd.DataFrame, str] | None:
    """(hashes, salt) of the erasure list, None if nobody was ever erased. A list without its salt
    cannot keep anyone out, so that is an error, not a silent pass."""
    path = list_path(paths)
    if not path.exists():
        return None
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not paths.salt_file.exists():
        raise ErasureListError(f"{path} exists but the salt {paths.salt_file} is missing: restore it from "
                               "the backup, or erased people could be loaded again")
    salt = paths.hash_salt()
    if len(df) and set(df["salt_id"]) != {salt_id(salt)}:
        raise ErasureListError(f"{path} was hashed with another salt than {paths.salt_file}: restore the "
                               "salt the list was made with")
    return df, salt


def _append_list(paths: Paths, hashes: list[tuple[str, str]], request_id: str, salt: str) -> int:
    path = list_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() else pd.DataFrame(columns=LIST_COLUMNS)
    new = pd.DataFrame([{"identifier_hash": h, "identifier_type": k, "request_id": request_id,
                         "erased_at": _now().isoformat(timespec="seconds"), "salt_id": salt_id(salt)}
                        for h, k in hashes if h not in set(old["identifier_hash"])], columns=LIST_COLUMNS)
    tmp = path.with_suffix(".csv.tmp")
    pd.concat([old, new]).to_csv(tmp, index=False)
    os.replace(tmp, path)
    return len(new)


def sync_list_table(con, paths: Paths) -> int:
    """Mirror the erasure list file in ``governance.erased_identifiers``."""
    loaded = load_list(paths)
    df = loaded[0] if loaded else pd.DataFrame(columns=LIST_COLUMNS)
    con.execute("CREATE SCHEMA IF NOT EXISTS governance")
    con.register("_erased_list", df.astype(str))
    con.execute(f"CREATE OR REPLACE TABLE {LIST_TABLE} AS SELECT identifier_hash, identifier_type, request_id, "
                "erased_at::TIMESTAMP AS erased_at, salt_id FROM _erased_list")
    con.unregister("_erased_list")
    return len(df)


# --- the warehouse ---------------------------------------------------------------------------

def _tables(con) -> list[tuple[str, str]]:
    return [(s, t) for s, t in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1, 2").fetchall()]


def _delete_raw(con, cfg: SourceConfig, salt: str, s: Subject) -> dict[str, int]:
    """The person's rows in every raw dataset (all file versions) and in the row quarantine; the
    manifest's row counts follow."""
    removed = {}
    for ds in cfg.datasets:
        table = f"raw.{ds.key}"
        pred = match_sql(ds, "_person_hashes", salt)
        if pred is None or not warehouse.table_exists(con, table):
            continue
        counts = con.execute(f"SELECT _source_file, _file_version, count(*) FROM {table} WHERE {pred} GROUP BY 1, 2").fetchall()
        for f, v, n in counts:
            con.execute("UPDATE raw.ingest_manifest SET rows_read = rows_read - ?, rows_loaded = rows_loaded - ? "
                        "WHERE dataset = ? AND source_file = ? AND version = ?", [n, n, ds.key, f, v])
        n = con.execute(f"DELETE FROM {table} WHERE {pred}").fetchall()[0][0]
        if n:
            removed[table] = int(n)
    if warehouse.table_exists(con, "raw.quarantine_rows"):
        rx = token_regex(s.tokens())
        hit = f"regexp_matches(lower(coalesce(record, '') || ' ' || reason), '{rx}')"
        for d, f, v, n in con.execute(f"SELECT dataset, source_file, file_version, count(*) FROM raw.quarantine_rows "
                                      f"WHERE {hit} GROUP BY ALL").fetchall():
            con.execute("UPDATE raw.ingest_manifest SET rows_read = rows_read - ?, rows_quarantined = rows_quarantined - ? "
                        "WHERE dataset = ? AND source_file = ? AND version = ?", [n, n, d, f, v])
        n = con.execute(f"DELETE FROM raw.quarantine_rows WHERE {hit}").fetchall()[0][0]
        if n:
            removed["raw.quarantine_rows"] = int(n)
    return removed


def _delete_keyed(con, s: Subject) -> dict[str, int]:
    """Every row of a non-raw table keyed to the person by one of its columns."""
    removed = {}
    for schema, name in _tables(con):
        table = f"{schema}.{name}"
        if schema == "raw" or table in (LIST_TABLE, audit.TABLE):
            continue
        cols = warehouse.columns(con, table)
        conds = [f'"{c}" IN {_q(getattr(s, KEY_COLUMNS[c]))}' for c in cols
                 if c in KEY_COLUMNS and getattr(s, KEY_COLUMNS[c])]
        if table == "identity.id_registry":
            _keep_watermark(con)
        if table == "governance.requests":     # the request stays; who asked leaves
            mine = f"identifier IN {_q(s.emails | s.customer_ids)}"
            if "scope" in cols:
                mine += " OR scope IN " + _q({f"customer:{c}" for c in s.customer_ids})
            blank = ", scope = CASE WHEN scope = 'all_matching' THEN scope END" if "scope" in cols else ""
            n = con.execute(f"UPDATE {table} SET identifier = NULL{blank} WHERE {mine}").fetchall()[0][0]
            if n:
                removed[f"{table} (identifier blanked)"] = int(n)
            continue
        if conds:
            n = con.execute(f"DELETE FROM {table} WHERE {' OR '.join(conds)}").fetchall()[0][0]
            if n:
                removed[table] = int(n)
    return removed


def _keep_watermark(con) -> None:
    """Ids are never reused: remember the highest id minted before an erased one is removed."""
    con.execute("CREATE TABLE IF NOT EXISTS identity.id_watermark (last_minted VARCHAR NOT NULL)")
    top = con.execute("SELECT greatest((SELECT max(customer_id) FROM identity.id_registry), "
                      "(SELECT max(last_minted) FROM identity.id_watermark))").fetchall()[0][0]
    if top:
        con.execute("DELETE FROM identity.id_watermark")
        con.execute("INSERT INTO identity.id_watermark VALUES (?)", [top])


# --- files -----------------------------------------------------------------------------------

def compact(database: Path) -> None:
    """Copy the warehouse into a fresh file and swap it in: deleted values do not survive in free
    blocks. Needs the only connection to the file."""
    database = Path(database)
    tmp = database.with_name(f".{database.stem}.compact.duckdb")
    tmp.unlink(missing_ok=True)
    con = warehouse.connect(database)
    try:
        con.execute("SET enable_progress_bar = false")
        name = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f"ATTACH '{sql_quote(str(tmp))}' AS _fresh")
        con.execute(f'COPY FROM DATABASE "{name}" TO _fresh')
        con.execute("DETACH _fresh")
    finally:
        con.close()
    os.replace(tmp, database)
    Path(str(tmp) + ".wal").unlink(missing_ok=True)


def verify(con, paths: Paths, tokens: list[str]) -> dict:
    """Occurrences of the person's identifiers in every table and file (names and counts only)."""
    rx = token_regex(tokens)
    found, columns, tables = [], 0, _tables(con)
    for schema, name in tables:
        table = f"{schema}.{name}"
        cols = [c for c, t in con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE "
                                          "schema_name = ? AND table_name = ?", [schema, name]).fetchall()
                if "VARCHAR" in t or "[]" in t or t.startswith(("STRUCT", "MAP", "JSON"))]
        if not cols:
            continue
        columns += len(cols)
        counts = con.execute("SELECT " + ", ".join(
            f"count(*) FILTER (WHERE regexp_matches(lower(\"{c}\"::VARCHAR), '{rx}'))" for c in cols)
            + f" FROM {table}").fetchall()[0]
        found += [{"where": f"{table}.{c}", "occurrences": int(n)} for c, n in zip(cols, counts) if n]
    btoks = [t.lower().encode() for t in tokens]
    files = 0
    for path in files_under(paths):
        files += 1
        rel = path.relative_to(paths.home).as_posix()
        n = parquet_hits(con, path, rx)[0] if path.suffix.lower() == ".parquet" else len(hits(path.read_bytes(), btoks))
        if n:
            found.append({"where": rel, "occurrences": n})
    return {"tables_scanned": len(tables), "text_columns_scanned": columns, "files_scanned": files,
            "identifiers_scanned_for": len(tokens), "occurrences": sum(f["occurrences"] for f in found),
            "found": found, "passed": not found}


# --- the whole erasure -----------------------------------------------------------------------

NOT_REACHED = ("records never linked to the customer ids and identifiers searched are not reached: a "
               "record identity resolution did not link to the person (another e-mail address and phone) "
               "stays, and so does a line that holds only an e-mail address or phone number someone else "
               "holds too; unlinked_candidates counts the staged records with the same name and birth "
               "date, postcode or city, for the operator to confirm (crm-platform erase --dry-run lists them)")


def searched(s: Subject) -> dict:
    """What an erasure looked for (counts by kind, never the values)."""
    return {"identifier_type": s.identifier_type, "customer_ids": len(s.customer_ids),
            "contact_records": len(s.contact_keys), "email_addresses": len(s.emails), "phone_numbers": len(s.phones),
            "shop_numbers": len(s.shop_numbers), "web_cookies": len(s.visitor_ids), "order_ids": len(s.order_ids),
            "other_record_ids": len(s.other_ids), "alert_ids": len(s.alert_ids),
            "records_not_yet_resolved": s.unresolved_records,
            "customers_matching_the_identifier": s.matching_customers,
            "shared_identifiers_kept": {"email_addresses": s.shared_emails, "phone_numbers": s.shared_phones}}


def plan(con, paths: Paths, cfg: SourceConfig, identifier_type: str, identifier: str, *,
         customer_id: str | None = None, all_matching: bool = False) -> Subject:
    """The person as an erasure would find them, nothing changed: resolved through the identity
    graph, the generator's truth followed, and the e-mail addresses and phone numbers someone else
    holds set aside (a file line or quarantined row without any id of the person)."""
    s = resolve(con, cfg, identifier_type, identifier, customer_id=customer_id, all_matching=all_matching)
    truth_persons(paths, s)
    keep_shared_identifiers(con, paths, s)
    return s


def erase(connect, paths: Paths, cfg: SourceConfig, identifier_type: str, identifier: str, *, request_id: str,
          actor: str, compact_warehouse: bool = True, customer_id: str | None = None,
          all_matching: bool = False) -> dict:
    """Carry out one erasure request and return its receipt (also written to
    ``governance/receipts/<request_id>.json``). ``connect()`` opens a read-write connection to the
    warehouse; the only one while the erasure runs, so it can be compacted. An e-mail address held
    by several customers raises AmbiguousSubject (recorded in the audit log) unless ``customer_id``
    picks one or ``all_matching`` takes them all."""
    on_spark = engines.kept_on_spark(engines.folder_of(paths.warehouse))
    if on_spark:
        # the Parquet tables of the heavy stages are not yet searched, erased and verified: refuse
        # rather than leave the person there with a receipt that says otherwise
        raise ErasureRefused(f"erasure refused: {len(on_spark)} tables of the heavy stages are kept on Spark "
                           f"({', '.join(on_spark[:3])}, ...) and the erasure covers the DuckDB warehouse and the "
                           "files under the home only; run the heavy stages on DuckDB (CRM_PLATFORM_ENGINE=duckdb, "
                           "then a refresh) before erasing, see docs/scale-out.md")
    started = _now()
    con = connect()
    try:
        try:
            subject = plan(con, paths, cfg, identifier_type, identifier, customer_id=customer_id,
                           all_matching=all_matching)
        except AmbiguousSubject as e:
            audit.record(con, "erasure", actor, request_id, "refused_ambiguous",
                         {"customers_matching": e.customers})
            raise
        salt = paths.hash_salt()
        hashes = register_hashes(con, "_person_hashes", subject, salt)
        tokens = subject.tokens()
        listed = _append_list(paths, hashes, request_id, salt)
        with warehouse.transaction(con):
            removed = _delete_raw(con, cfg, salt, subject)
            removed.update(_delete_keyed(con, subject))
        sync_list_table(con, paths)
        files = scrub_files(con, paths, tokens)
    finally:
        con.close()
    if compact_warehouse:
        compact(paths.warehouse)
    con = connect()
    try:
        check = verify(con, paths, tokens)
        receipt = {
            "request_id": request_id, "request_type": "erase", "identifier_type": identifier_type,
            "requested_by": actor, "started_at": started.isoformat(timespec="seconds"),
            "completed_at": _now().isoformat(timespec="seconds"),
            "scope": ("the customer named" if customer_id else "every customer holding the identifier"
                      if all_matching else "the one customer holding the identifier"),
            "customers_erased": len(subject.customer_ids), "source_records_erased": len(subject.contact_keys),
            "source_systems": sorted({k.split(":", 1)[0] for k in subject.contact_keys}),
            "searched": searched(subject),
            "not_reached": NOT_REACHED, "unlinked_candidates": len(subject.candidates),
            "rows_removed": dict(sorted(removed.items())), "rows_removed_total": sum(removed.values()),
            "files_changed": files, "erasure_list_entries_added": listed,
            "shared_identifiers_kept": subject.shared_emails + subject.shared_phones,
            "warehouse_compacted": compact_warehouse,
            "kept": ["aggregates (marts.kpi_daily, cohort and cluster profiles) keep their counts",
                     "trained models hold no rows of the person; the next retraining leaves them out",
                     "the source systems listed must erase at their end too (Art. 19); their re-deliveries are kept out"],
            "verification": check,
        }
        out = receipts_dir(paths)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{request_id}.json").write_text(json.dumps(receipt, indent=2, default=str), encoding="utf-8")
        audit.record(con, "erasure", actor, request_id, "verified" if check["passed"] else "traces_remaining",
                     {"customers": receipt["customers_erased"], "rows_removed": receipt["rows_removed_total"],
                      "files_changed": len(files), "occurrences_left": check["occurrences"],
                      "scope": "customer_id" if customer_id else "all_matching" if all_matching else "single",
                      "customers_matching": subject.matching_customers,
                      "unlinked_candidates": len(subject.candidates)})
    finally:
        con.close()
    receipt["candidates"] = subject.candidates      # for the operator's screen only, not in the file
    return receipt
