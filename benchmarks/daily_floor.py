"""What a day's snapshot costs at the least while every customer is scored every day: the feature
snapshot and the three models' scoring of the day, each on its own, set against the full and the
daily refresh of the same benchmark run.

    .venv/bin/python benchmarks/daily_floor.py 1000000 [--record]

Reads the warehouse and the champion models that ``full_chain.py --daily`` left in
``benchmarks/_work/<N>-daily`` (read-only) and that run's figures (``daily_<N>.json``), and measures
on the daily refresh's snapshot day: the feature snapshot query read into a frame; for churn, CLV
and next-best-offer the scoring frame (the snapshot's features, for next-best-offer with every
candidate category) and the scoring; for churn and next-best-offer the model's own predictions
alone. These are work per customer that no incremental ingestion, matching or timeline can save.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _runner import append_results, machine_header  # noqa: E402


def measure(home: Path, day: date) -> list[tuple[str, int, float]]:
    """(what, rows, seconds) of each measured piece."""
    import duckdb

    from assets.lib.config import FEATURES, MODELS as CONFIG
    from crm_platform.core import warehouse
    from crm_platform.features.snapshots import snapshot_sql
    from crm_platform.ml import churn, clv, nbo
    from crm_platform.ml.registry import Registry
    from crm_platform.ml.training import design

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    registry = Registry(home / "models")
    out = []

    def timed(what, fn):
        t = time.perf_counter()
        result = fn()
        out.append((what, len(result), time.perf_counter() - t))
        return result

    timed("feature snapshot: query into a frame", lambda: warehouse.frame(con, snapshot_sql(FEATURES, day)))
    for task in (churn, clv, nbo):
        model, card = registry.load(task.TASK, registry.champion(task.TASK))
        frame = timed(f"{task.TASK}: scoring frame", lambda: task.scoring_frame(con, FEATURES, day, model=model))
        timed(f"{task.TASK}: scoring", lambda: task.score(model, card, frame, CONFIG))
        if task is churn:
            timed("churn: the model's predictions alone",
                  lambda: model.predict_proba(design(frame, card["features"]))[:, 1])
        if task is nbo:
            timed("next_best_offer: the model's predictions alone",
                  lambda: nbo.predictions(model, frame, card["features"]))
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("customers", type=int)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    home = HERE / "_work" / f"{args.customers}-daily"
    run = json.loads((HERE / "_work" / f"daily_{args.customers}.json").read_text())
    day = date.fromisoformat(run["daily"]["jobs"]["daily_snapshots"]["partition_key"])
    warnings.filterwarnings("ignore")
    rows = measure(home, day)
    full, daily = run["seconds"], run["daily"]["seconds"]
    total = sum(s for what, _, s in rows if "alone" not in what)
    lines = machine_header("Daily snapshot floor", f"benchmarks/daily_floor.py {args.customers}" + (
        " --record" if args.record else "")) + [
        "", f"Warehouse and models of the daily benchmark at {args.customers:,} customers; snapshot day {day}; "
        f"that run: full refresh {full:.1f} s, daily refresh {daily:.1f} s ({100 * daily / full:.1f} %), "
        f"10 % of the full refresh = {full / 10:.1f} s.", "",
        "| piece | rows | seconds |", "|---|---|---|",
        *(f"| {what} | {n:,} | {s:.1f} |" for what, n, s in rows),
        f"| **feature snapshot and the three scorings** | | **{total:.1f}** |", "",
        f"The day's snapshot steps of that run: {run['daily']['jobs']['daily_snapshots']['seconds']:.1f} s; "
        f"its core refresh: {run['daily']['jobs']['refresh_core']['seconds']:.1f} s."]
    print("\n".join(lines))
    if args.record:
        append_results(lines)


if __name__ == "__main__":
    main()
