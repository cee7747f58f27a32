"""CLV on CDNOW: BG/NBD, Pareto/NBD and the platform's served choice on a real transaction log.

    .venv/bin/pip install -c requirements.lock -e '.[bench]'     # lifetimes ships the data files
    .venv/bin/python benchmarks/cdnow.py            # sample (2,357 customers) and full log (23,570)
    .venv/bin/python benchmarks/cdnow.py --record   # and append the table to benchmarks/results.md

The files ``CDNOW_sample.txt`` and ``CDNOW_master.txt`` are read from the ``lifetimes`` package
folder (not imported: its loader needs an old setuptools). Each is written to a landing folder as
CSV and ingested through the platform's declarative source mapping
(``benchmarks/specs/cdnow_sources.yaml``) into ``staging.orders``; purchase histories come from the
same SQL as the CLV model (``crm_platform.ml.clv.history_sql``: same-day purchases merged).
Calibration: 1997-01-01 to 1997-09-30 (weeks 1–39); holdout: to 1998-06-30 (weeks 40–78). Scored
per customer on holdout repeat purchases: MAE, RMSE, Spearman rank correlation and the aggregate
error (Σ predicted / Σ actual − 1).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import platform
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
from _runner import append_results

from crm_platform import staging
from crm_platform.ingest import ingest_dataset
from crm_platform.ml.btyd import BetaGeo, ParetoNBD
from crm_platform.ml.clv import history_sql, regression_metrics
from crm_platform.sources import load_sources

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


def main(argv: list[str]) -> None:
    record = "--record" in argv
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
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(["", f"## CLV on CDNOW - {now} - this machine: {os.cpu_count()} cores, Python "
                            f"{platform.python_version()}",
                        "command: `.venv/bin/python benchmarks/cdnow.py --record` (calibration weeks 1-39 to "
                        "1997-09-30, holdout weeks 40-78 to 1998-06-30; repeat purchases per customer, same-day "
                        "purchases merged; ingested through benchmarks/specs/cdnow_sources.yaml)", "",
                        *lines])

if __name__ == "__main__":
    main(sys.argv[1:])
