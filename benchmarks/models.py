"""The four models on generated worlds: every candidate's test metrics, training time and memory.

    .venv/bin/python benchmarks/models.py 10000 100000            # prints the table
    .venv/bin/python benchmarks/models.py 10000 100000 --record   # and appends it to results.md
    .venv/bin/python benchmarks/models.py 10000 --variants         # and churn / CLV on cut-down copies

``--variants``: the same world's warehouse copied and cut down as another company's would be - the
timeline of the last 9 or 3 months only (``months9``, ``months3``), or without e-mail, support and
NPS events (``no_email_support_nps``) - and churn and CLV trained on it.

Each world is generated and run through the whole pipeline once (``crm-platform demo``, timed: the
demo's own figure) under ``benchmarks/_work/models/<customers>``; then each task trains in a fresh
process (its peak memory is its own) exactly as the ``ml/<task>_model`` asset does.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from _runner import append_results

HERE = Path(__file__).resolve().parent
TASKS = ("churn", "clv", "nbo", "leads")


def home(customers: int) -> Path:
    return HERE / "_work" / "models" / str(customers)


VARIANTS = {
    "months9": "DELETE FROM core.customer_events WHERE event_at < (SELECT max(known_at) - INTERVAL 270 DAY "
               "FROM core.customer_events)",
    "months3": "DELETE FROM core.customer_events WHERE event_at < (SELECT max(known_at) - INTERVAL 90 DAY "
               "FROM core.customer_events)",
    "no_email_support_nps": "DELETE FROM core.customer_events WHERE event_type LIKE 'email%' "
                            "OR event_type LIKE 'ticket%' OR event_type LIKE 'nps%'",
}


def variant_db(customers: int, variant: str) -> Path:
    """A copy of the world's warehouse with the variant's cut made (once)."""
    import shutil

    import duckdb

    db = home(customers) / "variants" / variant / "warehouse.duckdb"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(home(customers) / "warehouse.duckdb", db)
        con = duckdb.connect(str(db))
        con.execute(VARIANTS[variant])
        # feature partitions were computed from the whole timeline: the variant's are recomputed
        con.execute("DROP TABLE IF EXISTS features.customer_features")
        con.close()
    return db


def stage(task: str, customers: int, variant: str | None = None) -> None:
    import duckdb

    from crm_platform.features import snapshots as features
    from crm_platform.ml import NotEnoughData, churn, clv, leads, load_config, nbo

    module = {"churn": churn, "clv": clv, "nbo": nbo, "leads": leads}[task]
    db = variant_db(customers, variant) if variant else home(customers) / "warehouse.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    t = time.perf_counter()
    try:
        _, card = module.train(con, load_config(), features.load_config())
        out = {"model": card["model"], "main_metric": card["main_metric"], "metrics": card["metrics"],
               "train_examples": card["train_examples"], "test_examples": card["test_examples"],
               "test_cutoff": card["test_cutoff"], "notes": card.get("notes", []), "tier": card.get("tier"),
               "failed": card.get("failed_candidates", {})}
    except NotEnoughData as e:
        out = {"not_enough_data": str(e)}
    out.update(task=task, seconds=round(time.perf_counter() - t, 1),
               peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    print(json.dumps(out, default=float))


def world(customers: int) -> float:
    """Generate and run the whole pipeline (the demo) unless done before; its seconds."""
    h = home(customers)
    marker = h / "demo_seconds"
    if marker.exists():
        return float(marker.read_text())
    h.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CRM_PLATFORM_HOME": str(h), "DAGSTER_HOME": str(h / "dagster_home")}
    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "crm-platform"), "demo", "--customers", str(customers)],
                   env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - t
    marker.write_text(f"{seconds:.1f}")
    return seconds


def fmt(metrics: dict) -> str:
    keys = ("roc_auc", "pr_auc", "brier", "top_decile_lift", "mae", "rmse", "spearman", "aggregate_error",
            "normalized_gini", "mae_skill", "interval_coverage", "hit_rate_at_3", "hit_rate_at_1")
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--stage":
        return stage(argv[1], int(argv[2]), argv[3] if len(argv) > 3 else None)
    record = "--record" in argv
    sizes = [int(a) for a in argv if a.isdigit()] or [10000]
    if "--variants" in argv:
        return variants(sizes[0], record)
    lines = ["| customers | demo s | task | candidate | test metrics | train / test examples | train s | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        demo = world(n)
        for task in TASKS:
            res = subprocess.run([sys.executable, __file__, "--stage", task, str(n)], capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(res.stderr[-3000:])
            r = json.loads(res.stdout.strip().splitlines()[-1])
            if "not_enough_data" in r:
                lines.append(f"| {n:,} | {demo:.0f} | {task} | - | not enough data: {r['not_enough_data']} | | "
                             f"{r['seconds']} | {r['peak_mb']:,} |")
                continue
            for name, m in r["metrics"].items():
                served = " (served)" if name == r["model"] else ""
                lines.append(f"| {n:,} | {demo:.0f} | {task} | {name}{served} | {fmt(m)} | "
                             f"{r['train_examples']:,} / {r['test_examples']:,} | {r['seconds']} | {r['peak_mb']:,} |")
            print("\n".join(lines[-len(r['metrics']):]), flush=True)
    print("\n".join(lines))
    if record:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(["", f"## Models on generated data - {now} - this machine: {os.cpu_count()} cores, Python "
                            f"{platform.python_version()}",
                        f"command: `.venv/bin/python benchmarks/models.py {' '.join(map(str, sizes))} --record` "
                        "(demo s: generate + the whole pipeline incl. models, `crm-platform demo`)", "", *lines])


def variants(n: int, record: bool) -> None:
    world(n)
    lines = ["| world | task | served (tier) | served test metrics | notes / failed candidates | train s |",
             "|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        for task in ("churn", "clv"):
            res = subprocess.run([sys.executable, __file__, "--stage", task, str(n), variant], capture_output=True,
                                 text=True)
            if res.returncode:
                raise SystemExit(res.stderr[-3000:])
            r = json.loads(res.stdout.strip().splitlines()[-1])
            if "not_enough_data" in r:
                lines.append(f"| {n:,} {variant} | {task} | - | not enough data: {r['not_enough_data']} | | {r['seconds']} |")
            else:
                notes = "; ".join(r["notes"][:2]) + (f"; failed: {r['failed']}" if r["failed"] else "")
                lines.append(f"| {n:,} {variant} | {task} | {r['model']} ({r['tier'] or '-'}) | "
                             f"{fmt(r['metrics'][r['model']])} | {notes} | {r['seconds']} |")
            print(lines[-1], flush=True)
    print("\n".join(lines))
    if record:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(["", f"## Models on cut-down copies of a generated world - {now} - this machine: "
                            f"{os.cpu_count()} cores, Python {platform.python_version()}",
                        f"command: `.venv/bin/python benchmarks/models.py {n} --variants --record` (the world's "
                        "timeline cut to its last 9 or 3 months, or without e-mail, support and NPS events)", "",
                        *lines])


if __name__ == "__main__":
    main(sys.argv[1:])
