"""Any company's data: the chain runs on exports the generator did not make, tried as a new user
would - a sources mapping, the README's command, nothing else."""

import csv
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from crm_platform.staging import tables as staging
from crm_platform.core import warehouse
from crm_platform.identity import derive, resolve

from tests.conftest import PEOPLE_HEADER, cli, load_people

ORDER_LOG_SOURCES = """
defaults:
  timezone: UTC
systems:
  cdshop:
    trust_rank: 1
    timestamp_formats: ["%Y%m%d"]
    datasets:
      orders:
        entity: orders
        path: cdshop/orders*.csv
        constants: {status: completed, currency: USD}
        columns: {order_id: order_no, customer_ref: customer_id, ordered_at: date, total_amount: dollars}
"""


def write_order_log(path: Path, customers: int, start: date, months: int, seed: int = 1) -> int:
    """A plain order log as a CD shop keeps one (customer number, day, amount): each customer
    buys at a rate of their own until they stop, like the CDNOW log. Returns the lines written."""
    rng = np.random.default_rng(seed)
    days = months * 30
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["order_no", "customer_id", "date", "cds", "dollars"])
        for c in range(customers):
            first = int(rng.integers(0, days // 2))
            rate, life = rng.gamma(1.5, 1 / 40), rng.exponential(days / 2)
            t = first
            while t < min(days, first + life):
                n += 1
                w.writerow([f"{n:07d}", f"{c:05d}", (start + timedelta(days=t)).strftime("%Y%m%d"),
                            int(rng.integers(1, 4)), f"{rng.gamma(2, 15):.2f}"])
                t += max(1, int(rng.exponential(1 / rate)))
    return n


@pytest.mark.slow
def test_a_plain_order_log_alone_runs_end_to_end(tmp_path):
    home = tmp_path / "home"
    lines = write_order_log(home / "landing" / "cdshop" / "orders.csv", 600, date(1997, 1, 1), 9)
    sources = tmp_path / "sources.yaml"
    sources.write_text(ORDER_LOG_SOURCES)
    out = cli(home, "materialize", "--days", "1", sources=sources)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        # every customer number is a customer, from the orders alone (no customer file)
        assert con.execute("SELECT count(*) FROM staging.orders").fetchall()[0][0] == lines
        buyers = con.execute("SELECT count(DISTINCT customer_ref) FROM staging.orders").fetchall()[0][0]
        assert con.execute("SELECT count(DISTINCT customer_id) FROM identity.crosswalk").fetchall()[0][0] == buyers
        assert con.execute("SELECT count(*) FROM core.customers").fetchall()[0][0] == buyers
        assert con.execute("SELECT count(DISTINCT customer_id) FROM core.customer_events").fetchall()[0][0] == buyers
        # the daily partitions start where the data does, and the last days were computed
        first = date.fromisoformat((home / "state" / "first_event_day").read_text().strip())
        assert first == con.execute("SELECT min(ordered_at)::DATE FROM staging.orders").fetchall()[0][0]
        last = con.execute("SELECT max(snapshot_date) FROM features.customer_features").fetchall()[0][0]
        assert last == con.execute("SELECT max(ordered_at)::DATE FROM staging.orders").fetchall()[0][0]
        assert con.execute("SELECT count(*) FROM marts.channel_attribution").fetchall()[0][0] > 0
        assert con.execute("SELECT count(*) FROM marts.customer_segments WHERE snapshot_date = ?",
                           [last]).fetchall()[0][0] == buyers
        # nine months hold no 12-month label window: lifetime value comes from the count models
        assert con.execute("SELECT count(*) FROM ml.clv_scores WHERE snapshot_date = ?", [last]).fetchall()[0][0] == buyers
    finally:
        con.close()
    # what is absent is said, not failed
    assert "FAILED" not in out.stdout and "0 failed check(s)" in out.stdout.splitlines()[0]
    assert "no order_items in the data: leaves out categories and returns of order lines" in out.stdout
    assert f"{buyers:,} contact records -> {buyers:,} customers" in out.stdout
    assert "CLV from the count models, which need none" in out.stdout


def test_staging_checks_of_an_entity_nobody_declares_pass_saying_so(tmp_path):
    import dagster as dg

    from assets.lib.checks import staging_checks
    from crm_platform.ingest.sources import parse_sources
    import yaml

    cfg = parse_sources(yaml.safe_load(ORDER_LOG_SOURCES))
    assert cfg.declares("orders") and cfg.declares("contacts") and not cfg.declares("order_items")
    checks = {c.check_specs_by_output_name[next(iter(c.check_specs_by_output_name))].asset_key.path[-1]: c
              for c in staging_checks(cfg)}
    db = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    for name in ("order_items", "orders"):       # the order log's file has not arrived yet
        staging.build(con, cfg, name)
    con.close()
    from dagster_duckdb import DuckDBResource

    resources = {"warehouse": DuckDBResource(database=str(db))}
    instance = dg.DagsterInstance.ephemeral()
    results = {}
    for name in ("order_items", "orders"):
        spec = next(iter(checks[name].check_specs))

        @dg.asset(key=spec.asset_key)
        def table():
            """The staging table as written above."""

        results[name] = dg.materialize([table, checks[name]], resources=resources, instance=instance,
                                       raise_on_error=False).get_asset_check_evaluations()
    absent, = results["order_items"]
    assert absent.passed and "absent: no source declares order_items" in absent.description
    declared, = results["orders"]
    assert not declared.passed and "staging.orders is empty" in declared.description


def test_identity_with_nothing_to_learn_still_resolves_and_says_why(tmp_path):
    """One system without duplicates: no pair to learn from, so no model is learnt - every
    record still gets a customer id, and the report says what could not be learnt."""
    firsts = ["Anna", "Bert", "Carla", "Dieter", "Emil", "Frieda", "Gustav", "Hanna", "Ida", "Jonas"]
    lasts = ["Adler", "Brandt", "Conrad", "Dorn", "Eckert", "Fuchs", "Graf", "Hahn", "Isler", "Jung"]
    rows = [PEOPLE_HEADER]
    for i in range(40):
        rows.append(f"K{i:04d},{firsts[i % 10]},{lasts[(i * 3 + i // 10) % 10]}{i},p{i}@example.org,"
                    f"+49 30 {1000000 + i * 7919},Weg {i},{10115 + i * 37:05d},{lasts[i % 10]}{'abcd'[i // 10]}stadt,,"
                    f"19{50 + i}-0{1 + i % 9}-1{i % 9}")
    con, _ = load_people(tmp_path, {"people.csv": ("\n".join(rows) + "\n").encode()})
    spec = derive.spec_for(con)
    rep = resolve.match(con, spec)
    assert rep.candidate_pairs == 0 and rep.notes[0].startswith("no candidate pairs")
    assert any("not enough data to learn comparisons" in n for n in rep.notes)
    resolve.resolve(con, spec)
    assert con.execute("SELECT count(*), count(DISTINCT customer_id) FROM identity.crosswalk").fetchall()[0] == (40, 40)


def test_a_reader_opens_while_this_process_holds_the_warehouse_for_writing(tmp_path):
    """A failed step's error keeps its read-write connection (opened by the Dagster resource) alive
    in the process; the closing summary and later checks must still be able to read."""
    from resources.warehouse import warehouse_resource

    db = tmp_path / "warehouse.duckdb"
    resource = warehouse_resource().model_copy(update={"database": str(db)})
    with resource.get_connection() as held:
        held.execute("CREATE TABLE t AS SELECT 1 AS x")
        con = warehouse.reader(db)
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
        con.close()


def test_odd_but_valid_values_load_and_pass_the_contacts_check(tmp_path):
    """A surname '-Schmidt', postcodes and phones of other countries, a birth date of 1850: every
    record loads and gets its customer; what is unusable is set aside field by field, and the
    staging check passes on what standardization made."""
    from crm_platform.contracts.schemas import Contacts
    from crm_platform.contracts.validation import validate_table

    people = ("\ufeff\"id\"," + PEOPLE_HEADER[3:] + "\n"          # a byte-order mark before a quoted name
              "1,Anna,-Schmidt,,030 1234567,,10115,,,1980-02-01\n"
              "2,John,Smith,,020 7946 0958,,sw1a1aa,,United Kingdom,1850-06-01\n"
              "3,Jane,Doe,,(212) 555-0100,,02134,,USA,31.02.1985\n"
              "4,Piet,de Vries,,06 12345678,,1234ab,,NL,\n"
              "5,Max,Muster,,12,,00,,DE,\n")
    con, reports = load_people(tmp_path, {"people.csv": people.encode()})
    file = reports["crm_people"].files[0]
    assert (file.status, file.rows_loaded, file.rows_quarantined) == ("loaded", 5, 0), file
    assert dict(con.execute("SELECT source_record_id, postcode FROM staging.contacts ORDER BY 1").fetchall()) == \
        {"1": "10115", "2": "SW1A 1AA", "3": "02134", "4": "1234 AB", "5": None}
    assert con.execute("SELECT last_name, last_name_std FROM staging.contacts WHERE source_record_id = '1'"
                       ).fetchall() == [("-Schmidt", "schmidt")]
    phones = dict(con.execute("SELECT source_record_id, phone_e164 FROM staging.contacts").fetchall())
    assert phones["2"] == "+442079460958" and phones["3"] == "+12125550100" and phones["4"] == "+31612345678"
    fields = {(line, field) for line, field in con.execute(
        "SELECT source_line, field FROM raw.quarantine_rows WHERE field IS NOT NULL").fetchall()}
    # 1850 and 31 February are no birth dates; '12' no phone, '00' no German postcode
    assert fields == {(3, "birth_date"), (4, "birth_date"), (6, "phone"), (6, "postcode")}
    result = validate_table(con, "staging.contacts", Contacts)
    assert result.passed, result.summary()


def test_json_values_that_are_not_single_values_are_quarantined_field_by_field(tmp_path):
    requesters = (b'{"id": "r1", "name": {"first": "Ann", "last": "Lee"}}\n'
                  b'{"id": "r2", "name": "Bo\\u0000b Ray"}\n')
    tickets = (b'{"id": "t1", "requester_id": "r1", "created_at": "2026-01-05T10:00:00Z", '
               b'"satisfaction_rating": [{"score": 5}]}\n'
               b'{"id": "t2", "requester_id": "r2", "created_at": "2026-01-05T10:00:00Z", '
               b'"satisfaction_rating": {"score": 4}}\n')
    con, reports = load_people(tmp_path, {"requesters.jsonl": requesters, "tickets.jsonl": tickets})
    assert con.execute("SELECT source_record_id, full_name FROM raw.crm_requesters ORDER BY 1").fetchall() == \
        [("r1", None), ("r2", "Bob Ray")]
    assert reports["crm_requesters"].files[0].notes == "1 NUL byte(s) removed"
    assert con.execute("SELECT ticket_id, satisfaction_score FROM raw.crm_tickets ORDER BY 1").fetchall() == \
        [("t1", None), ("t2", 4)]
    reasons = dict(con.execute("SELECT field, reason FROM raw.quarantine_rows WHERE field IS NOT NULL").fetchall())
    assert reasons["full_name"] == "full_name: name holds a JSON object, not a single value"
    assert reasons["satisfaction_score"] == ("satisfaction_score: satisfaction_rating.score cannot be read: "
                                             "satisfaction_rating holds a list, not an object")


def test_a_csv_header_naming_a_mapped_column_twice_is_a_file_error(tmp_path):
    con, reports = load_people(tmp_path, {"people.csv": b"id,first,last,last,email,phone,street,zip,city,country,born\n1,A,B,C,,,,,,,\n"})
    file = reports["crm_people"].files[0]
    assert file.status == "quarantined" and "'last' (columns 3, 4)" in file.reason


DERIVED_SOURCES = """
systems:
  legacy:
    options: {delimiter: ";"}
    datasets:
      kunden:
        entity: contacts
        path: legacy/kunden*.csv
        columns:
          source_record_id: Nr
          first_name: {column: Name, part: first}
          last_name: {column: Name, part: last}
          street: "{Strasse} {Hausnr}"
          record_kind: {column: Typ, map: {K: customer, A: subscriber}}
"""


def test_a_mapping_derives_columns_from_templates_value_maps_and_name_parts(tmp_path):
    import yaml

    from crm_platform.ingest.load import ingest_dataset
    from crm_platform.ingest.sources import parse_sources

    (tmp_path / "landing" / "legacy").mkdir(parents=True)
    (tmp_path / "landing" / "legacy" / "kunden.csv").write_text(
        "Nr;Name;Strasse;Hausnr;Typ\n1;Müller, Hans;Hauptstr.;5a;K\n2;Eva Maria Schulz;;;A\n3;Otto;Weg;;X\n")
    cfg = parse_sources(yaml.safe_load(DERIVED_SOURCES))
    con = duckdb.connect()
    file = ingest_dataset(con, cfg.datasets[0], tmp_path / "landing", tmp_path / "quarantine").files[0]
    assert (file.rows_loaded, file.fields_quarantined) == (3, 1)         # 'X' is no record kind
    assert con.execute("SELECT source_record_id, first_name, last_name, street, record_kind FROM raw.legacy_kunden "
                       "ORDER BY 1").fetchall() == [("1", "Hans", "Müller", "Hauptstr. 5a", "customer"),
                                                    ("2", "Eva Maria", "Schulz", None, "subscriber"),
                                                    ("3", None, "Otto", "Weg", None)]


@pytest.mark.parametrize("street, message", [
    ('"{Strasse} {"', "unbalanced braces"), ('"{} {Hausnr}"', "an empty {}"),
    ("{column: Name, part: middle}", "part must be one of first, last"),
    ("{column: Name, map: {}}", "map must be a mapping"), ("{map: {a: b}}", "expected a column name")])
def test_a_mistake_in_a_derivation_names_the_dataset_and_column(street, message):
    import yaml

    from crm_platform.ingest.sources import SourceConfigError, parse_sources

    doc = yaml.safe_load(DERIVED_SOURCES)
    doc["systems"]["legacy"]["datasets"]["kunden"]["columns"]["street"] = yaml.safe_load(street)
    with pytest.raises(SourceConfigError, match="systems.legacy.datasets.kunden: column 'street'") as e:
        parse_sources(doc)
    assert message in str(e.value)


def test_the_cli_runs_a_selection_and_says_plainly_what_is_wrong(tmp_path):
    home = tmp_path / "home"
    write_order_log(home / "landing" / "cdshop" / "orders.csv", 50, date(1997, 1, 1), 3)
    sources = tmp_path / "sources.yaml"
    sources.write_text(ORDER_LOG_SOURCES)
    out = cli(home, "materialize", "--select", "+group:staging", sources=sources)     # staging and what it reads
    assert out.returncode == 0 and out.stdout.startswith("run of the selection succeeded"), out.stdout + out.stderr
    assert "staging.orders" in out.stdout
    # progress on stderr while it works: each step as it starts and ends, with elapsed times
    assert "> materialize: " in out.stderr and "staging/orders: done in " in out.stderr, out.stderr
    assert "(elapsed " in out.stderr and "< materialize: finished in " in out.stderr
    bad = cli(home, "materialize", "--select", "key:no/such_asset", sources=sources)
    assert bad.returncode == 2 and "names no asset of this code location" in bad.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(ORDER_LOG_SOURCES.replace("total_amount: dollars", "total_amount: dollars, price: p"))
    out = cli(home, "materialize", sources=broken)
    assert out.returncode == 2 and "'price' is not a column of entity orders" in out.stderr
    assert "Traceback" not in out.stderr
    # a declared export that has not arrived: its blocking check fails, and the terminal says which and why
    (home / "landing" / "cdshop" / "orders.csv").unlink()
    empty = tmp_path / "empty_home"
    out = cli(empty, "materialize", "--select", "+group:staging", sources=sources)
    assert out.returncode == 1
    assert "check staging/orders:pandera_Orders failed: staging.orders is empty" in out.stdout
    assert "check staging/orders: pandera_Orders: FAILED in " in out.stderr
    assert "< materialize: FAILED in " in out.stderr and "check staging/orders: pandera_Orders\n" in out.stderr


def test_progress_on_a_terminal_is_a_bar_with_the_running_step_and_a_line_per_step():
    import io
    from types import SimpleNamespace

    from crm_platform.cli.progress import Progress, clock

    def event(kind, key=None):
        return SimpleNamespace(dagster_event=SimpleNamespace(event_type_value=kind, step_key=key))

    out = io.StringIO()
    p = Progress("refresh_core", 2, stream=out, interactive=True)
    p.on_event(event("STEP_START", "staging__contacts"))
    assert "staging/contacts" in out.getvalue()           # the bar names the running step
    p.on_event(event("STEP_SUCCESS", "staging__contacts"))
    p.on_event(event("STEP_START", "identity__crosswalk"))
    p.on_event(event("STEP_FAILURE", "identity__crosswalk"))
    p.finish(False)
    text = out.getvalue()
    assert "[  1/2] staging/contacts: done in" in text and "[  2/2] identity/crosswalk: FAILED in" in text
    assert "< refresh_core: FAILED in" in text and "failed: identity/crosswalk" in text
    assert (clock(4.24), clock(185), clock(3725)) == ("4.2 s", "3 min 05 s", "1 h 02 min")


def test_a_failed_checks_first_failure_cases_are_printed():
    import dagster as dg

    from crm_platform.cli.summary import _failure_cases

    table = "| column | check | failing_value |\n|---|---|---|\n" + "".join(
        f"| postcode | postcode_fits_country | {i} |\n" for i in range(8))
    ev = dg.AssetCheckEvaluation(asset_key=dg.AssetKey(["staging", "contacts"]), check_name="pandera_Contacts",
                                 passed=False, metadata={"failure_cases": dg.MetadataValue.md(table)})
    lines = _failure_cases(ev)
    assert lines[0] == "| column | check | failing_value |"
    assert lines[1:6] == [f"| postcode | postcode_fits_country | {i} |" for i in range(5)] and lines[6] == "... (3 more)"


def test_a_whitespace_aligned_log_without_header_or_order_number_loads_line_by_line(tmp_path):
    """The CDNOW sample's shape: columns aligned by blanks, CRLF, no header line, no order
    number - the mapping declares the header and numbers each purchase by its file and line."""
    import yaml

    from crm_platform.ingest.load import ingest_dataset
    from crm_platform.ingest.sources import parse_sources

    (tmp_path / "landing" / "cd").mkdir(parents=True)
    (tmp_path / "landing" / "cd" / "log.txt").write_bytes(
        b" 00004 0001 19970101  2   29.33\r\n 00004 0001 19970101  1   10.00\r\n"
        b" 00018 0002 1997010x  1   12.00\r\n 00021 0003 19970102  3   45.90\r\n")
    cfg = parse_sources(yaml.safe_load("""
systems:
  cd:
    options: {delimiter: whitespace}
    timestamp_formats: ["%Y%m%d"]
    datasets:
      orders:
        entity: orders
        path: cd/log*.txt
        header: [master_id, customer_id, date, cds, dollars]
        columns: {order_id: "{_file}:{_line}", customer_ref: customer_id, ordered_at: date, total_amount: dollars}
"""))
    con = duckdb.connect()
    file = ingest_dataset(con, cfg.datasets[0], tmp_path / "landing", tmp_path / "quarantine").files[0]
    assert (file.rows_read, file.rows_loaded, file.rows_quarantined) == (4, 3, 1)
    # two purchases of one customer on one day stay two orders; lines count from the file's first
    assert con.execute("SELECT order_id, customer_ref, total_amount::DOUBLE, _source_line FROM raw.cd_orders ORDER BY 4"
                       ).fetchall() == [("cd/log.txt:1", "0001", 29.33, 1), ("cd/log.txt:2", "0001", 10.0, 2),
                                        ("cd/log.txt:4", "0003", 45.9, 4)]
    assert con.execute("SELECT source_line FROM raw.quarantine_rows").fetchall() == [(3,)]


def test_nul_bytes_in_a_csv_are_removed_and_counted(tmp_path):
    people = ("id,first,last,email,phone,street,zip,city,country,born\n"
              "1,Ann\x00a,Lee,,,,,,,\n2,Bo,Ray\x00\x00,,,,,,,\n").encode()
    con, reports = load_people(tmp_path, {"people.csv": people})
    file = reports["crm_people"].files[0]
    assert (file.status, file.rows_loaded, file.notes) == ("loaded", 2, "3 NUL byte(s) removed")
    assert con.execute("SELECT first_name, last_name FROM raw.crm_people ORDER BY 1").fetchall() == \
        [("Anna", "Lee"), ("Bo", "Ray")]
    assert con.execute("SELECT notes FROM raw.ingest_manifest").fetchall() == [("3 NUL byte(s) removed",)]


def test_the_demo_command_generates_then_materializes_everything(tmp_path, monkeypatch):
    """`make demo` is `crm-platform demo`: it generates, then runs what `materialize` without a
    selection runs (the demo's own parser has no --select)."""
    from crm_platform import cli as cli_module

    calls = []
    monkeypatch.setattr(cli_module, "_generate", lambda args: calls.append(("generate", args.customers)))
    monkeypatch.setattr(cli_module, "materialize", lambda history_days=14, **progress: calls.append(("materialize", history_days)) or [])
    monkeypatch.setattr(cli_module, "summary_lines", lambda results: [])
    assert cli_module.main(["demo", "--customers", "50"]) == 0
    assert cli_module.main(["demo", "--customers", "50", "--days", "3"]) == 0
    assert calls == [("generate", 50), ("materialize", 14), ("generate", 50), ("materialize", 3)]
