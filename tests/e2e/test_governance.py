"""GDPR end to end on a platform that ran like production (every job, the run history in its own
DAGSTER_HOME): export, erasure of a person found in four systems with duplicates, re-delivery of the
original exports, consent withdrawal. Plus the pieces: the PII check of marts, redacted metadata,
the erasure list's salt."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from assets.governance import pii_check
from assets.lib.metadata import markdown_table
from crm_platform.core import settings
from crm_platform.governance import erasure, scrub
from crm_platform.ingest.load import ERASED_REASON
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[2]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CRM_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    return subprocess.run([sys.executable, "-m", "crm_platform.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _query(home: Path, sql: str, params=None):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


RUN_JOB = """
from crm_platform.cli import job_runner
result = job_runner()({job!r}{extra})
assert result.success, [e.message for e in result.all_events if e.is_failure]
"""


@pytest.fixture(scope="module")
def production(production_run, tmp_path_factory):
    """A copy of the platform run like production (the session's run stays untouched)."""
    home = tmp_path_factory.mktemp("gdpr") / "home"
    shutil.copytree(production_run, home)
    return home


def _person(home: Path):
    """A customer found in four systems or more with more records than systems (duplicates), with
    a delivered alert when there is one."""
    rows = _query(home, """
        SELECT c.customer_id, c.email, c.source_records, len(c.source_systems),
               EXISTS (SELECT 1 FROM alerts.customer_alerts a WHERE a.customer_id = c.customer_id AND NOT a.is_control)
        FROM core.customers c
        WHERE len(c.source_systems) >= 4 AND c.source_records > len(c.source_systems) AND c.email IS NOT NULL
        ORDER BY 5 DESC, c.source_records DESC, c.customer_id LIMIT 1""")
    assert rows, "the generated world has nobody in four systems with duplicates"
    cid, email, n, systems, alerted = rows[0]
    records = _query(home, "SELECT x.contact_key, r.phone FROM identity.crosswalk x JOIN identity.records r "
                           "USING (contact_key) WHERE x.customer_id = ?", [cid])
    keys = [k for k, _ in records]
    phones = [p for _, p in records if p and _query(
        home, "SELECT count(DISTINCT x.customer_id) FROM identity.records r JOIN identity.crosswalk x USING (contact_key) "
              "WHERE r.phone = ?", [p])[0][0] == 1]
    return {"customer_id": cid, "email": email, "contact_keys": keys, "phones": phones, "alerted": alerted,
            "record_ids": [k.split(":", 1)[1] for k in keys]}


def _traces(home: Path, needles: list[str]) -> list[str]:
    """Every table column and file (run history and warehouse file included) holding a needle:
    plain case-insensitive substring search, independent of the erasure's own scan."""
    low = [n.lower() for n in needles]
    found = []
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        for schema, table, column in con.execute(
                "SELECT schema_name, table_name, column_name FROM duckdb_columns() WHERE NOT internal AND "
                "(data_type LIKE '%VARCHAR%' OR data_type LIKE '%[]')").fetchall():
            cond = " OR ".join(f"contains(lower(\"{column}\"::VARCHAR), '{n}')" for n in low)
            if con.execute(f"SELECT count(*) FROM {schema}.{table} WHERE {cond}").fetchall()[0][0]:
                found.append(f"{schema}.{table}.{column}")
        for path in home.rglob("*"):
            if not path.is_file():
                continue
            if path.suffix == ".parquet":
                text = " ".join(map(str, con.execute(
                    f"SELECT * FROM read_parquet('{path}')").fetchall())).lower().encode()
            else:
                text = path.read_bytes().lower()
            found += [f"{path.relative_to(home)}: {n}" for n in low if n.encode() in text]
    finally:
        con.close()
    return found


def test_export_erasure_and_redelivery(production, world, tmp_path):
    home = production
    person = _person(home)
    needles = [person["email"], person["customer_id"], *person["record_ids"], *person["phones"]]
    assert _traces(home, needles), "the person is in the platform before the erasure"

    # --- export (Art. 15/20): every source record of the person, with what we made of them
    out = _cli(home, "export", "--email", person["email"].upper())
    assert out.returncode == 0, out.stderr
    doc = json.loads(Path(out.stdout.strip().split(": ", 1)[1]).read_text())
    exported = {(ds, r.get("source_record_id")) for ds, rows in doc["source_records"].items() for r in rows}
    truth = pd.read_csv(world / "truth" / "contact_records.csv", dtype=str)
    pid = truth[truth.source_record_id.isin(person["record_ids"])].person_id.unique()
    assert len(pid) == 1
    for ds, rid in truth[truth.person_id == pid[0]][["dataset", "source_record_id"]].itertuples(index=False):
        held = _query(home, f"SELECT count(*) FROM raw.{ds} WHERE source_record_id = ?", [rid])[0][0]
        assert not held or (ds, rid) in exported, f"{ds} {rid} is held but not exported"
    orders = {r[0] for r in _query(home, "SELECT order_id FROM raw.shop_orders WHERE customer_ref IN "
                                         f"({', '.join(repr(r) for r in person['record_ids'])})")}
    assert orders == {r["order_id"] for r in doc["source_records"].get("shop_orders", [])}
    assert {c["customer_id"] for c in doc["customers"]} == {person["customer_id"]}
    assert doc["customers"][0]["golden_record"]["email"] == person["email"]
    assert doc["events"] and all(e["customer_id"] == person["customer_id"] for e in doc["events"])
    assert doc["scores"]["churn"] and all(s["model_version"] for s in doc["scores"]["churn"])
    assert any(k.startswith("churn ") for k in doc["models"])
    if person["alerted"]:
        assert any(a["delivered_to"] for a in doc["alerts"])

    # --- erasure (Art. 17) requested by a file, carried out by the governance job
    original = tmp_path / "original_landing"
    shutil.copytree(home / "landing", original)
    (home / "requests").mkdir(exist_ok=True)
    (home / "requests" / "erase-0001.json").write_text(json.dumps(
        {"type": "erase", "email": person["email"], "requested_by": "data protection officer"}))
    other = _query(home, "SELECT customer_id FROM core.customers WHERE customer_id <> ? ORDER BY customer_id LIMIT 1",
                   [person["customer_id"]])[0][0]
    (home / "requests" / "export-0002.json").write_text(json.dumps({"type": "export", "customer_id": other}))
    run_python(home, RUN_JOB.format(job="governance_requests", extra=""))
    done = dict(_query(home, "SELECT source_file, reason FROM governance.requests WHERE status = 'done'"))
    exported_other = json.loads((home / done["export-0002.json"].split(" ", 1)[1]).read_text())
    assert [c["customer_id"] for c in exported_other["customers"]] == [other]
    status = _query(home, "SELECT request_id, status, identifier FROM governance.requests WHERE source_file = 'erase-0001.json'")
    assert [(s, i) for _, s, i in status] == [("done", None)]
    rid = status[0][0]
    receipt_text = (home / "governance" / "receipts" / f"{rid}.json").read_text()
    receipt = json.loads(receipt_text)
    assert receipt["verification"]["passed"] and receipt["verification"]["occurrences"] == 0
    assert receipt["customers_erased"] == 1 and len(receipt["source_systems"]) >= 4
    assert receipt["rows_removed"]["raw.shop_orders"] == len(orders)
    assert any(p.startswith("landing/") for p in receipt["files_changed"])
    assert not [n for n in needles if n.lower() in receipt_text.lower()], "the receipt names the person"
    assert not (home / "requests" / "erase-0001.json").exists()
    assert _traces(home, needles) == []
    audit = _query(home, "SELECT action, subject, outcome FROM governance.audit_log")
    assert ("erasure", rid, "verified") in audit and sum(a == "export" for a, _, _ in audit) == 2
    assert {o for a, _, o in audit if a == "model_promotion"} <= {"promoted", "refused"}
    assert any(a == "model_promotion" for a, _, _ in audit)           # the gate decisions of the retraining

    # --- the source re-delivers its old exports: the person stays out
    shutil.rmtree(home / "landing")
    shutil.copytree(original, home / "landing")
    for f in (home / "landing").rglob("*"):
        if f.is_file():
            f.touch()
    run_python(home, RUN_JOB.format(job="refresh_core", extra=""))
    kept_out = _query(home, "SELECT count(*), count(record) FROM raw.quarantine_rows WHERE reason = ?", [ERASED_REASON])[0]
    assert kept_out[0] > 0 and kept_out[1] == 0
    leftovers = _traces(home, needles)
    assert leftovers and all(t.startswith("landing") for t in leftovers), leftovers
    assert _query(home, "SELECT count(*) FROM raw.ingest_manifest WHERE rows_read <> rows_loaded + rows_quarantined")[0][0] == 0
    assert person["customer_id"] not in {r[0] for r in _query(home, "SELECT customer_id FROM core.customers")}


def test_consent_withdrawal_stops_alerts(production_run, tmp_path):
    """A shop customer revokes the newsletter opt-in: the next daily run raises no alert for them,
    and the others keep theirs. On its own copy: the module's copy may have lost a customer to the
    erasure test, and with it the only other alert of the day."""
    home = tmp_path / "home"
    shutil.copytree(production_run, home)
    day = _query(home, "SELECT max(alert_date) FROM alerts.customer_alerts")[0][0]
    rows = _query(home, """SELECT a.customer_id, x.source_record_id FROM alerts.customer_alerts a
        JOIN identity.crosswalk x USING (customer_id) JOIN core.customers c USING (customer_id)
        WHERE a.alert_date = ? AND x.dataset = 'shop_customers' AND c.consent_email
        ORDER BY a.customer_id LIMIT 1""", [day])
    assert rows, "no consenting shop customer with an alert that day"
    cid, shop_no = rows[0]
    path = home / "landing" / "shop" / "customers.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert (df.customer_no == shop_no).sum() == 1
    df.loc[df.customer_no == shop_no, "newsletter_optin"] = "0"
    df.to_csv(path, index=False, quoting=1)
    run_python(home, RUN_JOB.format(job="refresh_core", extra=""))
    assert _query(home, "SELECT consent_email FROM core.customers WHERE customer_id = ?", [cid]) == [(False,)]
    run_python(home, RUN_JOB.format(job="daily_snapshots", extra=f", partition_key='{day}'"))
    assert _query(home, "SELECT count(*) FROM alerts.customer_alerts WHERE customer_id = ? AND alert_date = ?",
                  [cid, day]) == [(0,)]
    assert _query(home, "SELECT count(*) FROM alerts.customer_alerts WHERE alert_date = ?", [day])[0][0] > 0


def test_pii_column_in_a_mart_fails_its_check(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.customer_segments AS SELECT 'C000000001' AS customer_id, 'champions' AS rfm_segment")
    con.execute("CREATE TABLE marts.lookalikes AS SELECT 'C000000001' AS customer_id, 'call +49 170 1234567' AS note")
    con.close()
    key = dg.AssetKey(["marts", "customer_segments"])

    def evaluate(table):
        check = pii_check(dg.AssetKey(table.split(".")), table)
        result = dg.materialize([check], resources={"warehouse": DuckDBResource(database=str(db))},
                                instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                selection=dg.AssetSelection.checks(check))
        return result.get_asset_check_evaluations()[0]

    assert evaluate("marts.customer_segments").passed
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE marts.customer_segments ADD COLUMN email VARCHAR DEFAULT 'x@example.de'")
    con.close()
    failed = evaluate("marts.customer_segments")
    assert not failed.passed and "column email is personal data" in failed.description
    content = evaluate("marts.lookalikes")
    assert not content.passed and "note look like" in content.description
    assert key  # the check is keyed to the mart's own asset


def test_metadata_previews_hide_personal_columns():
    df = pd.DataFrame({"customer_id": ["C000000001"], "email": ["a@b.de"], "rfm_segment": ["champions"]})
    text = markdown_table(df)
    assert "champions" in text and "C000000001" not in text and "a@b.de" not in text
    assert "personal columns not shown: customer_id, email" in text


def test_erasure_list_needs_its_salt(tmp_path):
    paths = settings.Paths(tmp_path)
    salt = paths.hash_salt()
    erasure._append_list(paths, [("a" * 64, "email")], "0" * 24, salt)
    hashes, got = erasure.load_list(paths)
    assert got == salt and list(hashes.identifier_hash) == ["a" * 64]
    paths.salt_file.unlink()
    with pytest.raises(erasure.ErasureListError, match="salt .* is missing"):
        erasure.load_list(paths)
    paths.hash_salt()           # a new, different salt
    with pytest.raises(erasure.ErasureListError, match="another salt"):
        erasure.load_list(paths)


def test_token_matching_is_whole_word():
    data = b"K00000335,x\nK000003351,y\nmax@gmx.de\namax@gmx.de\n"
    offsets = scrub.hits(data, [b"k00000335", b"max@gmx.de"])
    clean, lines = scrub._without_lines(data, offsets)
    assert lines == 2 and clean == b"K000003351,y\namax@gmx.de\n"


def test_audit_records_a_decision_once(tmp_path):
    from crm_platform.core import audit

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    row = {"action": "review_decision", "actor": "reviewer", "subject": "pair 0f0f", "outcome": "match"}
    assert audit.record_many(con, [row]) == 1 and audit.record_many(con, [row]) == 0
    assert audit.record_many(con, [{**row, "outcome": "no_match"}]) == 1      # a changed mind is news
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record(con, "deletion", "x", "y", "z")
    assert con.execute("SELECT count(*) FROM governance.audit_log").fetchall() == [(2,)]
