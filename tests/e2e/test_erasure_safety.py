"""Erasure never harms anyone else: one regression test per defect found by probing the platform
as a careless operator would (issue 31), on a small world run like production, and a seeded
property test erasing random people in random states.

What "anyone else" means here: every table row and every file record (a CSV record, a JSONL or
text line) that holds none of the erased person's identifiers must be exactly as before."""

import csv
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from crm_platform.core import settings, warehouse
from crm_platform.staging import tables as staging
from crm_platform.governance import erasure, scrub
from crm_platform.governance.subject import AmbiguousSubject
from crm_platform.ingest.load import ingest_dataset
from crm_platform.ingest.sources import load_sources

ROOT = Path(__file__).resolve().parents[2]
CFG = load_sources(settings.DEFAULT_SOURCES)
# tables an erasure changes on purpose beyond the person's rows: its own bookkeeping, and the
# manifest (row counts and fingerprints of rewritten files follow)
BOOKKEEPING = {"governance.audit_log", "governance.erased_identifiers", "governance.requests",
               "raw.ingest_manifest", "identity.id_watermark"}


# --- a world to erase in ---------------------------------------------------------------------

@pytest.fixture
def home(tiny_run, tmp_path) -> Path:
    """A copy of the small world run like production."""
    dst = tmp_path / "home"
    shutil.copytree(tiny_run, dst)
    return dst


def _q(home: Path, sql: str, params=None):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CRM_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    return subprocess.run([sys.executable, "-m", "crm_platform.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _erase(home: Path, itype: str, ident: str, **kw) -> dict:
    paths = settings.Paths(home)
    return erasure.erase(lambda: warehouse.connect(paths.warehouse), paths, CFG, itype, ident,
                         request_id=erasure.new_request_id(), actor="test", **kw)


def _load(home: Path, datasets=None) -> None:
    """Ingest what is new in the landing folder and stage it; identity resolution does not run
    (as when it is blocked, or between ingestion and resolution)."""
    paths = settings.Paths(home)
    listed = erasure.load_list(paths)
    erased = (listed[0]["identifier_hash"].tolist(), listed[1]) if listed else None
    con = warehouse.connect(paths.warehouse)
    try:
        for ds in CFG.datasets:
            if datasets is None or ds.key in datasets:
                ingest_dataset(con, ds, paths.landing, paths.quarantine, erased=erased)
        for e in staging.STAGING_ENTITIES:
            staging.build(con, CFG, e)
    finally:
        con.close()


def _csv_rows(path: Path, delimiter: str, encoding: str) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding=encoding) as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    return rows[0], rows[1:]


def _append_rows(path: Path, rows: list[list[str]], delimiter: str, encoding: str) -> None:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    with path.open("a", newline="", encoding=encoding) as fh:
        fh.write(buf.getvalue())


def _shop_customer(home: Path, with_email=True) -> dict:
    """A customer with a shop record, a phone and an e-mail address no one else holds."""
    rows = _q(home, """
        SELECT c.customer_id, c.email, r.source_record_id, raw.phone
        FROM core.customers c JOIN identity.crosswalk x USING (customer_id)
        JOIN identity.records r USING (contact_key)
        JOIN raw.shop_customers raw ON raw.source_record_id = r.source_record_id
        WHERE x.dataset = 'shop_customers' AND raw.phone IS NOT NULL AND c.email IS NOT NULL
          AND (SELECT count(DISTINCT x2.customer_id) FROM identity.records r2 JOIN identity.crosswalk x2
               USING (contact_key) WHERE r2.email_std = lower(c.email)) = 1
        ORDER BY c.source_records DESC, c.customer_id LIMIT 1""")
    assert rows, "no shop customer with a phone and an e-mail address of their own"
    cid, email, shop_no, phone = rows[0]
    return {"customer_id": cid, "email": email, "shop_no": shop_no, "phone": phone}


# --- what must vanish, what must stay --------------------------------------------------------

def _snapshot(home: Path) -> tuple[dict, dict]:
    """(table -> Counter of rows as text, file -> Counter of records) of the whole home."""
    tables = {}
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        for schema, name in con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                        "WHERE NOT temporary").fetchall():
            rows = con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()
            tables[f"{schema}.{name}"] = Counter("\x1f".join(map(str, r)) for r in rows)
    finally:
        con.close()
    files = {}
    for path in home.rglob("*"):
        rel = path.relative_to(home).as_posix()
        if not path.is_file() or rel.startswith(("dagster_home/", "governance/", "secrets/")) \
                or path.suffix in (".duckdb", ".wal", ".joblib", ".parquet", ".html", ".png", ".json"):
            continue
        data = path.read_bytes()
        spans = scrub._spans_of(path, data)
        files[rel] = Counter(data[a:b].rstrip(b"\r\n") for a, b in spans)
    return tables, files


def _identifiers(home: Path, itype: str, ident: str, **kw) -> list[str]:
    """Everything an erasure of the person will scan for, found as the erasure finds it (nothing
    changed); checked here against the raw layer: no e-mail address or phone number in it is held
    by a raw contact row of someone else."""
    paths = settings.Paths(home)
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        s = erasure.plan(con, paths, CFG, itype, ident, **kw)
        for ds in CFG.by_entity("contacts"):
            held = con.execute(
                f"SELECT count(*) FROM raw.{ds.key} WHERE '{ds.system}:' || source_record_id NOT IN ? AND "
                "(lower(trim(email)) IN ? OR phone IN ?)", [sorted(s.contact_keys), sorted(s.emails) or [""],
                                                             sorted(s.phones) or [""]]).fetchall()[0][0]
            assert held == 0, f"an identifier scanned for is held by someone else's record in raw.{ds.key}"
    finally:
        con.close()
    return s.tokens()


def _mentions(text: str | bytes, tokens: list[str]) -> bool:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return bool(scrub.hits(data, [t.lower().encode() for t in tokens]))


def _assert_others_untouched(before, after, tokens: list[str]) -> None:
    """Every row and record holding none of ``tokens`` is still there, unchanged."""
    t0, f0 = before
    t1, f1 = after
    for table, rows in t0.items():
        if table in BOOKKEEPING:
            continue
        others = Counter({r: n for r, n in rows.items() if not _mentions(r, tokens)})
        kept = t1.get(table, Counter())
        missing = others - kept
        assert not missing, f"{table}: {sum(missing.values())} row(s) of other people removed or changed"
    for rel, records in f0.items():
        others = Counter({r: n for r, n in records.items() if not _mentions(r, tokens)})
        missing = others - f1.get(rel, Counter())
        assert not missing, f"{rel}: {sum(missing.values())} record(s) of other people removed or changed: " \
                            f"{list(missing)[:2]}"


def _assert_gone(home: Path, tokens: list[str]) -> None:
    """None of ``tokens`` in any table or in any file the platform wrote (run history included)."""
    paths = settings.Paths(home)
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        found = erasure.verify(con, paths, tokens)
    finally:
        con.close()
    assert found["passed"], found["found"]
    # the file's own bytes (free blocks too) for the e-mail addresses: strings sit there without
    # separators, so only an address (not a short id inside a longer one) is looked for
    raw = paths.warehouse.read_bytes().lower()
    left = [t for t in tokens if "@" in t and re.search(rb"(?<![a-z0-9._%+-])" + re.escape(t.lower().encode()), raw)]
    assert not left, f"an identifier survives in the warehouse file: {left[:2]}"


# --- one regression test per defect ----------------------------------------------------------

def test_identifier_shared_with_unresolved_records_stays_theirs(home):
    """Defect 1: new shop customers sharing the person's phone, loaded and staged but not resolved:
    the erasure keeps their lines, rows and the phone, and says it kept a shared identifier."""
    person = _shop_customer(home)
    path = home / "landing" / "shop" / "customers.csv"
    header, rows = _csv_rows(path, ",", "utf-8")
    col = {c: i for i, c in enumerate(header)}
    others = []
    for n, template in enumerate(r for r in rows if r[col["customer_no"]] != person["shop_no"]):
        if n == 3:
            break
        row = list(template)
        row[col["customer_no"]] = f"K0900000{n}"
        row[col["email"]] = f"neighbour{n}@example.org"
        row[col["phone"]] = person["phone"]
        others.append(row)
    _append_rows(path, others, ",", "utf-8")
    _load(home, {"shop_customers"})
    assert _q(home, "SELECT count(*) FROM staging.contacts WHERE contact_key LIKE 'shop:K0900000%'") == [(3,)]
    tokens = _identifiers(home, "email", person["email"])
    assert person["phone"] not in tokens and person["email"].lower() in tokens
    before = _snapshot(home)

    receipt = _erase(home, "email", person["email"])

    assert receipt["verification"]["passed"]
    assert receipt["searched"]["shared_identifiers_kept"]["phone_numbers"] >= 1
    _, kept = _csv_rows(path, ",", "utf-8")
    assert sum(r[col["customer_no"]].startswith("K0900000") for r in kept) == 3
    assert not any(r[col["customer_no"]] == person["shop_no"] for r in kept)
    assert _q(home, "SELECT count(*) FROM raw.shop_customers WHERE source_record_id LIKE 'K0900000%'") == [(3,)]
    _assert_others_untouched(before, _snapshot(home), tokens)
    _assert_gone(home, tokens)


def test_unreadable_redelivery_keeps_erased_lines_out_of_quarantine(home):
    """Defect 2: after an erasure, the newsletter export re-delivered with a UTF-8 byte-order mark
    (unreadable as the declared cp1252), or as UTF-16, is quarantined as a copy without the erased
    person's line; every other line is kept for repair."""
    rows = _q(home, """SELECT c.customer_id, r.source_record_id, lower(c.email) FROM core.customers c
        JOIN identity.crosswalk x USING (customer_id) JOIN identity.records r USING (contact_key)
        WHERE x.dataset = 'newsletter_subscribers' AND r.email_std = lower(c.email) ORDER BY 1 LIMIT 1""")
    cid, sub_id, email = rows[0]
    original = (home / "landing" / "newsletter" / "abonnenten.csv").read_bytes()
    _erase(home, "customer_id", cid)
    damaged = {"abonnenten_bom.csv": ("cp1252", b"\xef\xbb\xbf" + original),
               "abonnenten_utf16.csv": ("utf-16", original.decode("cp1252").encode("utf-16"))}
    for name, (codec, data) in damaged.items():
        (home / "landing" / "newsletter" / name).write_bytes(data)
    _load(home, {"newsletter_subscribers"})
    for name, (codec, data) in damaged.items():
        status = _q(home, "SELECT status, reason, quarantine_path FROM raw.ingest_manifest WHERE source_file = ?",
                    [f"newsletter/{name}"])
        assert status and status[0][0] == "quarantined", status
        assert "1 line(s) of people on the erasure list are left out" in status[0][1]
        copy = (home / status[0][2]).read_bytes().removeprefix(b"\xef\xbb\xbf").decode(codec)
        assert sub_id not in copy and email not in copy.lower()
        lines = original.decode("cp1252").splitlines(keepends=True)
        assert copy.removeprefix("\ufeff") == "".join(ln for ln in lines if sub_id not in ln), name
        (home / "landing" / "newsletter" / name).unlink()     # the source's own file, not the platform's
    _assert_gone(home, [sub_id, cid, email])


def test_receipt_says_what_was_searched_and_offers_unlinked_candidates(home):
    """Defect 3: a sales lead of the same person identity resolution did not link (other e-mail and
    phone) stays; the receipt says what was searched and what is not reached, and the dry run and
    the erasure name the candidate to confirm."""
    row = _q(home, """SELECT c.customer_id, r.first_name, r.last_name, r.city FROM core.customers c
        JOIN identity.crosswalk x USING (customer_id) JOIN staging.contacts r USING (contact_key)
        WHERE r.city IS NOT NULL AND r.first_name IS NOT NULL ORDER BY c.source_records DESC, 1 LIMIT 1""")[0]
    cid, first, last, city = row
    path = home / "landing" / "sales" / "leads.csv"
    header, rows = _csv_rows(path, ",", "utf-8")
    col = {c: i for i, c in enumerate(header)}
    lead = list(rows[0])
    lead[col["lead_id"]], lead[col["contact_first_name"]], lead[col["contact_last_name"]] = "L-900001", first, last
    lead[col["contact_email"]], lead[col["contact_phone"]], lead[col["city"]] = "other.box@example.net", "", city
    lead[col["customer_no"]] = ""
    _append_rows(path, [lead], ",", "utf-8")
    _load(home, {"sales_leads", "sales_lead_contacts"})

    dry = _cli(home, "erase", "--customer-id", cid, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would erase 1 customer(s)" in dry.stdout and "sales record of customer (not resolved yet)" in dry.stdout
    assert _q(home, "SELECT count(*) FROM core.customers WHERE customer_id = ?", [cid]) == [(1,)]   # nothing changed

    out = _cli(home, "erase", "--customer-id", cid)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not reached: records never linked" in out.stdout and "same name" in out.stdout
    receipt = json.loads(Path(out.stdout.strip().splitlines()[-1].split(": ", 1)[1]).read_text())
    assert receipt["unlinked_candidates"] == 1 and "not reached" in receipt["not_reached"]
    assert receipt["searched"]["customer_ids"] == 1 and receipt["searched"]["contact_records"] >= 1
    assert first.lower() not in json.dumps(receipt).lower()
    assert _q(home, "SELECT count(*) FROM raw.sales_lead_contacts WHERE source_record_id = 'L-900001'") == [(1,)]


def test_address_held_by_several_customers_is_refused_unless_scoped(production_run, tmp_path):
    """Defect 4: an export or erasure by an address several customers hold (a company's info@
    address of sales leads) is refused with their number, recorded in the audit log; --customer-id
    reaches that one only, --all-matching all of them."""
    home = tmp_path / "home"
    shutil.copytree(production_run, home)
    rows = _q(home, """SELECT r.email_std, list(DISTINCT x.customer_id ORDER BY x.customer_id)
        FROM identity.records r JOIN identity.crosswalk x USING (contact_key) WHERE r.email_std IS NOT NULL
        GROUP BY 1 HAVING count(DISTINCT x.customer_id) > 1 ORDER BY 1 LIMIT 1""")
    assert rows, "the world has no address several customers hold (a role address such as info@...)"
    email, customers = rows[0]
    for command in ("export", "erase"):
        out = _cli(home, command, "--email", email)
        assert out.returncode == 4 and f"held by {len(customers)} customers" in out.stderr, out.stderr
        assert email not in out.stdout + out.stderr
    assert not (home / "exports").exists() or not list((home / "exports").iterdir())
    audit = _q(home, "SELECT action, outcome, details FROM governance.audit_log WHERE outcome = 'refused_ambiguous'")
    assert sorted(a for a, _, _ in audit) == ["erasure", "export"]
    assert all(json.loads(d) == {"customers_matching": len(customers)} for _, _, d in audit)
    assert _q(home, "SELECT count(*) FROM governance.requests WHERE status = 'refused'") == [(2,)]

    out = _cli(home, "export", "--email", email, "--customer-id", customers[0])
    assert out.returncode == 0, out.stderr
    doc = json.loads(Path(out.stdout.strip().split(": ", 1)[1]).read_text())
    assert [c["customer_id"] for c in doc["customers"]] == [customers[0]]

    tokens = _identifiers(home, "email", email, customer_id=customers[0])
    assert email not in tokens
    before = _snapshot(home)
    picked = _erase(home, "email", email, customer_id=customers[0])
    assert picked["customers_erased"] == 1 and picked["verification"]["passed"]
    assert _q(home, "SELECT count(*) FROM core.customers WHERE customer_id = ?", [customers[1]]) == [(1,)]
    assert _q(home, "SELECT count(*) FROM identity.records WHERE email_std = ?", [email])[0][0] >= 1
    _assert_others_untouched(before, _snapshot(home), tokens)
    _assert_gone(home, tokens)
    if len(customers) > 2:
        with pytest.raises(AmbiguousSubject):
            _erase(home, "email", email)
    every = _erase(home, "email", email, all_matching=True)
    assert every["customers_erased"] == len(customers) - 1 and every["verification"]["passed"]
    assert _q(home, "SELECT count(*) FROM core.customers WHERE customer_id IN ?", [customers]) == [(0,)]


def test_dashboard_is_drawn_again_without_the_person(production_run, tmp_path):
    """Defect 6: erasing a customer shown on the dashboard re-renders it without them."""
    home = tmp_path / "home"
    shutil.copytree(production_run, home)
    page = home / "reports" / "dashboard.html"
    text = page.read_text(encoding="utf-8")
    ids = sorted({r[0] for r in _q(home, "SELECT customer_id FROM core.customers") if r[0] in text})
    assert ids, "the dashboard shows no customer id (top at-risk list)"
    receipt = _erase(home, "customer_id", ids[0], compact_warehouse=False)
    assert receipt["files_changed"]["reports/dashboard.html"] == "rendered again without the person"
    again = page.read_text(encoding="utf-8")
    assert ids[0] not in again and "CRM dashboard" in again and len(again) > len(text) / 2
    assert receipt["verification"]["passed"]


def test_multiline_csv_records_leave_whole(tmp_path):
    """Defect 8: a quoted field over several lines leaves with its record; other records keep
    every byte; a stray quote does not turn other people's lines into one record."""
    paths = settings.Paths(tmp_path)
    paths.landing.mkdir(parents=True)
    good = paths.landing / "tickets.csv"
    good.write_bytes(b'"id";"text"\r\n"T-1";"about K00000335\r\nsecond line\r\nthird"\r\n'
                     b'"T-2";"someone else,\nover two lines"\n"T-3";"plain"\n')
    stray = paths.landing / "broken.csv"
    stray.write_bytes(b'id,text\nT-4,"never closed\nT-5,K00000335 here\nT-6,fine\n')
    con = duckdb.connect()
    done = erasure.scrub_files(con, paths, ["K00000335"])
    assert done == {"landing/broken.csv": "1 record(s) removed", "landing/tickets.csv": "1 record(s) removed"}
    assert good.read_bytes() == b'"id";"text"\r\n"T-2";"someone else,\nover two lines"\n"T-3";"plain"\n'
    assert stray.read_bytes() == b'id,text\nT-4,"never closed\nT-6,fine\n'


def test_truth_drops_the_erased_person(home):
    """Defect 9: the generator's truth/persons.csv loses the erased person's row, and only it."""
    person = _shop_customer(home)
    truth = home / "truth"
    with (truth / "contact_records.csv").open(newline="") as fh:
        pid = {r["person_id"] for r in csv.DictReader(fh) if r["source_record_id"] == person["shop_no"]}
    assert len(pid) == 1
    pid = pid.pop()
    before = (truth / "persons.csv").read_text().splitlines()
    _erase(home, "email", person["email"])
    after = (truth / "persons.csv").read_text().splitlines()
    assert [ln for ln in before if pid not in ln] == after and len(after) == len(before) - 1


# --- connection discipline -------------------------------------------------------------------

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_a_connection_waits_for_a_held_warehouse_within_its_bound(tmp_path):
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(warehouse.WarehouseBusy, match="held by another process"):
            warehouse.connect(db, read_only=True, wait=0.5)
        told = []
        con = warehouse.connect(db, wait=60, on_wait=told.append)       # waits out the holder
        con.close()
        assert len(told) == 1 and "lock" in told[0].lower()
    finally:
        holder.wait(timeout=30)


def test_export_in_a_loop_during_a_refresh_leaves_the_run_intact(home):
    """Defect 5: exports started one after the other while refresh_core runs: the run succeeds
    (its steps wait for the warehouse instead of failing on the lock) and so does every export."""
    cid = _q(home, "SELECT customer_id FROM core.customers ORDER BY source_records DESC LIMIT 1")[0][0]
    for f in (home / "landing").rglob("*.csv"):
        f.touch()
    env = {**os.environ, "CRM_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    run = subprocess.Popen([sys.executable, "-c", "from crm_platform.cli import job_runner\n"
                            "r = job_runner()('refresh_core')\n"
                            "print('RUN', r.success, [e.message for e in r.all_events if e.is_failure][:3])"],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    exports = []
    while run.poll() is None:
        out = _cli(home, "export", "--customer-id", cid)
        exports.append((out.returncode, out.stderr[-300:]))
    stdout, stderr = run.communicate(timeout=600)
    assert "RUN True" in stdout, stdout[-2000:] + stderr[-3000:]
    assert len(exports) >= 2 and all(rc == 0 for rc, _ in exports), exports


# --- the property: random people in random states ---------------------------------------------

ROUNDS = 4
# re-deliveries in the damaged formats of tests/unit/test_fuzz_ingest.py, as bytes -> bytes of a CSV export
DAMAGE = {
    "as delivered": lambda b, enc, d: b,
    "bom": lambda b, enc, d: b"\xef\xbb\xbf" + b,
    "utf-16": lambda b, enc, d: b.decode(enc).encode("utf-16"),
    "crlf": lambda b, enc, d: b.replace(b"\n", b"\r\n"),
    "utf-8 re-export": lambda b, enc, d: b.decode(enc).encode("utf-8"),
    "delimiter": lambda b, enc, d: b.replace(d.encode(), b"|"),
    "renamed column": lambda b, enc, d: b.replace(b'"', b'"x_', 1),
    "truncated": lambda b, enc, d: b[:len(b) - max(1, len(b.rstrip(b"\n").rsplit(b"\n", 1)[-1]) // 2) - 1],
}
EXPORTS = {"shop_customers": ("shop/customers.csv", "utf-8", ","),
           "newsletter_subscribers": ("newsletter/abonnenten.csv", "cp1252", ";"),
           "sales_lead_contacts": ("sales/leads.csv", "utf-8", ",")}


def _new_lines(home: Path, rng: random.Random, cid: str, n: int) -> list[str]:
    """Put the person in a random state: new records of other people holding their phone or
    e-mail address, and a record of the same name and city identity resolution never linked;
    loaded and staged, not resolved. Returns what was done."""
    done = []
    shop = _q(home, """SELECT r.phone FROM identity.crosswalk x JOIN raw.shop_customers r
        ON r.source_record_id = x.source_record_id WHERE x.customer_id = ? AND x.dataset = 'shop_customers'
        AND r.phone IS NOT NULL LIMIT 1""", [cid])
    if shop and rng.random() < 0.6:
        path = home / "landing" / "shop" / "customers.csv"
        header, rows = _csv_rows(path, ",", "utf-8")
        col = {c: i for i, c in enumerate(header)}
        row = list(rng.choice(rows))
        row[col["customer_no"]], row[col["email"]], row[col["phone"]] = f"K09{n:02d}0001", f"n{n}@example.org", shop[0][0]
        _append_rows(path, [row], ",", "utf-8")
        done.append("a new shop customer shares the phone")
    mail = _q(home, "SELECT email FROM core.customers WHERE customer_id = ? AND email IS NOT NULL", [cid])
    if mail and rng.random() < 0.5:
        path = home / "landing" / "newsletter" / "abonnenten.csv"
        header, rows = _csv_rows(path, ";", "cp1252")
        row = list(rng.choice(rows))
        row[0], row[4] = f"NL-9{n:02d}0001", mail[0][0]
        _append_rows(path, [row], ";", "cp1252")
        done.append("a new newsletter subscriber shares the e-mail address")
    name = _q(home, """SELECT s.first_name, s.last_name, s.city FROM identity.crosswalk x JOIN staging.contacts s
        USING (contact_key) WHERE x.customer_id = ? AND s.city IS NOT NULL AND s.first_name IS NOT NULL LIMIT 1""", [cid])
    if name and rng.random() < 0.5:
        path = home / "landing" / "sales" / "leads.csv"
        header, rows = _csv_rows(path, ",", "utf-8")
        col = {c: i for i, c in enumerate(header)}
        row = list(rows[0])
        row[col["lead_id"]], row[col["contact_email"]], row[col["contact_phone"]] = f"L-9{n:02d}001", f"l{n}@example.net", ""
        row[col["contact_first_name"]], row[col["contact_last_name"]], row[col["city"]] = name[0]
        row[col["customer_no"]] = ""
        _append_rows(path, [row], ",", "utf-8")
        done.append("an unlinked lead of the same name and city")
    if done:
        _load(home)
    return done


def test_erasure_property_random_people_in_random_states(production_run, tmp_path):
    """Seeded and bounded, on the world run like production (alerts delivered, identity resolved
    with its real misses): erase random people (by e-mail or customer id, some with a delivered
    alert) after putting each in a random state; after each erasure none of their identifiers is
    in any table or platform file, and every other row and record is unchanged; one of their
    exports re-delivered in every damaged format of the fuzz test brings none of it back."""
    home = tmp_path / "home"
    shutil.copytree(production_run, home)
    rng = random.Random(31)
    alerted = {r[0] for r in _q(home, "SELECT DISTINCT customer_id FROM alerts.customer_alerts")}
    seen = []
    for n in range(ROUNDS):
        pool = sorted(r[0] for r in _q(home, "SELECT customer_id FROM core.customers"))
        cid = rng.choice(sorted(alerted & set(pool)) if n == 0 and alerted & set(pool) else pool)
        state = _new_lines(home, rng, cid, n)
        email = _q(home, "SELECT lower(email) FROM core.customers WHERE customer_id = ?", [cid])[0][0]
        by_email = email is not None and rng.random() < 0.5
        scope = ("email", email) if by_email else ("customer_id", cid)
        try:
            tokens = _identifiers(home, *scope)
        except AmbiguousSubject:
            scope, tokens = ("customer_id", cid), _identifiers(home, "customer_id", cid)
        originals = {ds: (home / "landing" / f).read_bytes() for ds, (f, _, _) in EXPORTS.items()}
        before = _snapshot(home)

        receipt = _erase(home, *scope)

        what = f"round {n}: {scope[0]}, {state or ['as resolved']}, alerted: {cid in alerted}"
        assert receipt["verification"]["passed"], (what, receipt["verification"]["found"])
        _assert_gone(home, tokens)
        _assert_others_untouched(before, _snapshot(home), tokens)

        ds = rng.choice(sorted(EXPORTS))
        f, enc, delim = EXPORTS[ds]
        again = [home / "landing" / f.replace(".csv", f"_again{n}_{k}.csv") for k in range(len(DAMAGE))]
        for path, damage in zip(again, sorted(DAMAGE)):
            path.write_bytes(DAMAGE[damage](originals[ds], enc, delim))
        _load(home)
        for path in again:
            path.unlink()               # the source's files; what the platform made of them must be clean
        _assert_gone(home, tokens)
        seen.append((what, ds))
    assert len(seen) == ROUNDS and any("alerted: True" in w for w, _ in seen)
