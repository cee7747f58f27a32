"""Ingestion: exactly-once loads, quarantine with reasons, reconciliation, declarative sources."""

import json
import shutil
from datetime import datetime, timezone

import duckdb
import pytest
import yaml

from crm_platform.staging import tables as staging
from crm_platform.ingest.load import ingest_dataset
from crm_platform.ingest.sources import SourceConfigError, parse_sources
from tests.conftest import ingest_all

AS_OF = datetime(2026, 10, 1, tzinfo=timezone.utc)

CONTACTS_YAML = {
    "systems": {
        "crm": {
            "trust_rank": 2,
            "timestamp_formats": ["%Y-%m-%d %H:%M:%S"],
            "datasets": {
                "people": {
                    "entity": "contacts", "path": "crm/people*.csv", "format": "csv",
                    "columns": {"source_record_id": "id", "first_name": "first", "last_name": "last",
                                "email": "email", "created_at": "created"},
                },
                "orders": {
                    "entity": "orders", "path": "crm/orders*.csv", "format": "csv",
                    "columns": {"order_id": "id", "customer_ref": "person", "ordered_at": "at",
                                "total_amount": "total"},
                },
            },
        }
    }
}


@pytest.fixture
def home(tmp_path):
    (tmp_path / "landing" / "crm").mkdir(parents=True)
    return tmp_path


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))


def load(con, cfg, key, home):
    return ingest_dataset(con, cfg.dataset(key), home / "landing", home / "quarantine", as_of=AS_OF)


def test_malformed_rows_are_quarantined_with_reason_and_line(home):
    cfg = parse_sources(CONTACTS_YAML)
    write(home / "landing/crm/orders.csv", "\n".join([
        "id,person,at,total",
        "o1,p1,2026-01-05 10:00:00,10.50",      # line 2 good
        ",p2,2026-01-05 10:00:00,3",            # line 3 missing id
        "o3,p3,yesterday,3",                    # line 4 bad timestamp
        "o4,p4,2026-01-05 10:00:00,-7.00",      # line 5 negative
        "o5,p5,2031-01-01 00:00:00,4",          # line 6 future
        "o6,p6,2026-01-05 10:00:00",            # line 7 too few columns
        "o7,p7,2026-02-01 09:00:00,99.99",      # line 8 good
        "o1,p1,2026-01-05 10:00:00,10.50",      # line 9 duplicate of line 2
        "o9,p9,2026-03-01 09:00:00,1,extra",    # line 10 too many columns
        "o10,p10,2026-03-02 09:00:00,5",        # line 11 good
    ]) + "\n")
    con = duckdb.connect()
    report = load(con, cfg, "crm_orders", home)
    f = report.files[0]
    assert (f.status, f.rows_read, f.rows_loaded, f.rows_quarantined) == ("loaded", 10, 3, 7)
    assert f.reconciles
    good = con.execute("SELECT order_id, _source_line, total_amount FROM raw.crm_orders "
                       "ORDER BY _source_line").fetchall()
    assert [(o, line) for o, line, _ in good] == [("o1", 2), ("o7", 8), ("o10", 11)]
    bad = dict(con.execute("SELECT source_line, reason FROM raw.quarantine_rows").fetchall())
    assert "order_id: missing required value" in bad[3]
    assert "ordered_at: cannot parse 'yesterday' as timestamp" in bad[4]
    assert "total_amount: negative amount" in bad[5]
    assert "in the future" in bad[6]
    assert "malformed line: MISSING COLUMNS" in bad[7]
    assert "duplicate key (order_id) in file: first seen at line 2" in bad[9]
    assert "malformed line: TOO MANY COLUMNS" in bad[10]


def test_a_file_without_malformed_lines_keeps_every_rows_line_and_record(home):
    """Every line parses as CSV: rows are numbered by their place in the file, and a row a rule
    refuses keeps its line and its delivered text."""
    cfg = parse_sources(CONTACTS_YAML)
    write(home / "landing/crm/orders.csv", "\n".join([
        "id,person,at,total",
        "o1,p1,2026-01-05 10:00:00,10.50",      # line 2 good
        "o2,p2,2026-01-05 10:00:00,-3",         # line 3 negative
        "o3,p3,2026-01-06 10:00:00,3",          # line 4 good
        "o1,p1,2026-01-07 10:00:00,4",          # line 5 duplicate of line 2
        "o5,p5,2026-01-08 10:00:00,5",          # line 6 good
    ]) + "\n")
    con = duckdb.connect()
    f = load(con, cfg, "crm_orders", home).files[0]
    assert (f.rows_read, f.rows_loaded, f.rows_quarantined) == (5, 3, 2) and f.reconciles
    assert con.execute("SELECT order_id, _source_line FROM raw.crm_orders ORDER BY _source_line").fetchall() == \
        [("o1", 2), ("o3", 4), ("o5", 6)]
    bad = con.execute("SELECT source_line, reason, record FROM raw.quarantine_rows ORDER BY source_line").fetchall()
    assert [line for line, _, _ in bad] == [3, 5]
    assert "negative amount" in bad[0][1] and json.loads(bad[0][2])["total"] == "-3"
    assert "first seen at line 2" in bad[1][1] and json.loads(bad[1][2])["at"] == "2026-01-07 10:00:00"
    # nothing of the load is left behind in the connection
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name LIKE '\\_%' ESCAPE '\\'"
                       ).fetchall()[0][0] + con.execute("SELECT count(*) FROM duckdb_views() WHERE temporary "
                                                        "AND view_name = '_in'").fetchall()[0][0] == 0


def test_a_malformed_email_is_quarantined_as_a_field_and_a_contact_known_by_its_id_alone_loads(home):
    cfg = parse_sources(CONTACTS_YAML)
    write(home / "landing/crm/people.csv", "id,first,last,email,created\n"
          "1,Anna,Meyer,anna@example.de,2025-01-01 10:00:00\n"
          "2,Bert,Kurz,bert(at)example.de,2025-01-01 10:00:00\n"
          "3,,,,2025-01-01 10:00:00\n")
    con = duckdb.connect()
    f = load(con, cfg, "crm_people", home).files[0]
    # every record loads: Bert without his unusable e-mail address, record 3 by its id alone
    assert (f.rows_read, f.rows_loaded, f.rows_quarantined, f.fields_quarantined) == (3, 3, 0, 1)
    assert con.execute("SELECT source_record_id, last_name FROM raw.crm_people WHERE email IS NULL "
                       "ORDER BY 1").fetchall() == [("2", "Kurz"), ("3", None)]
    line, field, reason, record = con.execute("SELECT source_line, field, reason, record FROM raw.quarantine_rows").fetchall()[0]
    assert (line, field) == (3, "email")
    # the reason says what is wrong without repeating personal data; the record keeps it for repair
    assert "malformed email (value hidden: personal data)" in reason and "bert" not in reason
    assert "bert(at)example.de" in record


@pytest.mark.parametrize("content, encoding, expected", [
    ("id,person,at,total\no1,Müller,2026-01-05 10:00:00,3\n", "latin-1", "not valid UTF-8"),
    ("id;person;at;total\no1;p;2026-01-05 10:00:00;3\n", "utf-8", "header splits on ';'"),
    ("id,person,total\no1,p,3\n", "utf-8", "missing required columns: at"),
    ("id,person,at,total\no1,p,2026-01-05 10:00:00,3\no2,p,2026-01-0", "utf-8", "truncated"),
    ("", "utf-8", "empty file"),
])
def test_unreadable_file_moves_to_quarantine_with_reason(home, content, encoding, expected):
    cfg = parse_sources(CONTACTS_YAML)
    write(home / "landing/crm/orders.csv", content, encoding)
    con = duckdb.connect()
    f = load(con, cfg, "crm_orders", home).files[0]
    assert f.status == "quarantined" and expected in f.reason
    assert con.execute("SELECT count(*) FROM raw.crm_orders").fetchall()[0][0] == 0
    copied = list((home / "quarantine" / "crm_orders").glob("*_orders.csv"))
    assert len(copied) == 1
    record = json.loads(copied[0].with_name(copied[0].name + ".reason.json").read_text())
    assert expected in record["reason"] and record["source_file"] == "crm/orders.csv"
    # The same bytes are not tried again; a corrected export is loaded as the next version.
    assert load(con, cfg, "crm_orders", home).files[0].status == "skipped"
    write(home / "landing/crm/orders.csv", "id,person,at,total\no1,p,2026-01-05 10:00:00,3\n")
    fixed = load(con, cfg, "crm_orders", home).files[0]
    assert (fixed.status, fixed.version, fixed.rows_loaded) == ("loaded", 2, 1)


def test_reingest_is_idempotent_and_changed_file_is_new_version(home):
    cfg = parse_sources(CONTACTS_YAML)
    write(home / "landing/crm/orders.csv", "id,person,at,total\no1,p1,2026-01-05 10:00:00,3\n"
          "o2,p2,2026-01-06 10:00:00,4\n")
    con = duckdb.connect()
    assert load(con, cfg, "crm_orders", home).rows_loaded == 2
    again = load(con, cfg, "crm_orders", home)
    assert again.rows_loaded == 0 and again.files[0].status == "skipped"
    assert con.execute("SELECT count(*) FROM raw.crm_orders").fetchall()[0][0] == 2
    # Same name, new content: loaded as version 2; staging uses only the newest version.
    write(home / "landing/crm/orders.csv", "id,person,at,total\no1,p1,2026-01-05 10:00:00,30\n")
    changed = load(con, cfg, "crm_orders", home)
    assert [f.version for f in changed.changed_files] == [2]
    report = staging.build(con, cfg, "orders")
    assert report.rows == 1
    assert con.execute("SELECT total_amount FROM staging.orders").fetchall()[0][0] == 30


def test_foreign_csv_mapped_in_yaml_loads_without_code(home):
    """A legacy CRM export: German headers, semicolons, Windows-1252, German dates and decimals."""
    doc = {
        "systems": {
            "legacy_crm": {
                "trust_rank": 3,
                "options": {"delimiter": ";", "encoding": "cp1252"},
                "timestamp_formats": ["%d.%m.%Y %H:%M"],
                "date_formats": ["%d.%m.%Y"],
                "decimal_comma": True,
                "datasets": {
                    "kunden": {"entity": "contacts", "path": "legacy/kunden_*.csv",
                               "constants": {"record_kind": "customer"},
                               "columns": {"source_record_id": "Kundennummer", "first_name": "Vorname",
                                           "last_name": "Nachname", "email": "E-Mail-Adresse",
                                           "phone": "Telefon", "street": "Straße", "postcode": "PLZ",
                                           "city": "Ort", "birth_date": "Geburtstag",
                                           "created_at": "Angelegt"}},
                    "umsatz": {"entity": "orders", "path": "legacy/umsatz_*.csv",
                               "columns": {"order_id": "Belegnr", "customer_ref": "Kundennummer",
                                           "ordered_at": "Datum", "total_amount": "Betrag"}},
                },
            }
        }
    }
    cfg = parse_sources(doc)
    (home / "landing/legacy").mkdir(parents=True)
    write(home / "landing/legacy/kunden_2026.csv",
          "Kundennummer;Vorname;Nachname;E-Mail-Adresse;Telefon;Straße;PLZ;Ort;Geburtstag;Angelegt\r\n"
          "4711;Jürgen;Groß;J.Gross@Example.DE;0170 1234567;Hauptstr. 5;1067;Dresden;03.04.1970;15.01.2024 08:30\r\n",
          "cp1252")
    write(home / "landing/legacy/umsatz_2026.csv",
          "Belegnr;Kundennummer;Datum;Betrag\r\nB-1;4711;01.02.2024 12:00;1.234,56 €\r\n", "cp1252")
    con = duckdb.connect()
    reports = {ds.key: ingest_dataset(con, ds, home / "landing", home / "quarantine", AS_OF)
               for ds in cfg.datasets}
    assert all(r.files[0].rows_loaded == 1 for r in reports.values())
    staging.build(con, cfg, "contacts")
    staging.build(con, cfg, "orders")
    row = con.execute("SELECT contact_key, first_name, last_name, last_name_std, email_std, phone_e164, "
                      "street_std, postcode, birth_date::VARCHAR, created_at::VARCHAR "
                      "FROM staging.contacts").fetchall()[0]
    assert row == ("legacy_crm:4711", "Jürgen", "Groß", "gross", "j.gross@example.de", "+491701234567",
                   "hauptstr 5", "01067", "1970-04-03", "2024-01-15 07:30:00")  # 08:30 CET in UTC
    order = con.execute("SELECT contact_key, total_amount::VARCHAR FROM staging.orders").fetchall()[0]
    assert order == ("legacy_crm:4711", "1234.56")


def test_jsonl_broken_line_is_quarantined_and_nested_fields_map(home):
    doc = {"systems": {"desk": {"datasets": {"tickets": {
        "entity": "support_tickets", "path": "desk/t.jsonl", "format": "jsonl",
        "columns": {"ticket_id": "id", "requester_ref": "requester.id", "opened_at": "created_at",
                    "satisfaction_score": "rating.score"}}}}}}
    cfg = parse_sources(doc)
    (home / "landing/desk").mkdir(parents=True)
    write(home / "landing/desk/t.jsonl",
          '{"id": "t1", "requester": {"id": "r1"}, "created_at": "2026-01-01T10:00:00+00:00", "rating": {"score": 4}}\n'
          '{"id": "t2", "requester": {"id": "r2"}, "created_at": \n'
          '\n'
          '{"id": "t3", "requester": {"id": "r3"}, "created_at": "2026-01-02T10:00:00+01:00"}\n')
    con = duckdb.connect()
    f = ingest_dataset(con, cfg.dataset("desk_tickets"), home / "landing", home / "quarantine", AS_OF).files[0]
    assert (f.rows_read, f.rows_loaded, f.rows_quarantined) == (3, 2, 1)
    assert con.execute("SELECT ticket_id, requester_ref, satisfaction_score, _source_line, opened_at::VARCHAR "
                       "FROM raw.desk_tickets ORDER BY 1").fetchall() == [
        ("t1", "r1", 4, 1, "2026-01-01 10:00:00"), ("t3", "r3", None, 4, "2026-01-02 09:00:00")]
    assert con.execute("SELECT source_line FROM raw.quarantine_rows").fetchall() == [(2,)]


def test_invalid_source_declarations_say_where(home):
    bad = yaml.safe_load(yaml.safe_dump(CONTACTS_YAML))
    bad["systems"]["crm"]["datasets"]["orders"]["columns"].pop("order_id")
    with pytest.raises(SourceConfigError, match="crm.datasets.orders: required column 'order_id'"):
        parse_sources(bad)
    bad = yaml.safe_load(yaml.safe_dump(CONTACTS_YAML))
    bad["systems"]["crm"]["datasets"]["people"]["columns"]["shoe_size"] = "x"
    with pytest.raises(SourceConfigError, match="'shoe_size' is not a column of entity contacts"):
        parse_sources(bad)


def test_demo_world_reconciles_and_reloading_adds_nothing(world, demo_sources, tmp_path):
    home = tmp_path
    shutil.copytree(world / "landing", home / "landing")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    first = ingest_all(con, demo_sources, home)
    assert all(f.reconciles for r in first.values() for f in r.files)
    assert sum(r.rows_quarantined for r in first.values()) > 0
    counts = {k: con.execute(f"SELECT count(*) FROM raw.{k}").fetchall()[0][0] for k in first}
    second = ingest_all(con, demo_sources, home)
    assert sum(r.rows_loaded for r in second.values()) == 0
    assert {k: con.execute(f"SELECT count(*) FROM raw.{k}").fetchall()[0][0] for k in first} == counts
    totals = con.execute("SELECT sum(rows_read), sum(rows_loaded) + sum(rows_quarantined) FROM "
                         "raw.ingest_manifest").fetchall()[0]
    assert totals[0] == totals[1]
    quarantined, fields = con.execute("SELECT count(*) FILTER (WHERE field IS NULL), count(field) "
                                      "FROM raw.quarantine_rows").fetchall()[0]
    assert quarantined == sum(r.rows_quarantined for r in first.values())
    # the generator's injected bad values (a birthday of 31.02., a malformed e-mail) leave their rows loaded
    assert fields == sum(f.fields_quarantined for r in first.values() for f in r.files) > 0


def test_record_delivered_again_in_a_later_file_supersedes_the_earlier_row(home):
    cfg = parse_sources(CONTACTS_YAML)
    write(home / "landing/crm/orders_1.csv", "id,person,at,total\no1,p1,2026-01-05 10:00:00,3\n"
          "o2,p2,2026-01-06 10:00:00,4\n")
    con = duckdb.connect()
    load(con, cfg, "crm_orders", home)
    write(home / "landing/crm/orders_2.csv", "id,person,at,total\no1,p1,2026-01-05 10:00:00,5\n")
    load(con, cfg, "crm_orders", home)
    report = staging.build(con, cfg, "orders")
    assert (report.rows, report.superseded) == (2, 1)
    assert con.execute("SELECT total_amount FROM staging.orders WHERE order_id = 'o1'").fetchall()[0][0] == 5


@pytest.mark.parametrize("first", ["offset", "local"])
def test_timestamps_of_every_kind_in_one_file_parse_whichever_comes_first(home, first):
    """Local times (read in the dataset's zone), offsets and ISO 8601 'Z' may be mixed in a file;
    the kind of the first value only decides which formats are tried first."""
    cfg = parse_sources(CONTACTS_YAML)
    values = {"o1": "2026-03-01T10:00:00+02:00", "o2": "2026-03-01 10:00:00", "o3": "2026-03-01T10:00:00Z",
              "o4": "2026-03-01T10:00:00.250Z", "o5": "2026-03-01", "o6": "someday"}
    order = list(values) if first == "offset" else ["o2", "o1", "o3", "o4", "o5", "o6"]
    write(home / "landing/crm/orders.csv", "id,person,at,total\n" + "".join(
        f"{k},p1,{values[k]},1.00\n" for k in order))
    con = duckdb.connect()
    load(con, cfg, "crm_orders", home)
    assert dict(con.execute("SELECT order_id, ordered_at::VARCHAR FROM raw.crm_orders").fetchall()) == {
        "o1": "2026-03-01 08:00:00", "o2": "2026-03-01 09:00:00", "o3": "2026-03-01 10:00:00",
        "o4": "2026-03-01 10:00:00.25", "o5": "2026-02-28 23:00:00"}
    assert "ordered_at: cannot parse 'someday'" in con.execute("SELECT reason FROM raw.quarantine_rows").fetchall()[0][0]


def test_utf8_is_checked_in_blocks_yet_a_bad_byte_is_named_by_its_line(tmp_path):
    """The UTF-8 check reads blocks of 4 MiB: a 'ü' split by a block boundary is valid, and a bad
    byte far into the file is still reported with its line."""
    from crm_platform.ingest.readers import UnreadableFile, _as_utf8
    ds = parse_sources(CONTACTS_YAML).dataset("crm_orders")
    block = 1 << 22
    head = b"id,person,at,total\n"
    line = "o1,Müller,2026-01-05 10:00:00,3\n".encode()
    body = head + line * (block // len(line) + 10)
    # shift the text so that the two bytes of one 'ü' sit on either side of the block boundary
    umlaut = body.index("ü".encode(), block - len(line))
    body = body[:1] + b"x" * (block - umlaut - 1) + body[1:]
    assert body[block - 1:block + 1] == "ü".encode()
    good = tmp_path / "good.csv"
    good.write_bytes(body)
    assert _as_utf8(good, ds) == good
    bad = tmp_path / "bad.csv"
    lines = body.split(b"\n")
    lines[100_000] = lines[100_000].replace("ü".encode(), b"\xfc")
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(UnreadableFile, match="not valid UTF-8.*line 100001"):
        _as_utf8(bad, ds)


def test_parquet_timestamps_are_read_as_delivered_in_the_systems_time_zone(home):
    """A Parquet timestamp column is taken as the value it holds (sub-second parts too), local to
    the system's declared time zone; one in the future is still quarantined."""
    cfg = parse_sources({"systems": {"web": {"trust_rank": 5, "timezone": "Europe/Berlin", "datasets": {"events": {
        "entity": "web_events", "path": "web/events*.parquet", "format": "parquet",
        "columns": {"event_id": "id", "visitor_id": "visitor", "occurred_at": "ts", "event_type": "kind"}}}}}})
    (home / "landing/web").mkdir()
    duckdb.connect().execute(f"""COPY (SELECT * FROM (VALUES
        ('e1', 'v1', TIMESTAMP '2026-01-05 10:00:00.25', 'login'),
        ('e2', 'v1', TIMESTAMP '2026-07-05 10:00:00', 'page_view'),
        ('e3', 'v1', TIMESTAMP '2027-01-01 00:00:00', 'login')) t(id, visitor, ts, kind))
        TO '{home}/landing/web/events.parquet' (FORMAT parquet)""")
    con = duckdb.connect()
    f = load(con, cfg, "web_events", home).files[0]
    assert (f.rows_loaded, f.rows_quarantined) == (2, 1)
    assert con.execute("SELECT occurred_at::VARCHAR FROM raw.web_events ORDER BY event_id").fetchall() == [
        ("2026-01-05 09:00:00.25",), ("2026-07-05 08:00:00",)]           # UTC: winter +1 h, summer +2 h
    assert "in the future" in con.execute("SELECT reason FROM raw.quarantine_rows").fetchall()[0][0]
