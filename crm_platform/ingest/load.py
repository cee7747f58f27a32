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

import codecs
import csv
import hashlib
import io
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
from crm_platform.contracts.entities import Column, entity
from crm_platform.ingest.sources import WHITESPACE, Dataset, Derivation
from crm_platform.ingest.raw import ensure_raw_table

EMAIL_PATTERN = r"^[^@\s,;<>()\[\]]+@[^@\s,;<>()\[\]]+\.[a-zA-Z]{2,}$"
TRUE_WORDS = ("1", "true", "t", "yes", "y", "ja", "j", "x", "opt-in", "optin", "subscribed")
FALSE_WORDS = ("0", "false", "f", "no", "n", "nein", "opt-out", "optout", "unsubscribed")
# A timestamp a little ahead of the load time is clock skew between systems, not bad data.
FUTURE_TOLERANCE = "INTERVAL 1 HOUR"
# No date a CRM holds (orders, events, sign-ups, birthdays) lies before this: earlier is a typo or a
# placeholder (0001-01-01, 1899-12-30 from spreadsheets).
EARLIEST = "1900-01-01"


class UnreadableFile(Exception):
    """The file as a whole cannot be loaded; the message is the reason recorded with it."""


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
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[ds.format]
    notes: list[str] = []
    typed = reader(con, ds, path, notes) or set()
    ent = entity(ds.entity)
    parsed = _parsed(ds, ent, _with_offset(con, ds, ent, typed), typed, rel)
    con.execute(_duplicates_sql(ent, parsed))
    con.execute(_validation_sql(ds, ent, parsed, rel), [as_of])
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
            f"       {_record_sql(ds)} END AS _record, NULL AS _field FROM _v JOIN _in USING (_source_line) "
            "      WHERE _reason <> '' "
            "      UNION ALL SELECT line, reason, record, NULL FROM _rejects "
            f"     UNION ALL SELECT f._source_line, f.x.reason, {_record_sql(ds)}, f.x.field FROM "
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


# --- readers: each fills _in (text columns + _source_line) and _rejects (line, reason, record) ---

def _empty_rejects(con) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _rejects (line BIGINT, reason VARCHAR, record VARCHAR)")


def _check_columns(ds: Dataset, present: list[str], all_mapped: bool = True) -> None:
    """A file without a column of a required value is unreadable. A CSV header or Parquet schema
    must also have every other mapped column: one missing is a changed export layout, and loading
    it would quietly empty that column for every row (JSON records may leave optional fields out)."""
    missing = [c for c in ds.required_source_columns if c not in present]
    kind = "required"
    if not missing and all_mapped:
        missing, kind = [c for c in ds.source_columns if c not in present], "mapped"
    if missing:
        hint = ""
        if len(present) == 1 and ds.format == "csv":
            for d in (";", ",", "\t", "|"):
                if d != ds.delimiter and d in present[0]:
                    hint = f" - the header splits on {d!r}, not the declared delimiter {ds.delimiter!r}"
                    break
        if kind == "mapped" and not hint:
            hint = f" - the export changed its layout? Map the new column names in sources.yaml ({ds.key})"
        raise UnreadableFile(f"missing {kind} columns: {', '.join(missing)} "
                             f"(found: {', '.join(present)[:300]}){hint}")


def _csv_header(path: Path, ds: Dataset, delimiter: str | None = None) -> list[str]:
    with path.open("r", encoding="utf-8", newline="") as fh:
        first = fh.readline().lstrip("\ufeff")        # a byte-order mark before a quoted first name
    if not first.strip():
        raise UnreadableFile("empty file: no header line")
    header = [h.strip() for h in next(csv.reader(io.StringIO(first), delimiter=delimiter or ds.delimiter,
                                                 quotechar=ds.quote or None))]
    twice = [c for c in ds.source_columns if header.count(c) > 1]
    if twice:
        where = ", ".join(f"{c!r} (columns {', '.join(str(i + 1) for i, h in enumerate(header) if h == c)})"
                          for c in twice)
        raise UnreadableFile(f"the header names a mapped column more than once: {where} - which one is meant "
                             f"cannot be told; rename one in the export or in sources.yaml ({ds.key})")
    return header


def _as_utf8(path: Path, ds: Dataset, notes: list[str] | None = None) -> Path:
    """Check the declared encoding; transcode non-UTF-8 files to a UTF-8 copy for DuckDB."""
    enc = ds.encoding.replace("_", "-")
    if enc in ("utf-8", "utf8", "utf-8-sig"):
        if not _valid_utf8(path):
            with path.open("rb") as fh:      # find the line, for the reason
                for n, line in enumerate(fh, start=1):
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise UnreadableFile(_bad_bytes(ds, n, e)) from None
        return _without_nul(path, notes)
    _not_utf8(path, ds)
    out = path.with_name(f".{path.name}.utf8.tmp")
    try:
        with path.open("r", encoding=enc, newline="") as src, \
                out.open("w", encoding="utf-8", newline="") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (UnicodeDecodeError, LookupError) as e:
        out.unlink(missing_ok=True)
        raise UnreadableFile(f"cannot decode as {ds.encoding}: {e}") from None
    return out


# more NUL bytes than this share of a file: not text with stray NULs but UTF-16 (about half its
# bytes, for Latin text) or binary
MAX_NUL_SHARE = 0.1


def _without_nul(path: Path, notes: list[str] | None) -> Path:
    """A UTF-8 file with NUL bytes (a stray one from a legacy export) as a copy without them, the
    count in ``notes``; the file itself when it has none."""
    n = size = 0
    with path.open("rb") as fh:                 # in blocks: an export may be gigabytes
        for block in iter(lambda: fh.read(1 << 22), b""):
            n += block.count(b"\0")
            size += len(block)
    if not n:
        return path
    if n > MAX_NUL_SHARE * size:
        raise UnreadableFile(f"not valid UTF-8 text: {n:,} of its {size:,} bytes are NUL (UTF-16 or binary?)")
    out = path.with_name(f".{path.name}.nonul.tmp")
    with path.open("rb") as src, out.open("wb") as dst:
        for block in iter(lambda: src.read(1 << 22), b""):
            dst.write(block.replace(b"\0", b""))
    if notes is not None:
        notes.append(f"{n} NUL byte(s) removed")
    return out


def _valid_utf8(path: Path) -> bool:
    """Whether the whole file decodes as UTF-8, read in blocks (a character may span two)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _bad_bytes(ds: Dataset, line: int, e: Exception) -> str:
    where = f"line {line}, byte {e.start}" if isinstance(e, UnicodeDecodeError) else f"line {line}"
    if ds.encoding.replace("_", "-").lower() in ("utf-8", "utf8", "utf-8-sig"):
        return f"not valid UTF-8 (declared encoding {ds.encoding}): {where}"
    return f"cannot decode as {ds.encoding}: {where}"


def _not_utf8(path: Path, ds: Dataset) -> None:
    """A file declared in a single-byte encoding (cp1252, latin-1) decodes whatever its bytes are:
    catch the two deliveries that would load as garbage - NUL bytes (UTF-16 or binary) and a
    UTF-8 file (a re-export would turn every 'ü' into 'Ã¼')."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        raise UnreadableFile(f"the file starts with a UTF-8 byte-order mark, not the declared {ds.encoding}: "
                             f"re-export it as {ds.encoding} or declare encoding utf-8 in sources.yaml")
    if b"\0" in data:
        raise UnreadableFile(f"not a {ds.encoding} text file: contains NUL bytes (UTF-16 or binary?)")
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    raise UnreadableFile(f"the file is UTF-8, not the declared {ds.encoding} (its non-ASCII characters would "
                         f"load garbled): re-export it as {ds.encoding} or declare encoding utf-8 in sources.yaml")


def _aligned(path: Path, ds: Dataset) -> tuple[Path, str]:
    """A copy the CSV reader takes, and its delimiter: a whitespace-aligned file with its columns
    separated by tabs, a file without a header line with the declared one in front."""
    delimiter = "\t" if ds.delimiter == WHITESPACE else ds.delimiter
    out = path.with_name(f".{path.name}.aligned.tmp")
    with path.open("r", encoding="utf-8", newline="") as src, out.open("w", encoding="utf-8", newline="") as dst:
        if ds.header:
            dst.write(delimiter.join(ds.header) + "\n")
        for line in src:
            dst.write("\t".join(line.split()) + "\n" if ds.delimiter == WHITESPACE else line)
    return out, delimiter


def _read_csv(con, ds: Dataset, path: Path, notes: list[str]) -> None:
    readable = _as_utf8(path, ds, notes)
    temps = [readable] if readable != path else []
    delimiter = ds.delimiter
    if ds.delimiter == WHITESPACE or ds.header:
        readable, delimiter = _aligned(readable, ds)
        temps.append(readable)
    # a declared header is not a line of the file: the records start at its line 1
    first = 1 if ds.header else 2
    try:
        header = _csv_header(readable, ds, delimiter)
        _check_columns(ds, header)
        names = _unique(header)
        columns = "{" + ", ".join(f"'{_sq(n)}': 'VARCHAR'" for n in names) + "}"
        quote = "" if ds.delimiter == WHITESPACE else _sq(ds.quote)
        con.execute("DROP TABLE IF EXISTS _rej_errors; DROP TABLE IF EXISTS _rej_scans")
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM read_csv('{_sq(str(readable))}',"
                f" header=true, auto_detect=false, columns={columns}, delim='{_sq(delimiter)}',"
                f" quote='{quote}', escape='{quote}', strict_mode=true, store_rejects=true,"
                f" rejects_table='_rej_errors', rejects_scan='_rej_scans', max_line_size=1048576)")
        except duckdb.Error as e:
            raise UnreadableFile(f"not readable as CSV: {str(e).splitlines()[0]}") from None
        errors = con.execute(
            "SELECT line, error_type::VARCHAR, error_message, csv_line FROM _rej_errors "
            "ORDER BY line").fetchall()
        if any(t == "INVALID ENCODING" for _, t, _, _ in errors):
            line = next(n for n, t, _, _ in errors if t == "INVALID ENCODING")
            raise UnreadableFile(f"invalid {ds.encoding} byte sequence at line {line}")
        if errors and not _ends_with_newline(path):
            total = con.execute("SELECT count(*) FROM _raw").fetchall()[0][0] + len(
                {n for n, *_ in errors})
            if max(n for n, *_ in errors) >= total + 1:
                raise UnreadableFile("truncated: the last line is incomplete (file does not end "
                                     "with a line break and its last record is cut off)")
        _empty_rejects(con)
        # One row per rejected line (DuckDB may report several errors for one line).
        con.execute(
            f"INSERT INTO _rejects SELECT line - {2 - first}, 'malformed line: ' || string_agg(DISTINCT "
            "error_type::VARCHAR || ' (' || error_message || ')', '; '), any_value(csv_line) "
            "FROM _rej_errors GROUP BY line")
        # DuckDB numbers records as lines (header = 1). A good row's line is its position among
        # good rows plus the rejected lines before it, found with an ASOF join on the reject rank.
        # A file without rejected lines (nearly every one) needs no join and no copy: _in is a view
        # numbering the read rows (10M order lines: 3.9 s saved)
        select = ", ".join(f'"{_dq(n)}"' for n in names)
        if not errors:
            con.execute(f"CREATE OR REPLACE TEMP VIEW _in AS SELECT {select}, rowid + {first} AS _source_line FROM _raw")
            return
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _in AS
            WITH good AS (SELECT rowid + 1 AS k, {select} FROM _raw),
                 ranked AS (SELECT line - {first - 1} - row_number() OVER (ORDER BY line) AS good_before,
                                   row_number() OVER (ORDER BY line) AS j
                            FROM (SELECT DISTINCT line FROM _rejects)),
                 rej AS (SELECT good_before, max(j) AS j FROM ranked GROUP BY good_before)
            SELECT good.* EXCLUDE (k), good.k + {first - 1} + coalesce(rej.j, 0) AS _source_line
            FROM good ASOF LEFT JOIN rej ON good.k > rej.good_before""")
        con.execute("DROP TABLE IF EXISTS _raw")
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def _read_jsonl(con, ds: Dataset, path: Path, notes: list[str]) -> None:
    """JSON lines, parsed in Python for exact line numbers and clear messages on broken lines."""
    wanted = ds.source_columns
    rows: dict[str, list] = {c: [] for c in wanted}
    lines: list[int] = []
    rejects: list[tuple[int, str, str]] = []
    seen_keys: set[str] = set()
    enc = "utf-8" if ds.encoding in ("utf8", "utf-8-sig") else ds.encoding
    with path.open("rb") as fh:
        data = fh.read()
    if enc == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if not data.strip():
        raise UnreadableFile("empty file: no records")
    nul = data.count(b"\0") if enc == "utf-8" else 0
    if nul > MAX_NUL_SHARE * len(data):
        raise UnreadableFile(f"not valid UTF-8 text: {nul:,} of its {len(data):,} bytes are NUL (UTF-16 or binary?)")
    if nul:
        data = data.replace(b"\0", b"")
    escaped_nul = 0
    issues: list[tuple[int, str, str]] = []
    canonical = {}
    for canon, src in ds.columns.items():
        canonical.setdefault(src, []).append(canon)
    chunks = data.split(b"\n")
    last = max(i for i, c in enumerate(chunks, start=1) if c.strip())
    for n, raw in enumerate(chunks, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode(enc)
        except (UnicodeDecodeError, LookupError) as e:
            raise UnreadableFile(_bad_bytes(ds, n, e)) from None
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("a line must hold one JSON object")
        except ValueError as e:
            if n == last and not data.endswith(b"\n"):
                raise UnreadableFile(f"truncated: the last line ({n}) is incomplete") from None
            rejects.append((n, f"malformed line: invalid JSON ({e})", text[:2000]))
            continue
        for c in wanted:
            v = _json_path(obj, c)
            if isinstance(v, (dict, list, _Blocked)):
                # an object or list where one value belongs: the value is not guessed at
                what = v.why if isinstance(v, _Blocked) else \
                    f"holds a JSON {'object' if isinstance(v, dict) else 'list'}, not a single value"
                issues.extend((n, canon, f"{canon}: {c} {what}") for canon in canonical.get(c, []))
                v = None
            elif isinstance(v, str) and "\0" in v:
                escaped_nul += v.count("\0")
                v = v.replace("\0", "")
            rows[c].append(None if v is None else str(v))
        seen_keys.update(_flat_keys(obj))
        lines.append(n)
    if not lines:
        raise UnreadableFile(f"not JSON lines: none of its {len(rejects)} lines holds a JSON object")
    _check_columns(ds, sorted(k for k in wanted if k in seen_keys), all_mapped=False)
    table = pa.table({**{c: pa.array(rows[c], pa.string()) for c in wanted},
                      "_source_line": pa.array(lines, pa.int64())})
    con.register("_jsonl_arrow", table)
    con.execute("CREATE OR REPLACE TEMP TABLE _in AS SELECT * FROM _jsonl_arrow")
    con.unregister("_jsonl_arrow")
    _empty_rejects(con)
    if rejects:
        con.executemany("INSERT INTO _rejects VALUES (?, ?, ?)", rejects)
    if nul + escaped_nul:
        notes.append(f"{nul + escaped_nul} NUL byte(s) removed")
    if issues:
        con.execute("CREATE OR REPLACE TEMP TABLE _field_issues (line BIGINT, field VARCHAR, reason VARCHAR)")
        con.executemany("INSERT INTO _field_issues VALUES (?, ?, ?)", issues)


def _read_parquet(con, ds: Dataset, path: Path, notes: list[str]) -> set[str]:
    """Returns the source columns the file holds as timestamps without time zone: their text is
    the one form a cast reads back, so they skip the format list."""
    p = _sq(str(path))
    try:
        types = warehouse.column_types(con, f"read_parquet('{p}')")
    except duckdb.Error as e:
        raise UnreadableFile(f"not readable as Parquet: {str(e).splitlines()[0]}") from None
    present = list(types)
    _check_columns(ds, present)
    cols = ", ".join(
        (f'CAST("{_dq(c)}" AS VARCHAR) AS "{_dq(c)}"' if c in present else f'NULL::VARCHAR AS "{_dq(c)}"')
        for c in ds.source_columns)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _in AS SELECT {cols}, file_row_number + 1 "
                    f"AS _source_line FROM read_parquet('{p}', file_row_number=true)")
    except duckdb.Error as e:
        raise UnreadableFile(f"not readable as Parquet: {str(e).splitlines()[0]}") from None
    _empty_rejects(con)
    naive = ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")
    return {c for c in ds.source_columns if types.get(c) in naive}


# --- parsing and row rules, as one SQL statement over _in ---

_OFFSET = re.compile(r"([+-]\d\d:?\d\d|[zZ])$")


def _with_offset(con, ds: Dataset, ent, typed: set[str] = frozenset()) -> set[str]:
    """The timestamp columns whose first value in the file carries a UTC offset. Every format is
    tried on every value either way; a failed format costs as much as a match, so the kind the
    file writes is tried first."""
    out = set()
    for col in ent.columns:
        src = ds.columns.get(col.name)
        if col.type == "timestamp" and src in ds.source_columns and src not in typed:
            first = con.execute(f'SELECT trim("{_dq(src)}") FROM _in WHERE nullif(trim("{_dq(src)}"), \'\') '
                                "IS NOT NULL LIMIT 1").fetchall()
            if first and _OFFSET.search(first[0][0]):
                out.add(col.name)
    return out


def _texts(ds: Dataset, ent, file: str = "") -> dict[str, str]:
    """The trimmed text of every canonical column of _in (NULL when empty or not delivered)."""
    raw_cols = set(ds.source_columns)
    out = {}
    for col in ent.columns:
        if col.name in ds.columns:
            src = ds.columns[col.name]
            raw = f'"{_dq(src)}"' if src in raw_cols else "NULL::VARCHAR"
        elif col.name in ds.derived:
            raw = _derived_sql(ds.derived[col.name], file)
        elif col.name in ds.constants:
            raw = f"'{_sq(ds.constants[col.name])}'"
        else:
            raw = "NULL::VARCHAR"
        out[col.name] = f"nullif(trim({raw}), '')"
    return out


def _derived_sql(d: Derivation, file: str = "") -> str:
    """The text of a derived column (``sources.Derivation``) over _in; ``_file`` and ``_line`` in
    a template are the file's path under landing/ and the record's line."""
    def cell(c):
        return {"_file": f"'{_sq(file)}'", "_line": "_source_line::VARCHAR"}.get(c, f"""nullif(trim("{_dq(c)}"), '')""")
    if d.kind == "map":
        cases = " ".join(f"WHEN '{_sq(k)}' THEN '{_sq(v)}'" for k, v in d.mapping)
        return f"CASE {cell(d.sources[0])} {cases} ELSE {cell(d.sources[0])} END"
    if d.kind == "part":
        return standardize.name_part_sql(cell(d.sources[0]), d.part)
    # a template: its parts filled in, white space of the empty ones folded; empty if all are
    pieces = re.split(r"\{([^{}]+)\}", d.template)
    sql = " || ".join(f"coalesce({cell(p.strip())}, '')" if i % 2 else f"'{_sq(p)}'"
                      for i, p in enumerate(pieces) if p or i % 2)
    filled = " OR ".join(f"{cell(c)} IS NOT NULL" for c in d.sources)
    return f"CASE WHEN {filled} THEN regexp_replace(trim({sql}), '\\s+', ' ', 'g') END"


def _parsed(ds: Dataset, ent, with_offset: set[str] = frozenset(), typed: set[str] = frozenset(),
            file: str = "") -> dict[str, str]:
    """The parse expression of every canonical column over _in, as _dups and _v both read it.
    ``with_offset``: timestamp columns to try the formats with a UTC offset on first; ``typed``:
    source columns that were timestamps in the file."""
    text = _texts(ds, ent, file)
    return {col.name: _parse_expr(col, text[col.name], ds, col.name in with_offset, ds.columns.get(col.name) in typed)
            for col in ent.columns}


def _duplicates_sql(ent, parsed: dict[str, str]) -> str:
    """SQL creating _dups: the keys delivered more than once in the file, with the first line of
    each. A table of its own, counted over the key texts alone: joined to the parsed rows inside
    one statement it cost a third of the file's validation."""
    keys = ", ".join(f"{parsed[k]} AS {k}" for k in ent.key)
    key_set = " AND ".join(f"{k} IS NOT NULL" for k in ent.key)
    return f"""CREATE OR REPLACE TEMP TABLE _dups AS
        SELECT * EXCLUDE (_n) FROM (SELECT {keys}, min(_source_line) AS _first_line, count(*) AS _n
                                    FROM _in GROUP BY ALL) WHERE _n > 1 AND {key_set}"""


def _validation_sql(ds: Dataset, ent, parsed: dict[str, str], file: str = "") -> str:
    """SQL creating _v: the parsed canonical columns (``_parsed``), the line, the reasons a row is
    kept out (``_reason``) and the values set to NULL (``_fields``: field and reason).

    A broken rule on a key or required column keeps the whole row out: the record cannot exist
    without it. Any other broken rule - a birth date in 1850, a malformed e-mail or phone, a
    postcode not of its country, a code outside its set - sets that value to NULL, and the row
    loads. Only what is loaded is kept; the raw text of a bad row is read back from _in when it is
    quarantined. Duplicate keys come from _dups (``_duplicates_sql``)."""
    texts, reasons, text_of = [], [], _texts(ds, ent, file)
    checked, fields = [], []
    for col in ent.columns:
        texts.append(f"{text_of[col.name]} AS _t_{col.name}")
        rules = _row_rules(col, ds)
        if col.required or col.name in ent.key or not rules:
            reasons.extend(rules)
            checked.append(col.name)
        else:
            checked.append(f"CASE WHEN _f_{col.name} = '' THEN {col.name} END AS {col.name}")
            fields.append(f"concat_ws('; ', {', '.join(rules)}) AS _f_{col.name}")
    field_list = "[" + ", ".join(f"{{'field': '{c.name}', 'reason': _f_{c.name}}}" for c in ent.columns
                                 if f"AS _f_{c.name}" in " ".join(fields)) + "]"
    keys = ", ".join(ent.key)
    reasons.append(
        f"CASE WHEN _first_line IS NOT NULL AND _first_line <> _source_line THEN "
        f"'duplicate key ({keys}) in file: first seen at line ' || _first_line END")
    return f"""
        CREATE OR REPLACE TEMP TABLE _v AS
        WITH parsed AS (
            SELECT _source_line, {', '.join(f"{e} AS {n}" for n, e in parsed.items())}, {', '.join(texts)} FROM _in
        ), judged AS (
            SELECT *{''.join(', ' + f for f in fields)}, concat_ws('; ', {', '.join(reasons)}) AS _reason
            FROM parsed LEFT JOIN _dups USING ({keys}), (SELECT ?::TIMESTAMP AS _as_of)
        )
        SELECT {', '.join(checked)}, _source_line, _reason,
               {'list_filter(' + field_list + ", lambda x: x.reason <> '')" if fields else "[]::STRUCT(field VARCHAR, reason VARCHAR)[]"} AS _fields
        FROM judged
    """


def _record_sql(ds: Dataset) -> str:
    """The delivered text of a row of _in, as JSON (what a quarantine row keeps for repair)."""
    return "to_json(struct_pack(" + ", ".join(
        f'"{_dq(c)}" := _in."{_dq(c)}"' for c in ds.source_columns) + "))::VARCHAR"


def _parse_expr(col: Column, text: str, ds: Dataset, offset_first: bool = False, typed: bool = False) -> str:
    if col.type in ("str", "email"):
        return text
    if col.type == "int":   # '4.0' is 4; '4.5' is not a whole number, not 5 (as a plain cast would round it)
        return f"CASE WHEN regexp_full_match({text}, '[+-]?[0-9]+(\\.0*)?') THEN TRY_CAST({text} AS BIGINT) END"
    if col.type == "decimal":
        cleaned = f"regexp_replace({text}, '[€\\s]|EUR', '', 'g')"
        if ds.decimal_comma:
            cleaned = f"replace(replace({cleaned}, '.', ''), ',', '.')"
        return f"TRY_CAST({cleaned} AS DECIMAL(18,2))"
    if col.type == "bool":
        t = ", ".join(f"'{w}'" for w in TRUE_WORDS)
        f = ", ".join(f"'{w}'" for w in FALSE_WORDS)
        return f"CASE WHEN lower({text}) IN ({t}) THEN true WHEN lower({text}) IN ({f}) THEN false END"
    if col.type == "date":
        fmts = _fmt_list([f for f in ds.date_formats + ds.timestamp_formats if "%z" not in f])
        return f"CAST(try_strptime({text}, {fmts}) AS DATE)"
    if col.type == "timestamp":
        aware = _fmt_list([f for f in ds.timestamp_formats if "%z" in f])
        naive = _fmt_list([f for f in ds.timestamp_formats + ds.date_formats if "%z" not in f])
        # A text matches formats of one kind only, so the order of the kinds is free (see
        # _with_offset); the rewriting of ISO 8601 'Z' (UTC) comes last, for what nothing else read.
        local = f"TRY_CAST({text} AS TIMESTAMP)" if typed else f"try_strptime({text}, {naive})"
        if ds.timezone != "UTC":
            local = f"timezone('UTC', timezone('{_sq(ds.timezone)}', {local}))"
        if typed:
            return local
        offset = f"timezone('UTC', try_strptime({text}, {aware}))"
        zulu = f"timezone('UTC', try_strptime(regexp_replace({text}, '([0-9])[zZ]$', '\\1+00:00'), {aware}))"
        return f"coalesce({offset}, {local}, {zulu})" if offset_first else f"coalesce({local}, {offset}, {zulu})"
    raise ValueError(col.type)


def _row_rules(col: Column, ds: Dataset | None = None) -> list[str]:
    n, t = col.name, f"_t_{col.name}"
    # a reason names the bad value, unless it is personal data (the record column keeps it for repair)
    shown = "'(value hidden: personal data)'" if col.pii else f"'''' || left({t}, 60) || ''''"
    rules = []
    if col.required:
        rules.append(f"CASE WHEN {t} IS NULL THEN '{n}: missing required value' END")
    if col.type not in ("str", "email"):
        rules.append(f"CASE WHEN {t} IS NOT NULL AND {n} IS NULL THEN "
                     f"'{n}: cannot parse ' || {shown} || ' as {col.type}' END")
    if col.type == "email":
        rules.append(f"CASE WHEN {n} IS NOT NULL AND NOT regexp_full_match({n}, '{EMAIL_PATTERN}')"
                     f" THEN '{n}: malformed email ' || {shown} END")
    if col.non_negative:
        rules.append(f"CASE WHEN {n} < 0 THEN '{n}: negative amount ' || {n} END")
    if col.min is not None:
        rules.append(f"CASE WHEN {n} < {col.min} THEN '{n}: ' || {n} || ' is below {col.min:g}' END")
    if col.max is not None:
        rules.append(f"CASE WHEN {n} > {col.max} THEN '{n}: ' || {n} || ' is above {col.max:g}' END")
    value = shown if col.pii else f"{n}"
    if col.type in ("date", "timestamp"):
        rules.append(f"CASE WHEN {n} < DATE '{EARLIEST}' THEN '{n}: ' || {value} || ' is before {EARLIEST}' END")
    if col.not_future:
        limit = f"_as_of + {FUTURE_TOLERANCE}" if col.type == "timestamp" else "_as_of::DATE"
        rules.append(f"CASE WHEN {n} > {limit} THEN '{n}: ' || {value} || ' is in the future' END")
    if col.country_rule and ds is not None:
        country = f"std_country(_t_country, '{_sq(ds.default_country)}')"
        test = {"phone": f"std_phone({t}, {country}) IS NULL", "postcode": f"std_postcode({t}, {country}) IS NULL",
                "country": f"std_country({t}, '') = ''"}[col.country_rule]
        what = {"phone": "is not a phone number of ", "postcode": "is not a postcode of ",
                "country": "is not a country"}[col.country_rule]
        where = f" || {country}" if col.country_rule != "country" else ""
        rules.append(f"CASE WHEN {t} IS NOT NULL AND {test} THEN '{n}: ' || {shown} || ' {what}'{where} END")
    if col.allowed:
        vals = ", ".join(f"'{v}'" for v in col.allowed)
        rules.append(f"CASE WHEN {n} IS NOT NULL AND lower({n}) NOT IN ({vals}) THEN "
                     f"'{n}: ' || {shown} || ' is not one of {'/'.join(col.allowed)}' END")
    return rules


def _fmt_list(fmts: list[str]) -> str:
    return "[" + ", ".join(f"'{_sq(f)}'" for f in dict.fromkeys(fmts)) + "]"


@dataclass(frozen=True)
class _Blocked:
    """A dotted JSON path that runs into a list or a single value before its last part."""
    why: str


def _json_path(obj: dict, dotted: str):
    """The value at a dotted path; None when a part is missing or null, ``_Blocked`` when the
    record holds something else than an object on the way (``satisfaction_rating: [..]``)."""
    cur, parts = obj, dotted.split(".")
    for i, part in enumerate(parts):
        if cur is None:
            return None
        if not isinstance(cur, dict):
            kind = "a list" if isinstance(cur, list) else "a single value"
            return _Blocked(f"cannot be read: {'.'.join(parts[:i])} holds {kind}, not an object")
        if part not in cur:
            return None
        cur = cur[part]
    return cur


def _flat_keys(obj: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in obj.items():
        keys.add(prefix + k)
        if isinstance(v, dict):
            keys |= _flat_keys(v, prefix + k + ".")
    return keys


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return False
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def _unique(names: list[str]) -> list[str]:
    out, seen = [], {}
    for n in names:
        n = n or "column"
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 0
        out.append(n)
    return out


def _sq(s: str) -> str:
    return s.replace("'", "''")


def _dq(s: str) -> str:
    return s.replace('"', '""')
