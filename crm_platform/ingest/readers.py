"""Readers of landing files: each fills the temporary table ``_in`` (text columns and
``_source_line``) and ``_rejects`` (line, reason, record) from one CSV, JSON-lines or Parquet file,
or raises ``UnreadableFile`` with the reason the whole file is quarantined."""

from __future__ import annotations

import codecs
import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from crm_platform.core import warehouse
from crm_platform.ingest.sources import WHITESPACE, Dataset
from crm_platform.ingest.rules import dq, sq


class UnreadableFile(Exception):
    """The file as a whole cannot be loaded; the message is the reason recorded with it."""




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


def read_csv(con, ds: Dataset, path: Path, notes: list[str]) -> None:
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
        columns = "{" + ", ".join(f"'{sq(n)}': 'VARCHAR'" for n in names) + "}"
        quote = "" if ds.delimiter == WHITESPACE else sq(ds.quote)
        con.execute("DROP TABLE IF EXISTS _rej_errors; DROP TABLE IF EXISTS _rej_scans")
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM read_csv('{sq(str(readable))}',"
                f" header=true, auto_detect=false, columns={columns}, delim='{sq(delimiter)}',"
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
        select = ", ".join(f'"{dq(n)}"' for n in names)
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


def read_jsonl(con, ds: Dataset, path: Path, notes: list[str]) -> None:
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


def read_parquet(con, ds: Dataset, path: Path, notes: list[str]) -> set[str]:
    """Returns the source columns the file holds as timestamps without time zone: their text is
    the one form a cast reads back, so they skip the format list."""
    p = sq(str(path))
    try:
        types = warehouse.column_types(con, f"read_parquet('{p}')")
    except duckdb.Error as e:
        raise UnreadableFile(f"not readable as Parquet: {str(e).splitlines()[0]}") from None
    present = list(types)
    _check_columns(ds, present)
    cols = ", ".join(
        (f'CAST("{dq(c)}" AS VARCHAR) AS "{dq(c)}"' if c in present else f'NULL::VARCHAR AS "{dq(c)}"')
        for c in ds.source_columns)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _in AS SELECT {cols}, file_row_number + 1 "
                    f"AS _source_line FROM read_parquet('{p}', file_row_number=true)")
    except duckdb.Error as e:
        raise UnreadableFile(f"not readable as Parquet: {str(e).splitlines()[0]}") from None
    _empty_rejects(con)
    naive = ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")
    return {c for c in ds.source_columns if types.get(c) in naive}



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
