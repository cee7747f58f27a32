"""A day's partition, or the core refresh, run twice on a large warehouse writes the same tables,
row for row.

    .venv/bin/python benchmarks/rerun_identity.py 1000000 [--job refresh_core] [--home DIR] [--record]

The test suite runs the refresh and a day twice on a tiny world (tests/e2e/test_recovery.py); what
differs between two runs only at scale (sums DuckDB's threads add in no fixed order, rows a
parallel scan returns in no fixed order) shows here. The benchmark home of the size
(``benchmarks/_work/<N>-daily`` as ``full_chain.py --daily`` leaves it, or ``--home``) is copied
(its landing files and the generator's truth linked, not copied); ``daily_snapshots`` of its last
day (or ``refresh_core``, with no new file) runs twice on the copy. Before and after each run every
warehouse table is summed up by the order-independent row hash of the recovery tests (the columns
that say when the platform did something left out). The tables that differ between the two runs,
and between the warehouse as the benchmark left it and the first run, are printed, and with
``--record`` appended to benchmarks/results.md.
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
    ap.add_argument("--job", choices=("daily_snapshots", "refresh_core"), default="daily_snapshots")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    source = args.home or HERE / "_work" / f"{args.customers}-daily"
    if not (source / "warehouse.duckdb").exists():
        raise SystemExit(f"{source} holds no warehouse: run benchmarks/full_chain.py {args.customers} --daily first")
    home = HERE / "_work" / f"rerun_{args.customers}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(source, home, ignore=shutil.ignore_patterns("landing", "deliveries", "truth"))
    for linked in ("landing", "truth"):          # read, never written: the refresh finds its files known
        if (source / linked).exists():
            (home / linked).symlink_to((source / linked).resolve(), target_is_directory=True)
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0].isoformat()
    con.close()
    what = f"{args.job} {day}" if args.job == "daily_snapshots" else f"{args.job} with no new file"
    snaps, seconds = [snapshot(home / "warehouse.duckdb")], []
    for _ in range(2):
        start = time.time()
        run_job(home, args.job, *([day] if args.job == "daily_snapshots" else []))
        seconds.append(round(time.time() - start, 1))
        snaps.append(snapshot(home / "warehouse.duckdb"))
    before, diff = differences(snaps[0], snaps[1]), differences(snaps[1], snaps[2])
    shutil.rmtree(home, ignore_errors=True)
    lines = [f"{what} run twice at {args.customers:,} customers ({seconds[0]} s, {seconds[1]} s): "
             f"{len(snaps[1])} tables, {len(diff)} differ between the two runs"] + \
        [f"- {t}: rows, row hash {a} then {b}" for t, (a, b) in diff.items()] + \
        [f"the first run against the warehouse as the benchmark left it: {len(before)} tables differ"] + \
        [f"- {t}: rows, row hash {a} then {b}" for t, (a, b) in before.items()]
    print("\n".join(lines))
    if args.record:
        job = "" if args.job == "daily_snapshots" else f" --job {args.job}"
        append_results([*machine_header("Rerun identity", f"benchmarks/rerun_identity.py {args.customers}{job} --record"),
                        "", *lines])
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
