"""Identity resolution of the staged contacts: this platform and Splink 5 side by side.

    .venv/bin/pip install -c requirements.lock -e '.[bench]'        # Splink is optional
    .venv/bin/python benchmarks/throughput.py 1000000               # builds the staged contacts
    .venv/bin/python benchmarks/identity_vs_splink.py 1000000 --record
    .venv/bin/python benchmarks/identity_vs_splink.py 100000 --variants --record   # + without e-mail, without phone

Both run on the same ``staging.contacts`` (benchmarks/_work/<customers>/warehouse.duckdb), each in
its own process so peak memory is its own, one after the other in the same run. Both use DuckDB on
this machine, the same blocking keys and comparable comparisons; both are scored against the
generator's truth with the same code. Time covers blocking, training, scoring and clustering.
The platform's spec is derived from the staged contacts, as a user gets it (no hand-written spec).

With ``--variants`` the same world is also matched without e-mail and without phone (those
columns emptied in both engines' copies; Splink then drops its e-mail or phone comparison and
rules). ``hard_negatives`` counts the person pairs the generator made to look alike - household
members and twins (same surname and address, twins the same birth date too) - that ended in one
customer.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
from _runner import append_results, run_stage

from crm_platform.identity import evaluate

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
COLUMNS = ("contact_key, dataset, source_record_id, salutation, first_name_std, last_name_std, first_name_key, "
           "last_name_key, email_std, email_local, phone_e164, street_std, postcode, city_std, birth_date, "
           "shop_customer_no, trust_rank, created_at, updated_at, source_system")


EMPTIED = {"full": [], "no_email": ["email", "email_std", "email_local", "email_domain"],
           "no_phone": ["phone", "phone_e164"]}


def _db(customers: int, engine_name: str, variant: str = "full") -> Path:
    """A private copy of the staged contacts (and the support tickets that name a requester's shop
    account) for one engine, the variant's columns emptied."""
    src = WORK / str(customers) / "warehouse.duckdb"
    dst = WORK / str(customers) / f"identity_{engine_name}_{variant}.duckdb"
    dst.unlink(missing_ok=True)
    con = duckdb.connect(str(dst))
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    con.execute("CREATE SCHEMA staging")
    emptied = EMPTIED[variant]
    replace = f" REPLACE ({', '.join(f'NULL::VARCHAR AS {c}' for c in emptied)})" if emptied else ""
    con.execute(f"CREATE TABLE staging.contacts AS SELECT *{replace} FROM src.staging.contacts")
    con.execute("CREATE TABLE staging.support_tickets AS SELECT * FROM src.staging.support_tickets")
    con.execute("DETACH src")
    con.close()
    return dst


def run_platform(db: Path) -> dict:
    from crm_platform.identity import resolve
    from crm_platform.identity import derive

    con = duckdb.connect(str(db))
    t0 = time.perf_counter()
    spec = derive.spec_for(con)              # derived from the staged contacts, as the platform does
    rep = resolve.match(con, spec)
    t1 = time.perf_counter()
    res = resolve.resolve(con, spec)
    t2 = time.perf_counter()
    con.execute("CREATE OR REPLACE TABLE result AS SELECT contact_key AS record_id, customer_id AS cluster_id "
                "FROM identity.crosswalk")
    con.execute("CREATE OR REPLACE TABLE result_pairs AS SELECT left_id, right_id FROM identity.candidate_pairs")
    con.close()
    return {"seconds": round(t2 - t0, 1), "match_seconds": round(t1 - t0, 1), "cluster_seconds": round(t2 - t1, 1),
            "steps": rep.seconds, "candidate_pairs": rep.candidate_pairs, "clusters": res.customers}


def run_splink(db: Path, variant: str = "full") -> dict:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    con = duckdb.connect(str(db))
    t0 = time.perf_counter()
    db_api = DuckDBAPI(connection=con)
    con.execute(f"CREATE TABLE splink_input AS SELECT {COLUMNS}, replace(replace(replace(city_std, 'ae', 'a'), "
                "'oe', 'o'), 'ue', 'u') AS city_key FROM staging.contacts")
    df = db_api.register("splink_input", dataset_display_name="contacts")
    email, phone = variant != "no_email", variant != "no_phone"
    settings = SettingsCreator(
        link_type="dedupe_only", unique_id_column_name="contact_key",
        blocking_rules_to_generate_predictions=[
            *([block_on("email_std")] if email else []), *([block_on("phone_e164")] if phone else []),
            block_on("last_name_key", "postcode"),
            block_on("first_name_key", "birth_date"), block_on("last_name_key", "birth_date"),
            block_on("first_name_key", "last_name_key", "city_key"), block_on("street_std", "postcode"),
            block_on("birth_date", "postcode"), block_on("first_name_key", "postcode")],
        comparisons=[
            cl.NameComparison("first_name_std").configure(term_frequency_adjustments=True),
            cl.NameComparison("last_name_std").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("birth_date", input_is_string=False),
            *([cl.EmailComparison("email_std")] if email else []),
            *([cl.ExactMatch("phone_e164")] if phone else []),
            cl.ExactMatch("salutation"),
            cl.PostcodeComparison("postcode"),
            cl.ExactMatch("city_std").configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=False)
    linker = Linker(df, settings, log_level="WARNING")
    linker.training.estimate_probability_two_random_records_match(
        [*([block_on("email_std", "first_name_key")] if email else []),
         *([block_on("phone_e164", "last_name_key", "birth_date")] if phone else []),
         block_on("first_name_key", "last_name_key", "birth_date")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=42)
    for rule in (*([block_on("email_std")] if email else []), *([block_on("phone_e164")] if phone else []),
                 block_on("first_name_key", "birth_date"), block_on("postcode")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.9)
    t1 = time.perf_counter()
    con.execute(f"CREATE OR REPLACE TABLE result AS SELECT contact_key AS record_id, cluster_id::VARCHAR AS cluster_id "
                f"FROM {clusters.physical_name}")
    n = con.execute("SELECT count(DISTINCT cluster_id) FROM result").fetchall()[0][0]
    con.close()
    return {"seconds": round(t1 - t0, 1), "clusters": n}


def hard_negatives(db: Path, customers: int) -> dict:
    """Household-member and twin person pairs (the generator's look-alikes) merged into one customer."""
    con = duckdb.connect(str(db), read_only=True)
    truth = pd.read_csv(WORK / str(customers) / "truth" / "contact_records.csv", dtype=str, keep_default_na=False)
    persons = pd.read_csv(WORK / str(customers) / "truth" / "persons.csv", dtype=str, keep_default_na=False)
    systems = con.sql("SELECT DISTINCT dataset, source_system FROM staging.contacts").df()
    truth = truth.merge(systems, on="dataset")
    con.register("_t", truth.assign(record_id=truth.source_system + ":" + truth.source_record_id)[["record_id", "person_id"]])
    con.register("_p", persons[["person_id", "household_id", "twin_group"]])
    rows = con.execute("""WITH c AS (SELECT r.cluster_id, t.person_id, p.household_id, p.twin_group FROM result r
            JOIN _t t USING (record_id) JOIN _p p USING (person_id)),
        pp AS (SELECT DISTINCT a.person_id AS pa, b.person_id AS pb, a.twin_group <> '' AND a.twin_group = b.twin_group AS twin
               FROM (SELECT DISTINCT person_id, household_id, twin_group FROM c) a
               JOIN (SELECT DISTINCT person_id, household_id, twin_group FROM c) b
                 ON a.household_id = b.household_id AND a.person_id < b.person_id),
        merged AS (SELECT DISTINCT a.person_id AS pa, b.person_id AS pb FROM c a JOIN c b
                   ON a.cluster_id = b.cluster_id AND a.person_id < b.person_id)
        SELECT twin, count(*), count(m.pa) FROM pp LEFT JOIN merged m USING (pa, pb) GROUP BY 1""").fetchall()
    con.close()
    return {("twins" if twin else "household_members"): f"{m}/{n}" for twin, n, m in rows}


def quality(db: Path, customers: int, with_pairs: bool) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    truth = pd.read_csv(WORK / str(customers) / "truth" / "contact_records.csv", dtype=str, keep_default_na=False)
    systems = con.sql("SELECT DISTINCT dataset, source_system FROM staging.contacts").df()
    truth = truth.merge(systems, on="dataset")
    truth = truth.assign(record_id=truth.source_system + ":" + truth.source_record_id, entity_id=truth.person_id)
    return evaluate.with_truth(con, "SELECT * FROM result", truth,
                               "SELECT * FROM result_pairs" if with_pairs else None)


# what a true pair that blocking never compared still has in common (first matching class)
MISSED_SQL = """
WITH t AS (SELECT record_id, entity_id FROM _truth_all),
     tp AS (SELECT a.record_id AS x, b.record_id AS y FROM t a JOIN t b
            ON a.entity_id = b.entity_id AND a.record_id < b.record_id),
     miss AS (SELECT tp.* FROM tp ANTI JOIN identity.candidate_pairs c ON c.left_id = tp.x AND c.right_id = tp.y)
SELECT CASE
  WHEN l.email_std = r.email_std OR l.phone_e164 = r.phone_e164 OR l.birth_date = r.birth_date
    OR l.postcode = r.postcode OR l.street_std = r.street_std OR l.shop_account = r.shop_account
    THEN 'an e-mail, phone, birth date, postcode, street or account'
  WHEN l.first_name_key = r.first_name_key AND l.last_name_key = r.last_name_key THEN 'the full name only'
  WHEN l.last_name_key = r.last_name_key OR l.first_name_key = r.first_name_key OR l.city_key = r.city_key
    THEN 'one name or the city only'
  ELSE 'nothing at all' END AS shares, count(*) AS pairs
FROM miss JOIN identity.records l ON l.contact_key = miss.x JOIN identity.records r ON r.contact_key = miss.y
GROUP BY 1 ORDER BY 2 DESC"""


def missed_pairs(db: Path, customers: int) -> dict:
    """True pairs the platform's blocking never compared, by what the two records share. Pairs
    sharing nothing cannot be found by any blocking, nor scored by any comparison."""
    con = duckdb.connect(str(db), read_only=True)
    truth = pd.read_csv(WORK / str(customers) / "truth" / "contact_records.csv", dtype=str, keep_default_na=False)
    systems = con.sql("SELECT DISTINCT dataset, source_system FROM staging.contacts").df()
    truth = truth.merge(systems, on="dataset")
    con.register("_truth_all", truth.assign(record_id=truth.source_system + ":" + truth.source_record_id,
                                            entity_id=truth.person_id))
    true_pairs = int(truth.groupby("person_id").size().map(lambda n: n * (n - 1) // 2).sum())
    out = {k: round(v / true_pairs, 4) for k, v in con.execute(MISSED_SQL).fetchall()}
    con.close()
    return out


def stage(name: str, customers: int, variant: str = "full") -> dict:
    db = _db(customers, name, variant)
    out = run_platform(db) if name == "platform" else run_splink(db, variant)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out.update({k: v for k, v in quality(db, customers, name == "platform").items()
                if k in ("records", "pairwise_precision", "pairwise_recall", "pairwise_f1", "bcubed_precision",
                         "bcubed_recall", "bcubed_f1", "blocking_recall", "blocking_recall_connected",
                         "best_possible_bcubed_recall")})
    out["hard_negatives"] = hard_negatives(db, customers)
    if name == "platform":
        out["missed_true_pairs_sharing"] = missed_pairs(db, customers)
    db.unlink(missing_ok=True)
    return out


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--stage":
        print(json.dumps(stage(argv[1], int(argv[2]), *argv[3:4])))
        return
    record = "--record" in argv
    sizes = [int(a) for a in argv if a.isdigit()] or [100_000]
    engines = ["platform", "splink"] if _has_splink() else ["platform"]
    variants = ["full", "no_email", "no_phone"] if "--variants" in argv else ["full"]
    cols = ["customers", "variant", "engine", "records", "seconds", "peak_rss_mb", "bcubed_precision", "bcubed_recall",
            "bcubed_f1", "pairwise_f1", "blocking_recall", "blocking_recall_connected", "best_possible_bcubed_recall",
            "detail"]
    lines = [f"\n## Identity resolution vs Splink - {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC - this machine: "
             f"2 cores, Python {platform.python_version()}",
             f"command: `.venv/bin/python benchmarks/identity_vs_splink.py {' '.join(argv)}`", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for n in sizes:
        for variant in variants:
            for name in engines:
                r = run_stage(__file__, name, n, [variant])
                r.update(customers=n, engine=name, variant=variant)
                r["detail"] = json.dumps({k: r[k] for k in ("hard_negatives", "steps", "candidate_pairs",
                                                            "cluster_seconds", "clusters", "missed_true_pairs_sharing")
                                          if k in r})
                lines.append("| " + " | ".join(f"{r[c]:,}" if isinstance(r.get(c), int) else str(r.get(c, ""))
                                               for c in cols) + " |")
                print(lines[-1], flush=True)
    if record:
        append_results(lines)


def _has_splink() -> bool:
    try:
        import splink  # noqa: F401
    except ImportError:
        print("splink is not installed (pip install -e '.[bench]'): measuring the platform only", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    main(sys.argv[1:])
