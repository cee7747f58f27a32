"""A day's partition run twice on a large warehouse writes the same tables, row for row.

    .venv/bin/python benchmarks/rerun_identity.py 1000000 [--home DIR] [--record]

The test suite runs the refresh and a day twice on a tiny world (tests/test_recovery.py); what
differs between two runs only at scale (sums DuckDB's threads add in no fixed order, rows a
parallel scan returns in no fixed order) shows here. The benchmark home of the size
(``benchmarks/_work/<N>-daily`` as ``full_chain.py --daily`` leaves it, or ``--home``) is copied
without its landing files; ``daily_snapshots`` of its last day runs twice on the copy, and after
each run every warehouse table is summed up by the order-independent row hash of the recovery
tests (the columns that say when the platform did something left out). The tables that differ
are printed, and with ``--record`` appended to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _runner import append_results, machine_header  # noqa: E402
from tests.test_recovery import differences, run_job, snapshot  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("customers", type=int)
    ap.add_argument("--home", type=Path)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    source = args.home or HERE / "_work" / f"{args.customers}-daily"
    if not (source / "warehouse.duckdb").exists():
        raise SystemExit(f"{source} holds no warehouse: run benchmarks/full_chain.py {args.customers} --daily first")
    home = HERE / "_work" / f"rerun_{args.customers}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(source, home, ignore=shutil.ignore_patterns("landing", "deliveries", "truth"))
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0].isoformat()
    con.close()
    snaps, seconds = [], []
    for _ in range(2):
        start = time.time()
        run_job(home, "daily_snapshots", day)
        seconds.append(round(time.time() - start, 1))
        snaps.append(snapshot(home / "warehouse.duckdb"))
    diff = differences(*snaps)
    shutil.rmtree(home, ignore_errors=True)
    lines = [f"daily_snapshots {day} run twice at {args.customers:,} customers ({seconds[0]} s, {seconds[1]} s): "
             f"{len(snaps[0])} tables, {len(diff)} differ"] + [f"- {t}: rows, row hash {a} then {b}" for t, (a, b) in diff.items()]
    print("\n".join(lines))
    if args.record:
        append_results([*machine_header("Rerun identity", f"benchmarks/rerun_identity.py {args.customers} --record"),
                        "", *lines])
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
