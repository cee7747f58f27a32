"""Customer 360 at scale: identity resolution, the timeline and one point-in-time feature snapshot.

    .venv/bin/python benchmarks/throughput.py 1000000            # builds the staged warehouse
    .venv/bin/python benchmarks/customer360.py 1000000 --record

Works on a copy of benchmarks/_work/<customers>/warehouse.duckdb. Each stage runs in its own
process (peak resident memory is its own), one after the other: resolve (match + cluster, needed
by the timeline), timeline (core.customer_events), snapshot (features.customer_features for the
last day with data). Target (issue 4): one snapshot for 1M customers / 30M events in at most 60 s.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from _runner import append_results, run_stage

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
STAGES = ("resolve", "timeline", "snapshot")


def _db(customers: int) -> Path:
    return WORK / str(customers) / "customer360.duckdb"


def stage(name: str, customers: int) -> dict:
    import duckdb

    from crm_platform.features import snapshots as features
    from crm_platform.customer360 import timeline
    from crm_platform.identity import resolve

    db = _db(customers)
    if name == "resolve":
        db.unlink(missing_ok=True)
        shutil.copy(WORK / str(customers) / "warehouse.duckdb", db)
    con = duckdb.connect(str(db))
    out: dict = {"stage": name, "customers": customers}
    t0 = time.perf_counter()
    if name == "resolve":
        from crm_platform.identity import derive

        spec = derive.spec_for(con)          # derived from the staged contacts, as the platform does
        resolve.match(con, spec)
        res = resolve.resolve(con, spec)
        out["rows"] = res.records
        out["detail"] = {"customers": res.customers}
    elif name == "timeline":
        counts = timeline.build(con)
        out["rows"] = counts["events"]
        out["detail"] = {"customers_with_events": counts["customers_with_events"],
                         "unattributed": counts["unattributed"]}
    else:
        day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]
        events = con.execute("SELECT count(*) FROM core.customer_events").fetchall()[0][0]
        t0 = time.perf_counter()                     # the snapshot alone
        out["rows"] = features.build_snapshot(con, features.load_config(), day)
        out["detail"] = {"snapshot_date": day.isoformat(), "events_in_timeline": events}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    con.close()
    return out


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--stage":
        print(json.dumps(stage(argv[1], int(argv[2]))))
        return
    record = "--record" in argv
    sizes = [int(a) for a in argv if a.isdigit()] or [100_000]
    lines = [f"\n## Customer 360 - {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC - this machine: "
             f"{os.cpu_count()} cores, Python {platform.python_version()}",
             f"command: `.venv/bin/python benchmarks/customer360.py {' '.join(map(str, sizes))} --record`", "",
             "| customers | stage | rows | seconds | peak RSS MB | detail |", "|---|---|---|---|---|---|"]
    for n in sizes:
        for name in STAGES:
            r = run_stage(__file__, name, n)
            lines.append(f"| {n:,} | {name} | {r['rows']:,} | {r['seconds']} | {r['peak_rss_mb']:,} | "
                         f"{json.dumps(r['detail'])} |")
            print(lines[-1], flush=True)
        _db(n).unlink(missing_ok=True)
    if record:
        append_results(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
