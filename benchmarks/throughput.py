"""Generator and ingestion+staging throughput, with peak memory, at a given number of customers.

    .venv/bin/python benchmarks/throughput.py 100000 1000000

Each stage runs in its own process so its peak resident memory is its own. Results are appended
to benchmarks/results.md with the date, the machine and the command.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from _runner import append_results, machine_header, run_stage

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"


def stage(name: str, customers: int) -> dict:
    import duckdb

    from crm_platform.staging import tables as staging
    from crm_platform.demo import GeneratorConfig, generate
    from crm_platform.ingest.load import ingest_dataset
    from crm_platform.core.settings import DEFAULT_SOURCES
    from crm_platform.ingest.sources import load_sources

    home = WORK / str(customers)
    t0 = time.perf_counter()
    out: dict = {"stage": name, "customers": customers}
    if name == "generate":
        summary = generate(GeneratorConfig(customers=customers, seed=42), home)
        out["rows"] = sum(v for k, v in summary.rows.items() if not k.startswith("truth"))
        out["contact_records"] = sum(summary.rows[k] for k in (
            "shop_customers", "newsletter_subscribers", "support_requesters", "sales_leads",
            "nps_responses"))
    else:
        db = home / "warehouse.duckdb"
        for p in (db, home / "warehouse.duckdb.wal"):
            p.unlink(missing_ok=True)
        cfg = load_sources(DEFAULT_SOURCES)
        con = duckdb.connect(str(db))
        times = {}
        loaded = 0
        for ds in cfg.datasets:
            t = time.perf_counter()
            loaded += ingest_dataset(con, ds, home / "landing", home / "quarantine").rows_loaded
            times[f"ingest {ds.key}"] = round(time.perf_counter() - t, 1)
        for e in staging.STAGING_ENTITIES:
            t = time.perf_counter()
            staging.build(con, cfg, e)
            times[f"staging {e}"] = round(time.perf_counter() - t, 1)
        out["rows"] = loaded
        out["contacts"] = con.execute("SELECT count(*) FROM staging.contacts").fetchall()[0][0]
        out["slowest_steps"] = dict(sorted(times.items(), key=lambda kv: -kv[1])[:6])
        con.close()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["rows_per_second"] = int(out["rows"] / out["seconds"])
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--stage":
        print(json.dumps(stage(argv[1], int(argv[2]))))
        return
    sizes = [int(a) for a in argv] or [100_000]
    lines = machine_header("Generator and ingestion+staging", f"benchmarks/throughput.py {' '.join(map(str, sizes))}") + [
             "", "| customers | stage | rows | seconds | rows/s | peak RSS MB | detail |", "|---|---|---|---|---|---|---|"]
    for n in sizes:
        for name in ("generate", "ingest+staging"):
            r = run_stage(__file__, name, n)
            detail = {k: v for k, v in r.items() if k in ("contact_records", "contacts", "slowest_steps")}
            lines.append(f"| {n:,} | {name} | {r['rows']:,} | {r['seconds']} | {r['rows_per_second']:,} | "
                         f"{r['peak_rss_mb']:,} | {json.dumps(detail)} |")
            print(lines[-1], flush=True)
    append_results(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
