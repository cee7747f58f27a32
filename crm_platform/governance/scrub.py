"""Files under the home that may hold a person: finding every trace of their identifiers in a
file, record by record (a line, a CSV record across lines, a Parquet row), taking those records
out and writing the file back atomically, and the few files that are rebuilt instead (the
dashboard, the manifest entry of a scrubbed landing file)."""

from __future__ import annotations

import bisect
import csv
import os
import re
from pathlib import Path


from crm_platform.core import warehouse
from crm_platform.governance.subject import Subject
from crm_platform.ingest.load import fingerprint
from crm_platform.core.settings import Paths

LINE_FILES = {".csv", ".jsonl", ".ndjson", ".txt", ".log", ".tsv"}
BINARY_FILES = {".joblib", ".pkl", ".db", ".sqlite", ".sqlite3", ".png", ".duckdb", ".wal"}
BOUNDARY = "[^a-z0-9._%+@-]"


def token_regex(tokens: list[str]) -> str:
    """An RE2 pattern (for lower-cased text) matching any token as a whole word, SQL-quoted."""
    alts = "|".join(re.escape(t.lower()) for t in tokens) or "(?!x)x"
    return f"(^|{BOUNDARY})({alts})($|{BOUNDARY})".replace("'", "''")


def _token_hits(data: bytes, tokens: list[bytes]) -> list[tuple[int, bytes]]:
    """(offset, token) wherever a token starts as a whole word in ``data`` (lower-cased)."""
    low = data.lower()
    out = []
    bad = set(b"abcdefghijklmnopqrstuvwxyz0123456789._%+@-")
    for tok in tokens:
        i = low.find(tok)
        while i >= 0:
            end = i + len(tok)
            if (i == 0 or low[i - 1] not in bad) and (end >= len(low) or low[end] not in bad):
                out.append((i, tok))
            i = low.find(tok, i + 1)
    return sorted(out)


def hits(data: bytes, tokens: list[bytes]) -> list[int]:
    """Offsets in ``data`` (lower-cased) where a token starts as a whole word."""
    return [off for off, _ in _token_hits(data, tokens)]


def _line_spans(data: bytes) -> list[tuple[int, int]]:
    spans, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        spans.append((pos, end))
        pos = end
    return spans


def _csv_spans(data: bytes) -> list[tuple[int, int]] | None:
    """The byte span of every record of a CSV file, a quoted field over several lines inside its
    record; None when the text is not CSV the parser can follow (then lines are the records). A
    record whose field count differs from the header's is split into its lines again: a stray
    quote must not make one "record" of other people's lines."""
    lines = _line_spans(data)
    if not lines:
        return []
    text = [data[a:b].decode("utf-8", errors="surrogateescape") for a, b in lines]
    head = text[0]
    delimiter = max(",;\t|", key=head.count)
    reader = csv.reader(iter(text), delimiter=delimiter, strict=True)
    spans, done, width = [], 0, None
    try:
        for row in reader:
            first, done = done, reader.line_num
            width = len(row) if width is None else width
            if done - first > 1 and len(row) != width:
                spans += lines[first:done]
            else:
                spans.append((lines[first][0], lines[done - 1][1]))
    except csv.Error:
        return None
    return spans


def _spans_of(path: Path, data: bytes) -> list[tuple[int, int]]:
    """The records of a line file: CSV records for .csv/.tsv, lines otherwise."""
    if path.suffix.lower() in (".csv", ".tsv"):
        spans = _csv_spans(data)
        if spans is not None:
            return spans
    return _line_spans(data)


def _record_hits(spans: list[tuple[int, int]], hits: list[tuple[int, bytes]]) -> dict[int, set[bytes]]:
    """{index of the record: tokens found in it}."""
    starts = [a for a, _ in spans]
    out: dict[int, set[bytes]] = {}
    for off, tok in hits:
        i = bisect.bisect_right(starts, off) - 1
        if i >= 0:
            out.setdefault(i, set()).add(tok)
    return out


def _without(data: bytes, spans: list[tuple[int, int]], drop) -> bytes:
    out, pos = [], 0
    for i in sorted(drop):
        a, b = spans[i]
        out.append(data[pos:a])
        pos = b
    out.append(data[pos:])
    return b"".join(out)


def _without_lines(data: bytes, offsets: list[int]) -> tuple[bytes, int]:
    """``data`` without the lines holding one of ``offsets``, and how many lines that was."""
    spans = _line_spans(data)
    drop = set(_record_hits(spans, [(o, b"") for o in offsets]))
    return _without(data, spans, drop), len(drop)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.erasure.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def parquet_hits(con, path: Path, rx: str) -> tuple[int, str]:
    cols = warehouse.columns(con, f"read_parquet('{sql_quote(str(path))}')")
    text = "lower(concat_ws(' ', " + ", ".join(f'"{c}"::VARCHAR' for c in cols) + "))"
    cond = f"regexp_matches({text}, '{rx}')"
    n = con.execute(f"SELECT count(*) FROM read_parquet('{sql_quote(str(path))}') WHERE {cond}").fetchall()[0][0]
    return int(n), cond


def sql_quote(s: str) -> str:
    return s.replace("'", "''")


def files_under(paths: Paths):
    skip = {paths.warehouse, paths.warehouse.with_name(paths.warehouse.name + ".wal"), paths.salt_file}
    for p in sorted(paths.home.rglob("*")):
        if p.is_file() and p not in skip and not p.name.endswith(".erasure.tmp"):
            yield p


def _scrubbed_files(paths: Paths):
    """The files an erasure rewrites: all under the home but the orchestrator's history (only
    scanned), binary files and the governance folder (erasure list, receipts)."""
    dagster_home = paths.home / "dagster_home"
    for path in files_under(paths):
        if path.is_relative_to(dagster_home) or path.suffix.lower() in BINARY_FILES \
                or path.is_relative_to(list_path(paths).parent):
            continue
        yield path


def _records_of(path: Path, data: bytes) -> list[tuple[int, int]]:
    return _spans_of(path, data) if path.suffix.lower() in LINE_FILES else [(0, len(data))]


def keep_shared_identifiers(con, paths: Paths, s: Subject) -> int:
    """An e-mail address or phone number of the person that a file record or a quarantined row
    holds without any id of the person (a line not loaded yet, another person's line) is not the
    person's alone: it is kept, like one another contact record holds. Returns how many."""
    weak = {t.lower().encode(): t for t in s.emails | s.phones if len(t) >= 5}
    if not weak:
        return 0
    strong = [t.lower().encode() for t in s.tokens() if t not in s.emails and t not in s.phones]
    shared: set[bytes] = set()
    for path in _scrubbed_files(paths):
        if path.suffix.lower() not in LINE_FILES:       # a document (a request, an export) is no record
            continue
        data = path.read_bytes()
        hits = _token_hits(data, list(weak))
        if not hits:
            continue
        spans = _spans_of(path, data)
        mine = _record_hits(spans, _token_hits(data, strong))
        shared |= {t for i, toks in _record_hits(spans, hits).items() if i not in mine for t in toks}
    if warehouse.table_exists(con, "raw.quarantine_rows"):
        rx = token_regex(list(weak.values()))
        for (record,) in con.execute(f"SELECT record FROM raw.quarantine_rows WHERE "
                                     f"regexp_matches(lower(coalesce(record, '')), '{rx}')").fetchall():
            data = record.encode()
            if not _token_hits(data, strong):
                shared |= {t for _, t in _token_hits(data, list(weak))}
    values = {weak[t] for t in shared}
    s.shared_emails += len(values & s.emails)
    s.shared_phones += len(values & s.phones)
    s.emails -= values
    s.phones -= values
    return len(values)


def truth_persons(paths: Paths, s: Subject) -> None:
    """The generator's truth names the person behind each record (``truth/contact_records.csv``):
    their person ids join the identifiers, so their rows in ``truth/persons.csv`` go too."""
    path = paths.home / "truth" / "contact_records.csv"
    if not path.exists() or not s.contact_keys:
        return
    persons: dict[str, set] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            persons.setdefault(row.get("source_record_id"), set()).add(row.get("person_id"))
    for key in s.contact_keys:
        s.other_ids |= persons.get(key.split(":", 1)[1], set()) - {None, ""}


def scrub_files(con, paths: Paths, tokens: list[str]) -> dict[str, str]:
    """Remove the person from every file under the home (the orchestrator's history is only
    scanned); returns {relative path: what was done}. CSV files are cut record by record (a quoted
    field over several lines leaves with its record), the dashboard is rendered again without the
    person, other documents naming them are deleted."""
    btoks = [t.lower().encode() for t in tokens]
    rx = token_regex(tokens)
    done = {}
    for path in _scrubbed_files(paths):
        rel = path.relative_to(paths.home).as_posix()
        if path.suffix.lower() == ".parquet":
            n, cond = parquet_hits(con, path, rx)
            if n:
                tmp = path.with_name(f".{path.name}.erasure.tmp")
                con.execute(f"COPY (SELECT * FROM read_parquet('{sql_quote(str(path))}') WHERE NOT {cond}) "
                            f"TO '{sql_quote(str(tmp))}' (FORMAT parquet)")
                old = fingerprint(path)
                os.replace(tmp, path)
                _manifest_follow(con, paths, path, old)
                done[rel] = f"{n} row(s) removed"
            continue
        data = path.read_bytes()
        hits = _token_hits(data, btoks)
        if not hits:
            continue
        if path.suffix.lower() in LINE_FILES:
            old = fingerprint(path)
            spans = _records_of(path, data)
            drop = _record_hits(spans, hits)
            _write_atomic(path, _without(data, spans, drop))
            _manifest_follow(con, paths, path, old)
            done[rel] = f"{len(drop)} record(s) removed"
        elif _is_dashboard(paths, path):
            done[rel] = _render_dashboard(con, paths, path)
        else:
            path.unlink()
            done[rel] = "deleted (a document about the person)"
    return done


def _is_dashboard(paths: Paths, path: Path) -> bool:
    return path.parent == paths.reports and re.fullmatch(r"dashboard(_\d{4}-\d{2}-\d{2})?\.html", path.name) is not None


def _render_dashboard(con, paths: Paths, path: Path) -> str:
    """The dashboard page of the same day, drawn again from the warehouse without the person (the
    check results, read from the orchestrator, are left out until the next scheduled render)."""
    from datetime import date

    from crm_platform import reports as dashboard
    from crm_platform.marts import kpis
    from crm_platform.core import settings
    from crm_platform.reports.sections import as_of_day
    from crm_platform.ml.registry import Registry

    day = re.search(r"(\d{4}-\d{2}-\d{2})", path.name)
    day = date.fromisoformat(day.group(1)) if day else as_of_day(con)
    if day is None:
        path.unlink()
        return "deleted (no day left to draw)"
    cards = dashboard.champion_cards(Registry(paths.models))
    out = dashboard.render_day(con, day, paths.reports, kpis.load_config(settings.segments_file()), cards)
    if out.path != path:          # drawn as another day's page: this one goes
        path.unlink(missing_ok=True)
    return "rendered again without the person"


def _manifest_follow(con, paths: Paths, path: Path, old: tuple[int, str]) -> None:
    """A landing file loaded as it was: the manifest takes its new fingerprint, so the rewrite is
    not mistaken for a new delivery."""
    if not path.is_relative_to(paths.landing) or not warehouse.table_exists(con, "raw.ingest_manifest"):
        return
    size, digest = fingerprint(path)
    con.execute("UPDATE raw.ingest_manifest SET size_bytes = ?, sha256 = ? WHERE source_file = ? AND sha256 = ?",
                [size, digest, path.relative_to(paths.landing).as_posix(), old[1]])


# --- compaction and verification ---------------------------------------------------------------


def list_path(paths: Paths) -> Path:
    return paths.home / "governance" / "erased_identifiers.csv"
