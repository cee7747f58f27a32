"""CLV and churn on CDNOW through the user path, against lifetimes' BG/NBD fitted in the same run.

    .venv/bin/pip install -c requirements.lock -e '.[bench]'     # lifetimes ships the data files
    .venv/bin/python benchmarks/cdnow.py            # sample (2,357 customers) and full log (23,570)
    .venv/bin/python benchmarks/cdnow.py --record   # and append the tables to benchmarks/results.md

**Through the pipeline** (the first table): the log as the shop has it on 1997-09-30 (calibration
weeks 1-39, as delivered: whitespace-aligned, CRLF) lands in a fresh home with the sources mapping
``benchmarks/specs/cdnow_master.yaml`` / ``cdnow_sample.yaml`` (``bring_your_own.py``), and
``crm-platform materialize`` runs the whole chain. The one setting changed from the packaged
``models.yaml`` is ``clv_horizons_days``, which gains 273 days (the 39-week holdout). Then the
score tables of 1997-09-30 (``ml.clv_scores``, ``ml.churn_scores``) are joined through the
crosswalk to the CDNOW customer ids and compared per customer with weeks 40-78 (to 1998-06-30):
expected purchases (repeat purchase days, same-day purchases merged) by MAE, RMSE, Spearman rank
correlation and aggregate error (Σ predicted / Σ actual − 1); churn (no purchase in the holdout)
by ROC-AUC of the churn probability, of recency (days since the last purchase) and of the count
models' 1 − P(alive). ``lifetimes.BetaGeoFitter`` is fitted on the same calibration histories.

**Direct fits** (the second table): the project's BG/NBD and Pareto/NBD fitted straight on the
calibration histories (ingestion through ``benchmarks/specs/cdnow_sources.yaml``, purchase
histories from ``crm_platform.ml.clv.history_sql``), the served one chosen on weeks 27-39.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from _runner import append_results, machine_header

from crm_platform.staging import tables as staging
from crm_platform.ingest.load import ingest_dataset
from crm_platform.ml.btyd import BetaGeo, ParetoNBD
from crm_platform.ml.clv import history_sql
from crm_platform.ml.evaluate import regression_metrics
from crm_platform.ml.registry import Registry
from crm_platform.ingest.sources import load_sources

HERE = Path(__file__).resolve().parent
CAL_END, HOLD_END = date(1997, 9, 30), date(1998, 6, 30)
HOLDOUT_DAYS = (HOLD_END - CAL_END).days        # 273 = 39 weeks
VALIDATION_DAYS = 91                            # weeks 27-39, to choose the served model


def data_file(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the CDNOW files ship with lifetimes: .venv/bin/pip install -c requirements.lock -e '.[bench]'")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


def land(src: Path, home: Path) -> int:
    """The whitespace-separated log as landing/cdnow/orders.csv, one order number per line."""
    out = home / "landing" / "cdnow" / "orders.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with src.open() as fh, out.open("w", newline="") as o:
        w = csv.writer(o)
        w.writerow(["order_no", "customer_id", "date", "cds", "dollars"])
        for line in fh:
            fields = line.split()
            if not fields or not fields[-1][0].isdigit():    # blank line or the master file's header
                continue
            cid, day, cds, dollars = fields[-4:]             # the sample has a master id in front
            n += 1
            w.writerow([f"{cid}-{n}", cid, day, cds, dollars])
    return n


def load(src: Path, home: Path):
    """Ingest the log through the source mapping; return a connection with an ``ev`` view."""
    rows = land(src, home)
    cfg = load_sources(HERE / "specs" / "cdnow_sources.yaml")
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    results = [ingest_dataset(con, ds, home / "landing", home / "quarantine") for ds in cfg.datasets]
    staging.build(con, cfg, "orders")
    loaded = con.execute("SELECT count(*) FROM staging.orders").fetchall()[0][0]
    if loaded != rows:
        raise SystemExit(f"{src.name}: {rows} lines, {loaded} staged orders: see {home / 'quarantine'} ({results})")
    con.execute("""CREATE VIEW ev AS SELECT customer_ref AS customer_id, ordered_at AS event_at,
        ordered_at AS known_at, 'order' AS event_type, total_amount AS value, NULL::VARCHAR[] AS categories
        FROM staging.orders""")
    return con, rows


def histories(con, cutoff: date):
    h = con.sql(history_sql(cutoff, "ev")).df()
    return h, (h["repeat_days"], h["t_x_days"], h["age_days"])


def repeat_days_between(con, customers, start: date, end: date) -> np.ndarray:
    """Purchase days of each customer after ``start`` up to and including ``end``."""
    got = dict(con.execute(f"""SELECT customer_id, count(DISTINCT event_at::DATE) FROM ev
        WHERE event_at >= DATE '{start}' + INTERVAL 1 DAY AND event_at < DATE '{end}' + INTERVAL 1 DAY
        GROUP BY 1""").fetchall())
    return np.array([got.get(c, 0) for c in customers], dtype=float)


def run(name: str) -> list[dict]:
    """Each count model fitted on the calibration period and scored on the holdout; the served
    one is chosen without looking at the holdout: the lower MAE when fitted on weeks 1-26 and
    scored on weeks 27-39 (the platform's CLV task chooses by MAE on its test cutoff too)."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        con, rows = load(data_file(name), Path(tmp))
        ingest_s = time.perf_counter() - t
        h, hist = histories(con, CAL_END)
        actual = repeat_days_between(con, h["customer_id"], CAL_END, HOLD_END)
        inner_end = CAL_END - timedelta(days=VALIDATION_DAYS)
        hv, hist_v = histories(con, inner_end)
        actual_v = repeat_days_between(con, hv["customer_id"], inner_end, CAL_END)
        out, validation = [], {}
        for label, M in (("BG/NBD", BetaGeo), ("Pareto/NBD", ParetoNBD)):
            validation[label] = float(np.mean(np.abs(M().fit(*hist_v).expected_purchases(VALIDATION_DAYS, *hist_v)
                                                     - actual_v)))
            t = time.perf_counter()
            m = M().fit(*hist)
            pred = m.expected_purchases(HOLDOUT_DAYS, *hist)
            params = {k: round(float(v) / (7 if k in ("alpha", "beta") else 1), 3) for k, v in vars(m).items()}
            out.append({"data": name, "model": label, "seconds": time.perf_counter() - t,
                        "params": " ".join(f"{k}={v}" for k, v in params.items()) + " (alpha, beta in weeks)",
                        **regression_metrics(actual, pred)})
        served = min(validation, key=validation.get)
        for r in out:
            r["validation_mae"] = validation[r["model"]]
            if r["model"] == served:
                r["model"] += " (served)"
        con.close()
    for r in out:
        r.update(rows=rows, customers=len(h), holdout_purchases=int(actual.sum()), ingest_seconds=ingest_s)
    return out


def holdout(src: Path) -> tuple[pd.Series, pd.DataFrame]:
    """Per CDNOW customer id: purchase days in weeks 40-78; and the calibration summary
    (repeat purchase days, days from first to last, age at 1997-09-30) lifetimes is fitted on."""
    rows = []
    with src.open() as fh:
        for line in fh:
            f = line.split()
            if f and f[-1][0].isdigit():
                rows.append((f[-4], f[-3]))
    t = pd.DataFrame(rows, columns=["cid", "day"]).drop_duplicates()
    t["date"] = pd.to_datetime(t["day"], format="%Y%m%d")
    cal_end = pd.Timestamp(CAL_END)
    after = t[(t["date"] > cal_end) & (t["date"] <= pd.Timestamp(HOLD_END))].groupby("cid").size()
    g = t[t["date"] <= cal_end].groupby("cid")["date"]
    summary = pd.DataFrame({"frequency": g.nunique() - 1, "recency": (g.max() - g.min()).dt.days,
                            "T": (cal_end - g.min()).dt.days, "days_since_last": (cal_end - g.max()).dt.days})
    return after, summary


def models_config(home: Path) -> Path:
    """The packaged models.yaml with the 273-day horizon added to clv_horizons_days."""
    from crm_platform.core import settings

    text = Path(settings.models_file()).read_text()
    changed = text.replace("clv_horizons_days: [90, 180, 365]", "clv_horizons_days: [90, 180, 273, 365]")
    if changed == text:
        raise SystemExit("models.yaml has no default clv_horizons_days line to extend")
    out = home / "models.yaml"
    out.write_text(changed)
    return out


def through_pipeline(name: str, dataset: str) -> dict:
    """The user path on the calibration weeks; the day's score tables against the holdout."""
    import bring_your_own
    from lifetimes import BetaGeoFitter
    from sklearn.metrics import roc_auc_score

    tmp = Path(tempfile.mkdtemp(prefix="cdnow_models_"))
    os.environ["CRM_PLATFORM_MODELS"] = str(models_config(tmp))
    try:
        row = bring_your_own.run(dataset, keep=True)
    finally:
        os.environ.pop("CRM_PLATFORM_MODELS")
    home = Path(row.pop("home"))
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    ids = con.execute("""SELECT DISTINCT x.customer_id, c.source_record_id AS cid FROM identity.crosswalk x
                         JOIN staging.contacts c USING (contact_key)""").df()
    clv = con.execute("SELECT * FROM ml.clv_scores WHERE snapshot_date = ?", [CAL_END]).df()
    churn = con.execute("SELECT customer_id, churn_probability FROM ml.churn_scores WHERE snapshot_date = ?",
                        [CAL_END]).df()
    registry = Registry(home / "models")
    cards = {t: registry.card(t, v) for t in ("clv", "churn") if (v := registry.champion(t))}
    con.close()
    after, summary = holdout(data_file(name))
    t0 = time.perf_counter()
    bg = BetaGeoFitter(penalizer_coef=0.0).fit(summary["frequency"], summary["recency"], summary["T"])
    summary["bg_expected"] = bg.conditional_expected_number_of_purchases_up_to_time(
        HOLDOUT_DAYS, summary["frequency"], summary["recency"], summary["T"])
    summary["bg_alive"] = bg.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"])
    lifetimes_s = time.perf_counter() - t0
    m = ids.merge(clv, on="customer_id").merge(churn, on="customer_id").merge(
        summary, left_on="cid", right_index=True)
    m["actual"] = m["cid"].map(after).fillna(0).to_numpy(float)
    gone = (m["actual"] == 0).astype(int)
    served = regression_metrics(m["actual"], m[f"expected_purchases_{HOLDOUT_DAYS}d"])
    bgm = regression_metrics(m["actual"], m["bg_expected"])
    out = {"data": name, "customers": len(summary), "scored": len(m), "exit": row["exit"], "seconds": row["seconds"],
           "clv_model": clv["model_version"].iloc[0] if len(clv) else None, "served": served, "lifetimes_bg_nbd": bgm,
           "lifetimes_seconds": round(lifetimes_s, 1),
           "beats_bg_nbd": bool(served["mae"] < bgm["mae"] and served["rmse"] < bgm["rmse"]
                                and served["spearman"] > bgm["spearman"]
                                and abs(served["aggregate_error"]) < abs(bgm["aggregate_error"])),
           "churn_roc_auc": {"served churn model": roc_auc_score(gone, m["churn_probability"]),
                             "recency": roc_auc_score(gone, m["days_since_last"]),
                             "served count model 1 − P(alive)": roc_auc_score(gone, 1 - m["probability_alive"]),
                             "lifetimes BG/NBD 1 − P(alive)": roc_auc_score(gone, 1 - m["bg_alive"])},
           "outputs": row["outputs"]}
    for task in ("clv", "churn"):
        card = cards.get(task, {})
        out[f"{task}_card"] = {k: card.get(k) for k in ("model", "tier", "outlook_model", "notes", "definition",
                                                        "test_cutoff")}
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str]) -> None:
    record = "--record" in argv
    piped = [through_pipeline(n, d) for n, d in (("CDNOW_sample.txt", "cdnow_sample"),
                                                  ("CDNOW_master.txt", "cdnow_master"))]
    for r in piped:
        print(json.dumps(r, indent=1, default=str))
    table = ["| data | customers scored | expected purchases, 39 weeks | MAE | RMSE | Spearman | aggregate error | "
             "beats BG/NBD on all four |", "|---|---|---|---|---|---|---|---|"]
    churn = ["| data | churn = no purchase in weeks 40-78 | ROC-AUC |", "|---|---|---|"]
    for r in piped:
        for label, m in ((f"served ({r['clv_card'].get('model')}, {r['clv_card'].get('tier')}; outlook "
                          f"{r['clv_card'].get('outlook_model')})", r["served"]),
                         ("lifetimes BG/NBD, same calibration data", r["lifetimes_bg_nbd"])):
            table.append(f"| {r['data']} | {r['scored']:,} of {r['customers']:,} | {label} | {m['mae']:.3f} | "
                         f"{m['rmse']:.3f} | {m['spearman']:.3f} | {m['aggregate_error']:+.1%} | "
                         f"{'yes' if r['beats_bg_nbd'] and label.startswith('served') else ''} |")
        for label, v in r["churn_roc_auc"].items():
            extra = f" ({r['churn_card'].get('model')})" if label.startswith("served churn") else ""
            churn.append(f"| {r['data']} | {label}{extra} | {v:.3f} |")
    print("\n".join(table + [""] + churn))
    results = [r for name in ("CDNOW_sample.txt", "CDNOW_master.txt") for r in run(name)]
    head = ("| data | customers | model | MAE | RMSE | Spearman | aggregate error | validation MAE (weeks 27-39) "
            "| fit s | parameters |")
    lines = [head, "|" + "---|" * 10]
    for r in results:
        lines.append(f"| {r['data']} | {r['customers']:,} | {r['model']} | {r['mae']:.3f} | {r['rmse']:.3f} | "
                     f"{r['spearman']:.3f} | {r['aggregate_error']:+.1%} | {r['validation_mae']:.3f} | "
                     f"{r['seconds']:.2f} | {r['params']} |")
    print("\n".join(lines))
    if record:
        notes = [f"- {r['data']}: CLV card: {'; '.join(r['clv_card'].get('notes') or [])}. Churn card: "
                 f"{'; '.join(r['churn_card'].get('notes') or [])}. Pipeline {r['seconds']} s, exit {r['exit']}."
                 for r in piped]
        append_results(machine_header("CLV and churn on CDNOW through the pipeline",
                                      "benchmarks/cdnow.py --record") +
                       ["(calibration weeks 1-39 landed, `crm-platform materialize` with the CDNOW sources mapping and "
                        "clv_horizons_days + 273; the score tables of 1997-09-30 against weeks 40-78 per customer)", "",
                        *table, "", *churn, "", *notes, "",
                        "Direct fits (calibration histories, served model chosen on weeks 27-39):", "", *lines])

if __name__ == "__main__":
    main(sys.argv[1:])
