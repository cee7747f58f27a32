"""Fuzzed landing files: hundreds of exports of three formats - shop orders (CSV, UTF-8, commas),
newsletter subscribers (German CSV, Windows-1252, semicolons) and support tickets (JSON lines) -
each corrupted by a seeded generator the way real exports break (truncated, wrong delimiter or
encoding, columns missing, renamed or extra, empty keys, absurd numbers and dates, very long
strings, quotes, SQL and spreadsheet-formula text, duplicate rows, ragged or broken lines).
Ingestion must not crash; every valid row is loaded unchanged, every bad row or file is in
quarantine with a reason, and the counts reconcile file by file."""

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable

import duckdb
import pytest

from crm_platform.ingest.load import ingest_dataset
from crm_platform.core.settings import DEFAULT_SOURCES
from crm_platform.ingest.sources import load_sources

pytestmark = pytest.mark.slow  # a fuzzed delivery ingested per format: the full lane, not the fast one

AS_OF = datetime(2026, 10, 1, tzinfo=timezone.utc)
INJECTION = ["'; DROP TABLE raw.shop_orders; --", "=HYPERLINK(\"http://example.invalid\",\"x\")", "+SUM(A1:A9)",
             "-2+3", "@cmd", 'say "hi", then leave', "line\nbreak", "\\N", "NULL", "a\tb"]
HOSTILE = INJECTION + ["Ünïcödé ✓ 😀"]


class Fuzzed:
    """One landing file and what ingestion must make of it."""

    def __init__(self, name: str):
        self.name = name
        self.ops: list[str] = []
        self.file_reason: str | None = None     # the file must be quarantined, its reason saying this
        self.good: dict[int, dict] = {}         # line -> canonical values that must be loaded as is
        self.bad: dict[int, str | None] = {}    # line -> text the reason must hold (None: any reason)
        self.fixed: dict[int, str] = {}         # line of a good row -> the field whose value is set to NULL


@dataclass(frozen=True)
class Field:
    """A broken value outside the key and the required columns: the row loads with the value set
    to NULL, and the field is quarantined with a reason holding ``column``."""
    column: str


def setter(col, value):
    return lambda row, rng: row.__setitem__(col, value(rng) if callable(value) else value)


@dataclass
class Format:
    """A dataset's export and how to corrupt it. Row operations are (name, change, text the reason
    must hold - or None when the changed row stays valid)."""
    dataset: str
    file: str                                   # landing path, {i} the file number
    clean_row: Callable[[random.Random, int], dict]
    row_ops: list
    expect: Callable[[dict], dict]              # a valid row -> its canonical values
    key: str                                    # source column of the key; its canonical name
    key_column: str
    delimiter: str = ","
    encoding: str = "utf-8"
    required: list = field(default_factory=list)   # source columns of required values
    hostile_column: tuple[str, str] = ("", "")     # source column taking hostile text; its canonical name


def _ts(rng: random.Random, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime(rng.randint(2023, 2026), rng.randint(1, 9), rng.randint(1, 28), rng.randint(0, 23),
                    rng.randint(0, 59)).strftime(fmt)


# --- shop orders: CSV, UTF-8, commas ---

ORDER_STATUSES = ["completed", "cancelled", "returned", "partially_returned"]


def _order(rng: random.Random, n: int) -> dict:
    return {"order_no": f"O{n:07d}", "customer_no": f"K{rng.randrange(1, 9999):08d}", "order_date": _ts(rng),
            "status": rng.choice(ORDER_STATUSES), "channel": rng.choice(["web", "app", "store"]), "currency": "EUR",
            "total": f"{rng.uniform(1, 900):.2f}", "discount": f"{rng.choice([0, 0, 5, 10]):.2f}",
            "shipping": rng.choice(["0.00", "4.90"]), "coupon": ""}


ORDERS = Format(
    "shop_orders", "shop/orders_fuzz_{i:04d}.csv", _order,
    [("empty key", setter("order_no", ""), "order_id"),
     ("blank key", setter("order_no", "   "), "order_id"),
     ("empty buyer", setter("customer_no", ""), "customer_ref"),
     ("negative total", setter("total", "-12.50"), "total_amount"),
     ("absurd total", setter("total", "1e30"), "total_amount"),
     ("text total", setter("total", "twelve"), "total_amount"),
     ("absurd discount", setter("discount", "99999999999999999999"), Field("discount_amount")),
     ("impossible date", setter("order_date", "2026-02-30 10:00:00"), "ordered_at"),
     ("future date", setter("order_date", "2999-01-01 00:00:00"), "ordered_at"),
     ("ancient date", setter("order_date", "0999-01-01 00:00:00"), "ordered_at"),
     ("date garbage", setter("order_date", "yesterday"), "ordered_at"),
     ("unknown status", setter("status", "stolen"), Field("status")),
     ("long coupon", setter("coupon", lambda rng: "X" * rng.choice([5_000, 60_000])), None),
     ("hostile coupon", setter("coupon", lambda rng: rng.choice(HOSTILE)), None),
     ("hostile channel", setter("channel", lambda rng: rng.choice(HOSTILE)), None),
     ("padded values", lambda row, rng: row.update(total=f"  {row['total']} ", status=f" {row['status']}"), None)],
    lambda r: {"order_id": r["order_no"].strip(), "customer_ref": r["customer_no"],
               "total_amount": Decimal(r["total"].strip()), "coupon_code": r["coupon"].strip() or None,
               "sales_channel": r["channel"].strip() or None},
    key="order_no", key_column="order_id",
    required=["order_no", "customer_no", "order_date", "total"], hostile_column=("coupon", "coupon_code"))


# --- newsletter subscribers: German CSV, Windows-1252, semicolons ---

FIRST = ["Jürgen", "Änne", "Sören", "Zoë", "François", "Max", "Lea", "Noël", "Björn", ""]
LAST = ["Müßig", "Öztürk", "Weiß", "Schröder", "D'Angelo", "Ñúñez",
        "Meyer-Lüdenscheidt", "Ernst"]
CITIES = ["München", "Köln", "Düsseldorf", "Saarbrücken", "Berlin", "Görlitz"]
CP1252_HOSTILE = [h for h in INJECTION if h.encode("cp1252", "ignore").decode("cp1252") == h] + ["Grüße, «Zitat» – €"]


def _subscriber(rng: random.Random, n: int) -> dict:
    return {"Abonnent-ID": f"NL-{n:07d}", "Anrede": rng.choice(["Herr", "Frau", ""]), "Vorname": rng.choice(FIRST),
            "Nachname": rng.choice(LAST), "E-Mail": f"user{n}@example.de",
            "Geburtsdatum": rng.choice(["", f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.19{rng.randint(40, 99)}"]),
            "PLZ": f"{rng.randint(1067, 99998):05d}", "Ort": rng.choice(CITIES), "Angemeldet am": _ts(rng, "%d.%m.%Y %H:%M"),
            "Geändert am": "", "Einwilligung": rng.choice(["ja", "nein"])}


SUBSCRIBERS = Format(
    "newsletter_subscribers", "newsletter/abonnenten_fuzz_{i:04d}.csv", _subscriber,
    [("empty key", setter("Abonnent-ID", ""), "source_record_id"),
     ("malformed email", setter("E-Mail", lambda rng: rng.choice(["max@@example.de", "max.example.de", "a b@c.de"])),
      Field("email")),
     ("impossible date", setter("Angemeldet am", "31.02.2025 10:00"), Field("created_at")),
     ("future date", setter("Angemeldet am", "01.01.2999 00:00"), Field("created_at")),
     ("future birthday", setter("Geburtsdatum", "01.01.2990"), Field("birth_date")),
     ("US date", setter("Geburtsdatum", "12/31/1980"), Field("birth_date")),
     ("unknown consent", setter("Einwilligung", "vielleicht"), Field("consent_email")),
     # a record with nothing but its id is a customer all the same (identified by its system's id)
     ("id only", lambda row, rng: row.update({"E-Mail": "", "Nachname": ""}), None),
     ("long city", setter("Ort", lambda rng: "Ü" * rng.choice([5_000, 60_000])), None),
     ("hostile city", setter("Ort", lambda rng: rng.choice(CP1252_HOSTILE)), None),
     ("padded values", lambda row, rng: row.update({"Nachname": f"  {row['Nachname']} ", "Abonnent-ID":
                                                    f" {row['Abonnent-ID']}"}), None)],
    lambda r: {"source_record_id": r["Abonnent-ID"].strip(), "first_name": r["Vorname"].strip() or None,
               "last_name": r["Nachname"].strip() or None, "email": r["E-Mail"].strip() or None,
               "city": r["Ort"].strip() or None},
    key="Abonnent-ID", key_column="source_record_id", delimiter=";", encoding="cp1252",
    required=["Abonnent-ID"], hostile_column=("Ort", "city"))


# --- support tickets: JSON lines ---

def _ticket(rng: random.Random, n: int) -> dict:
    return {"id": f"T{n:08d}", "requester_id": f"ZD{rng.randrange(1, 99999):07d}",
            "external_id": rng.choice([None, f"K{rng.randrange(1, 9999):08d}"]),
            "created_at": _ts(rng, "%Y-%m-%dT%H:%M:%S+00:00"), "solved_at": rng.choice([None, "2026-09-30T10:00:00Z"]),
            "status": rng.choice(["open", "pending", "solved", "closed"]),
            "priority": rng.choice(["low", "normal", "high", "urgent"]), "type": rng.choice(["return", "delivery"]),
            "escalated": rng.choice([True, False]),
            "satisfaction_rating": rng.choice([None, {"score": rng.randint(1, 5)}])}


def _score(value):
    return lambda row, rng: row.__setitem__("satisfaction_rating", {"score": value})


TICKETS = Format(
    "support_tickets", "support/tickets_fuzz_{i:04d}.jsonl", _ticket,
    [("empty key", setter("id", ""), "ticket_id"),
     ("null key", setter("id", None), "ticket_id"),
     ("numeric key", setter("id", lambda rng: rng.randrange(10**12, 10**13)), None),
     ("no requester", lambda row, rng: row.pop("requester_id"), "requester_ref"),
     ("date garbage", setter("created_at", "last tuesday"), "opened_at"),
     ("future date", setter("created_at", "2999-01-01T00:00:00+00:00"), "opened_at"),
     ("unknown status", setter("status", "exploded"), Field("status")),
     ("shouted priority", setter("priority", "URGENT"), None),
     ("score too high", _score(7), Field("satisfaction_score")),
     ("score zero", _score(0), Field("satisfaction_score")),
     ("score in words", _score("five"), Field("satisfaction_score")),
     ("fractional score", _score(4.5), Field("satisfaction_score")),
     ("whole float score", _score(4.0), None),
     ("infinite score", _score(float("inf")), Field("satisfaction_score")),
     ("unknown flag", setter("escalated", "maybe"), Field("escalated")),
     ("long category", setter("type", lambda rng: "X" * rng.choice([5_000, 60_000])), None),
     ("hostile category", setter("type", lambda rng: rng.choice(HOSTILE)), None),
     ("extra fields", setter("via", {"channel": "email", "tags": ["a", "b"]}), None)],
    lambda r: {"ticket_id": str(r["id"]).strip(), "requester_ref": r["requester_id"], "status": r["status"],
               "priority": r["priority"], "category": r["type"],
               "satisfaction_score": int(r["satisfaction_rating"]["score"]) if r["satisfaction_rating"] else None},
    key="id", key_column="ticket_id", required=["id", "requester_id", "created_at"],
    hostile_column=("type", "category"))

FORMATS = {f.dataset: f for f in (ORDERS, SUBSCRIBERS, TICKETS)}


def _rows(fmt: Format, rng: random.Random, index: int, f: Fuzzed) -> list[tuple[dict | str, int]]:
    """The file's records with their lines: a dict for a record, a string for a raw broken line."""
    out: list[tuple[dict | str, int]] = []
    line = 2 if fmt.file.endswith(".csv") else 1                 # CSV line 1 is the header
    for k in range(rng.randint(1, 30)):
        row = fmt.clean_row(rng, index * 1000 + k)
        clean = dict(row)
        expect = "good"
        if rng.random() < 0.35:
            name, change, reason = rng.choice(fmt.row_ops)
            change(row, rng)
            f.ops.append(name)
            expect = reason or "good"
        if rng.random() < 0.05 and f.good:                        # a record delivered twice in one file
            first = rng.choice(list(f.good))
            row = dict(next(r for r, n in out if n == first))
            expect = f"duplicate key ({fmt.key_column})"
            f.ops.append("duplicate row")
        broken = _break(fmt, rng, row, f) if k else None           # the first record stays a record
        out.append((broken or row, line))
        if broken:
            f.bad[line] = None
        elif expect == "good":
            f.good[line] = fmt.expect(row)
        elif isinstance(expect, Field):
            f.good[line] = {c: None if c == expect.column else v for c, v in fmt.expect(clean).items()}
            f.fixed[line] = expect.column
        else:
            f.bad[line] = expect
        line += 1
        if not fmt.file.endswith(".csv") and rng.random() < 0.03:  # an empty line: no record
            out.append(("", line))
            f.ops.append("blank line")
            line += 1
    return out


def _break(fmt: Format, rng: random.Random, row: dict, f: Fuzzed) -> str | None:
    """A record turned into a line that cannot be read as one (or None)."""
    if rng.random() >= 0.04:
        return None
    if fmt.file.endswith(".csv"):                                  # ragged: a field too many or too few
        values = list(row.values())
        f.ops.append("ragged line")
        return _csv([values + ["surplus"] if rng.random() < 0.5 else values[:-2]], fmt.delimiter).rstrip("\n")
    kind = rng.choice(["unclosed", "array", "trailing comma", "single quotes"])
    f.ops.append(f"broken json: {kind}")
    text = json.dumps(row)
    return {"unclosed": text[:-1], "array": json.dumps(list(row.values())), "trailing comma": text[:-1] + ",}",
            "single quotes": text.replace('"', "'")}[kind]


def _csv(rows: list, delimiter: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


FILE_OPS = {  # name -> weight; "none" leaves the file as it is
    "none": 40, "encoding": 4, "delimiter": 4, "missing column": 4, "renamed column": 4, "extra column": 5,
    "truncated": 5, "empty": 2, "header only": 2, "binary": 2, "bom": 3, "crlf": 3, "utf-8 re-export": 4}


def fuzz_file(fmt: Format, rng: random.Random, index: int, landing: Path) -> Fuzzed:
    """One export, clean or corrupted: records first, then maybe the file as a whole."""
    f = Fuzzed(fmt.file.format(i=index))
    records = _rows(fmt, rng, index, f)
    is_csv = fmt.file.endswith(".csv")
    header = list(fmt.clean_row(rng, 0))
    ops = [o for o in FILE_OPS if (is_csv or o not in ("delimiter", "header only", "extra column"))
           and (o != "utf-8 re-export" or fmt.encoding != "utf-8")]
    op = rng.choices(ops, weights=[FILE_OPS[o] for o in ops])[0]
    if op in ("missing column", "renamed column"):
        # a CSV header must have every mapped column; a JSON record may lack optional fields
        gone = rng.choice(header if is_csv else fmt.required)
        for rec, _ in records:
            if isinstance(rec, dict) and gone in rec:
                value = rec.pop(gone)
                if op == "renamed column":
                    rec[gone + "_renamed"] = value
        header = [h + "_renamed" if h == gone and op == "renamed column" else h
                  for h in header if h != gone or op == "renamed column"]
        f.file_reason = "missing required columns" if gone in fmt.required else "missing mapped columns"
    elif op == "extra column":
        header.append("comment")
        for rec, _ in records:
            if isinstance(rec, dict):
                rec["comment"] = "extra"
            # a ragged line stays ragged: one field more than the header still
    if is_csv:
        lines = [_csv([header], fmt.delimiter)] + [
            rec + "\n" if isinstance(rec, str) else _csv([[rec.get(h, "") for h in header]], fmt.delimiter)
            for rec, _ in records]
        if op == "extra column":                                   # a ragged line gets the extra field too
            lines = [lines[0]] + [ln if isinstance(rec, dict) else ln.rstrip("\n") + fmt.delimiter + "extra\n"
                                  for ln, (rec, _) in zip(lines[1:], records)]
    else:
        lines = [(rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=rng.random() < 0.5)) + "\n"
                 for rec, _ in records]
    text = "".join(lines)
    data = None
    if op != "none":
        f.ops.append(f"file: {op}")
    if op == "encoding":
        data = text.encode("utf-16")
        f.file_reason = "not valid UTF-8" if fmt.encoding == "utf-8" else "NUL bytes"
    elif op == "delimiter":
        other = ";" if fmt.delimiter == "," else ","
        text = text.replace(fmt.delimiter, other)                  # re-exported with another separator
        f.file_reason = "missing required columns"
    elif op == "truncated":
        # cut a record without quotes in the middle: the file ends inside it
        plain = [i for i, (rec, _) in enumerate(records) if isinstance(rec, dict) and '"' not in lines[i + is_csv][:-1]]
        if plain:
            k = plain[rng.randrange(len(plain))] + is_csv
            cut = lines[k][:-1]
            cut = fmt.delimiter.join(cut.split(fmt.delimiter)[:3]) if is_csv else cut[:len(cut) // 2]
            text = "".join(lines[:k]) + cut
            f.file_reason = "truncated"
    elif op == "empty":
        text = ""
        f.file_reason = "empty file"
    elif op == "header only":
        text = lines[0]
        f.good, f.bad, f.fixed = {}, {}, {}
    elif op == "binary":
        data = bytes(rng.randrange(256) for _ in range(rng.randint(50, 2000)))
        f.file_reason = "any"
    elif op == "bom":                                              # e.g. spreadsheet "CSV UTF-8"
        data = b"\xef\xbb\xbf" + text.encode("utf-8")
        if fmt.encoding != "utf-8":
            f.file_reason = "UTF-8"
    elif op == "crlf":
        text = text.replace("\n", "\r\n")
    elif op == "utf-8 re-export":
        data = text.encode("utf-8")
        if any(ord(c) > 127 for c in text):                        # plain ASCII reads the same either way
            f.file_reason = "UTF-8"
    path = landing / f.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else text.encode(fmt.encoding))
    return f


FILES = {"shop_orders": 240, "newsletter_subscribers": 150, "support_tickets": 150}


@pytest.fixture(scope="module", params=list(FORMATS))
def fuzzed(request, tmp_path_factory):
    fmt = FORMATS[request.param]
    home = tmp_path_factory.mktemp(f"fuzz_{fmt.dataset}")
    rng = random.Random(20261130)
    files = [fuzz_file(fmt, rng, i, home / "landing") for i in range(FILES[fmt.dataset])]
    ds = load_sources(DEFAULT_SOURCES).dataset(fmt.dataset)
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    report = ingest_dataset(con, ds, home / "landing", home / "quarantine", as_of=AS_OF)
    yield fmt, files, report, con, home
    con.close()


def test_fuzzed_files_never_crash_and_every_file_is_accounted_for(fuzzed):
    fmt, files, report, con, _ = fuzzed
    assert len(report.files) == len(files)
    kinds = {op for f in files for op in f.ops}
    assert len(kinds) >= 20, kinds                    # the generator really produced the variety
    for r in report.files:
        assert r.reconciles, r
    manifest = dict(con.execute("SELECT source_file, status FROM raw.ingest_manifest").fetchall())
    assert len(manifest) == len(files)
    read, loaded, quarantined = con.execute(
        "SELECT sum(rows_read), sum(rows_loaded), sum(rows_quarantined) FROM raw.ingest_manifest").fetchall()[0]
    assert read == loaded + quarantined
    assert loaded == con.execute(f"SELECT count(*) FROM raw.{fmt.dataset}").fetchall()[0][0]
    assert quarantined == con.execute("SELECT count(*) FROM raw.quarantine_rows WHERE field IS NULL").fetchall()[0][0]
    fields = con.execute("SELECT sum(fields_quarantined) FROM raw.ingest_manifest").fetchall()[0][0]
    assert fields == con.execute("SELECT count(*) FROM raw.quarantine_rows WHERE field IS NOT NULL").fetchall()[0][0]


def test_every_bad_file_is_quarantined_with_its_reason(fuzzed):
    fmt, files, report, con, home = fuzzed
    by_file = {r.source_file: r for r in report.files}
    assert sum(f.file_reason is not None for f in files) > 20
    for f in files:
        r = by_file[f.name]
        if f.file_reason is None:
            assert r.status == "loaded", (f.name, f.ops, r.reason)
            continue
        assert r.status == "quarantined", (f.name, f.ops)
        assert r.reason and (f.file_reason == "any" or f.file_reason in r.reason), (f.ops, r.reason)
        assert (home / r.quarantine_path).exists(), r.quarantine_path     # the file kept for repair
        assert con.execute(f"SELECT count(*) FROM raw.{fmt.dataset} WHERE _source_file = ?",
                           [f.name]).fetchall()[0][0] == 0


def _same(value, expected) -> bool:
    if isinstance(value, str):
        value = value.replace("\r", "")       # a Windows export turns line breaks in quoted values into CR LF too
    return value == expected


def test_every_valid_row_is_loaded_unchanged_and_every_bad_row_has_a_reason(fuzzed):
    fmt, files, _, con, _ = fuzzed
    checked_good = checked_bad = checked_fixed = 0
    columns = list(fmt.expect(fmt.clean_row(random.Random(0), 0)))
    for f in files:
        if f.file_reason is not None:
            continue
        loaded = {row[0]: dict(zip(columns, row[1:])) for row in con.execute(
            f"SELECT _source_line, {', '.join(columns)} FROM raw.{fmt.dataset} WHERE _source_file = ?",
            [f.name]).fetchall()}
        bad = dict(con.execute("SELECT source_line, reason FROM raw.quarantine_rows WHERE source_file = ? "
                               "AND field IS NULL", [f.name]).fetchall())
        fixed = {line: (field, reason) for line, field, reason in con.execute(
            "SELECT source_line, field, reason FROM raw.quarantine_rows WHERE source_file = ? AND field IS NOT NULL",
            [f.name]).fetchall()}
        assert set(loaded) == set(f.good), (f.name, f.ops, sorted(set(loaded) ^ set(f.good)))
        assert set(bad) == set(f.bad), (f.name, f.ops, sorted(set(bad) ^ set(f.bad)), bad)
        # a broken value outside the key and required columns: the row loads without it
        assert {line: field for line, (field, _) in fixed.items()} == f.fixed, (f.name, f.ops, fixed)
        assert all(reason.startswith(field) for field, reason in fixed.values()), fixed
        checked_fixed += len(fixed)
        for line, expected in f.good.items():
            differ = {c: (loaded[line][c], v) for c, v in expected.items() if not _same(loaded[line][c], v)}
            assert not differ, (f.name, line, f.ops, differ)
            checked_good += 1
        for line, text in f.bad.items():
            assert bad[line], (f.name, line)
            assert text is None or text in bad[line], (f.name, line, text, bad[line])
            checked_bad += 1
    assert checked_good > 600 and checked_bad > 80 and checked_fixed > 50, (checked_good, checked_bad, checked_fixed)


def test_hostile_text_is_stored_as_text(fuzzed):
    fmt, _, _, con, _ = fuzzed
    stored = {c for (c,) in con.execute(f"SELECT DISTINCT {fmt.hostile_column[1]} FROM raw.{fmt.dataset}").fetchall()}
    assert {"'; DROP TABLE raw.shop_orders; --", "=HYPERLINK(\"http://example.invalid\",\"x\")"} <= stored
    assert con.execute(f"SELECT count(*) FROM raw.{fmt.dataset}").fetchall()[0][0] > 0      # the table survived
