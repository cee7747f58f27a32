"""Load landing files into the raw layer exactly once, quarantining what cannot be trusted.

For each file matched by a dataset's glob:

1. Fingerprint it (size and SHA-256). A content already in ``raw.ingest_manifest`` for this dataset
   and path is skipped; a new content at a known path is loaded as the next version.
2. Read it into a temporary table of text columns, with the line (CSV, JSONL) or row (Parquet)
   every record came from. A file that cannot be read at all - wrong encoding, required columns
   missing, truncated, not the declared format - is copied to ``quarantine/`` with a reason record
   and marked quarantined in the manifest; its rows are never half-loaded.
3. Parse the mapped columns into the canonical types and apply the entity's row rules (and, for
   every date, not before 1900). Rows that break one go to ``raw.quarantine_rows`` with every
   reason, the file and line; the rest are appended to ``raw.<system>_<dataset>``.

The append, the quarantine rows and the manifest entry are written in one transaction, so a crash
leaves either the whole file loaded or nothing. Rows read = rows loaded + rows quarantined.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from crm_platform.core import standardize
from crm_platform.core import warehouse
from crm_platform.ingest import raw as raw_layer
from crm_platform.contracts.entities import entity
from crm_platform.ingest.sources import Dataset
from crm_platform.ingest.raw import ensure_raw_table
from crm_platform.ingest.readers import UnreadableFile, read_csv, read_jsonl, read_parquet
from crm_platform.ingest.rules import duplicates_sql, offset_columns, parsed_columns, record_sql, validation_sql

@dataclass
class FileResult:
    source_file: str
    version: int
    status: str  # loaded | quarantined | skipped
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reason: str | None = None
    quarantine_path: str | None = None
    fields_quarantined: int = 0     # values set to NULL in loaded rows, each a row in raw.quarantine_rows
    notes: str | None = None        # what was repaired on the way in (NUL bytes removed)

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_quarantined


@dataclass
class IngestReport:
    dataset: str
    files: list[FileResult] = field(default_factory=list)

    def by_status(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def changed_files(self) -> list[FileResult]:
        """Files loaded again because their content changed under the same name."""
        return [f for f in self.files if f.status != "skipped" and f.version > 1]


def fingerprint(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return path.stat().st_size, h.hexdigest()


def ingest_dataset(con: duckdb.DuckDBPyConnection, ds: Dataset, landing: Path,
                   quarantine: Path, as_of: datetime | None = None,
                   erased: tuple[list[str], str] | None = None) -> IngestReport:
    """Load every new or changed file of one dataset; see the module docstring. ``erased``: the
    salted identifier hashes of the erasure list and the salt; rows of an erased person are kept
    out (counted as quarantined, with the reason and without the record)."""
    raw_layer.ensure_layers(con)
    ensure_raw_table(con, ds)
    con.register("_erased_list", pa.table({"h": pa.array(list(erased[0]) if erased else [], pa.string())}))
    con.execute("CREATE OR REPLACE TEMP TABLE _erased AS SELECT h FROM _erased_list")
    con.unregister("_erased_list")
    as_of = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
    report = IngestReport(ds.key)
    for path in sorted(p for p in landing.glob(ds.path) if p.is_file()):
        rel = path.relative_to(landing).as_posix()
        size, digest = fingerprint(path)
        seen = con.execute(
            "SELECT count(*) FILTER (WHERE sha256 = ?), count(DISTINCT sha256) "
            "FROM raw.ingest_manifest WHERE dataset = ? AND source_file = ?",
            [digest, ds.key, rel]).fetchall()[0]
        if seen[0]:
            report.files.append(FileResult(rel, seen[1], "skipped"))
            continue
        version = seen[1] + 1
        loaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
        try:
            result = _load_file(con, ds, path, rel, version, loaded_at, as_of, size, digest,
                                erased[1] if erased and erased[0] else None)
        except UnreadableFile as e:
            result = _quarantine_file(ds, path, rel, version, digest, quarantine, str(e),
                                      _erased_lines(con, ds, path.read_bytes(), erased[1])
                                      if erased and erased[0] else None)
            _record_manifest(con, ds, result, size, digest, loaded_at)
        finally:
            for t in ("_in", "_v", "_dups", "_rejects", "_raw", "_rej_errors", "_rej_scans", "_field_issues"):
                _drop_temp(con, t)
        report.files.append(result)
    con.execute("DROP TABLE IF EXISTS _erased")
    return report


def already_loaded(con, landing: Path, files: list[str]) -> set[str]:
    """The landing files (paths relative to ``landing``) whose exact content the manifest already
    holds, loaded or quarantined: a new look at them would load nothing."""
    if not files or not warehouse.table_exists(con, "raw.ingest_manifest"):
        return set()
    known = {(f, d) for f, d in con.execute("SELECT DISTINCT source_file, sha256 FROM raw.ingest_manifest "
                                            "WHERE list_contains(?, source_file)", [files]).fetchall()}
    names = {f for f, _ in known}
    return {f for f in files if f in names and (f, fingerprint(Path(landing) / f)[1]) in known}


def _drop_temp(con, name: str) -> None:
    """Drop the temporary table or view ``name`` if there is one (_in is either)."""
    for (kind,) in con.execute(
            "SELECT 'VIEW' FROM duckdb_views() WHERE temporary AND view_name = $n "
            "UNION ALL SELECT 'TABLE' FROM duckdb_tables() WHERE temporary AND table_name = $n", {"n": name}).fetchall():
        con.execute(f"DROP {kind} {name}")


def _load_file(con, ds: Dataset, path: Path, rel: str, version: int, loaded_at: datetime,
               as_of: datetime, size: int, digest: str, salt: str | None = None) -> FileResult:
    if any(c.country_rule for c in entity(ds.entity).columns):
        standardize.register(con)
    reader = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}[ds.format]
    notes: list[str] = []
    typed = reader(con, ds, path, notes) or set()
    ent = entity(ds.entity)
    parsed = parsed_columns(ds, ent, offset_columns(con, ds, ent, typed), typed, rel)
    con.execute(duplicates_sql(ent, parsed))
    con.execute(validation_sql(ds, ent, parsed, rel), [as_of])
    _apply_field_issues(con, ent)
    if salt is not None:
        _keep_out_erased(con, ds, salt)
    table = f"raw.{ds.key}"
    canon = ", ".join(ent.column_names)
    lineage = [ds.system, ds.key, rel, version, loaded_at]
    with warehouse.transaction(con):
        con.execute(
            f"INSERT INTO {table} SELECT {canon}, ?, ?, ?, ?, _source_line, ? "
            f"FROM _v WHERE _reason = '' ORDER BY _source_line", lineage)
        # whole rows kept out (field NULL), then the values set to NULL in rows that loaded
        con.execute(
            "INSERT INTO raw.quarantine_rows (dataset, source_system, source_file, file_version, source_line, reason, "
            "record, quarantined_at, field) SELECT ?, ?, ?, ?, _source_line, _reason, _record, ?, _field "
            "FROM (SELECT _v._source_line, _reason, CASE WHEN _reason <> ? THEN "
            f"       {record_sql(ds)} END AS _record, NULL AS _field FROM _v JOIN _in USING (_source_line) "
            "      WHERE _reason <> '' "
            "      UNION ALL SELECT line, reason, record, NULL FROM _rejects "
            f"     UNION ALL SELECT f._source_line, f.x.reason, {record_sql(ds)}, f.x.field FROM "
            "        (SELECT _source_line, unnest(_fields) AS x FROM _v WHERE _reason = '') f "
            "        JOIN _in USING (_source_line)) ORDER BY _source_line, _field NULLS FIRST",
            [ds.key, ds.system, rel, version, loaded_at, ERASED_REASON])
        loaded, bad, fields = con.execute(
            "SELECT count(*) FILTER (WHERE _reason = ''), count(*) FILTER (WHERE _reason <> ''), "
            "coalesce(sum(len(_fields)) FILTER (WHERE _reason = ''), 0) FROM _v").fetchall()[0]
        rejected = con.execute("SELECT count(*) FROM _rejects").fetchall()[0][0]
        result = FileResult(rel, version, "loaded", rows_read=loaded + bad + rejected,
                            rows_loaded=loaded, rows_quarantined=bad + rejected, fields_quarantined=int(fields),
                            notes="; ".join(notes) or None)
        _record_manifest(con, ds, result, size, digest, loaded_at)
    return result


ERASED_REASON = "erased person: on the erasure list (record not kept)"


def _apply_field_issues(con, ent) -> None:
    """Problems a reader found in single values (``_field_issues``: line, canonical column,
    reason; the reader left the value empty): on a key or required column the row is kept out,
    on any other the value's field is quarantined and the row loads."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = '_field_issues'"
                       ).fetchall()[0][0]:
        return
    whole = [c.name for c in ent.columns if c.required or c.name in ent.key]
    con.execute("""UPDATE _v SET _reason = concat_ws('; ', nullif(_v._reason, ''), i.reasons) FROM (
        SELECT line, string_agg(reason, '; ' ORDER BY field) AS reasons FROM _field_issues
        WHERE list_contains(?, field) GROUP BY line) i WHERE _v._source_line = i.line""", [whole])
    con.execute("""UPDATE _v SET _fields = list_concat(_v._fields, i.items) FROM (
        SELECT line, list({'field': field, 'reason': reason} ORDER BY field) AS items FROM _field_issues
        WHERE NOT list_contains(?, field) GROUP BY line) i WHERE _v._source_line = i.line""", [whole])


def _keep_out_erased(con, ds: Dataset, salt: str) -> None:
    """Rows of erased people become quarantine rows without their record; so do malformed lines
    naming an erased person (an e-mail address, a record id, an order number: word by word)."""
    from crm_platform.ingest.erased import match_sql

    pred = match_sql(ds, "_erased", salt)
    if pred:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _v AS SELECT * REPLACE ("
                    f"CASE WHEN {pred} THEN '{ERASED_REASON}' ELSE _reason END AS _reason) FROM _v")
    rejects = con.execute("SELECT line, record FROM _rejects").fetchall()
    for i in _erased_texts(con, ds, [record for _, record in rejects], salt):
        con.execute("UPDATE _rejects SET reason = ?, record = NULL WHERE line = ?", [ERASED_REASON, rejects[i][0]])


def _record_manifest(con, ds: Dataset, r: FileResult, size: int, digest: str,
                     loaded_at: datetime) -> None:
    con.execute(
        "INSERT INTO raw.ingest_manifest (dataset, source_system, source_file, size_bytes, sha256, version, status, "
        "rows_read, rows_loaded, rows_quarantined, reason, quarantine_path, loaded_at, fields_quarantined, notes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [ds.key, ds.system, r.source_file, size, digest, r.version, r.status, r.rows_read,
         r.rows_loaded, r.rows_quarantined, r.reason, r.quarantine_path, loaded_at, r.fields_quarantined, r.notes])


def _quarantine_file(ds: Dataset, path: Path, rel: str, version: int, digest: str,
                     quarantine: Path, reason: str, erased_lines: tuple[bytes, int] | None = None) -> FileResult:
    """Copy an unreadable file to quarantine/<dataset>/ beside a JSON reason record.

    The landing folder belongs to the exporting systems, so the file is copied, not deleted; the
    manifest remembers its content hash, so the same bytes are never tried again, while a corrected
    export under the same name is loaded as the next version. ``erased_lines``: the file without
    the lines of people on the erasure list and how many they were (see :func:`_erased_lines`);
    the copy holds no such line.
    """
    target_dir = quarantine / ds.key
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{digest[:12]}_{path.name}"
    if erased_lines and erased_lines[1]:
        target.write_bytes(erased_lines[0])
        reason += (f"; {erased_lines[1]} line(s) of people on the erasure list are left out of the "
                   "quarantined copy")
    else:
        shutil.copy2(path, target)
    record = {"dataset": ds.key, "source_system": ds.system, "source_file": rel,
              "version": version, "sha256": digest, "reason": reason,
              "quarantined_at": datetime.now(timezone.utc).isoformat()}
    target.with_name(target.name + ".reason.json").write_text(json.dumps(record, indent=2))
    return FileResult(rel, version, "quarantined", reason=reason,
                      quarantine_path=target.relative_to(quarantine.parent).as_posix())


# a word that may be an identifier: an e-mail address, a record id, an order number, a cookie
_WORD = re.compile(r"[^\s,;|\t\"'<>(){}\[\]]+")


def _erased_texts(con, ds: Dataset, texts: list[str], salt: str) -> set[int]:
    """Which of ``texts`` (lines of a file that could not be parsed, malformed records) name a
    person on the erasure list: every word is hashed as each kind of identifier the list holds
    (e-mail, contact key of the dataset's systems, shop number, cookie, order id). The temp table
    ``_erased`` holds the list's hashes."""
    from crm_platform.core.privacy import hash_sql

    index, words = [], []
    for i, txt in enumerate(texts):
        for w in _WORD.findall((txt or "").replace("\ufeff", " ")):
            w = w.strip(".:")
            if w:
                index.append(i)
                words.append(w)
    if not words:
        return set()
    con.register("_words_in", pa.table({"line": pa.array(index, pa.int64()), "w": pa.array(words, pa.string())}))
    systems = sorted({ds.system, ds.contact_system} - {""})
    kinds = [hash_sql("email", "lower(w)", salt)] + [hash_sql("contact_key", f"'{s}:' || w", salt) for s in systems]
    kinds += [hash_sql(k, "w", salt) for k in ("shop_customer_no", "visitor_id", "order_id")]
    try:
        return {r[0] for r in con.execute(
            "SELECT DISTINCT line FROM _words_in WHERE "
            + " OR ".join(f"{k} IN (SELECT h FROM _erased)" for k in kinds)).fetchall()}
    finally:
        con.unregister("_words_in")


def _erased_lines(con, ds: Dataset, data: bytes, salt: str) -> tuple[bytes, int]:
    """An unreadable file is not parsed, so its lines are matched word by word
    (:func:`_erased_texts`). Returns the file without the lines naming a person on the erasure
    list (the same bytes otherwise) and how many they were."""
    utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
    if utf16:
        lines = [ln + "\n" for ln in data.decode("utf-16", errors="replace").split("\n")]
        lines[-1] = lines[-1][:-1]
        texts = lines
    else:
        lines = [ln + b"\n" for ln in data.split(b"\n")]
        lines[-1] = lines[-1][:-1]
        texts = [ln.decode(ds.encoding, errors="replace") for ln in lines]
    hit = _erased_texts(con, ds, texts, salt)
    if not hit:
        return data, 0
    kept = [ln for i, ln in enumerate(lines) if i not in hit]
    return ("".join(kept).encode("utf-16") if utf16 else b"".join(kept)), len(hit)
