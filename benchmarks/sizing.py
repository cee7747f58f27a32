"""The sizing table of docs/scale-out.md, derived from the engines' measurements in results.md.

    .venv/bin/python benchmarks/sizing.py            # prints the table (markdown)

For each engine and step it takes the latest ``engines.py`` figures at the two largest customer
counts measured and fits ``seconds = fixed + per_customer * customers`` through them (the generated
worlds hold 1.6 contact records and 36 events per customer, so customers stand for both). The
projection for a Spark cluster of C executor cores divides the per-customer part of the steps that
run on the executors by C/2 (they were measured on two cores: the standalone cluster's two one-core
workers, or local[2] where the standalone cluster lacks two sizes) and leaves the fixed part (statements,
jobs, the driver's planning) as measured. Of resolution's cluster step the part spent on the union-find of
the components that break a guard (``union_find_s``: collected to the driver and clustered there) is not
divided. Memory: DuckDB's peak and the Spark driver's Python process grow with the customers the
same way (fitted like the time); Spark's executors spill to disk, so their memory is a per-core
choice, not a projection.

What this cannot know: network shuffles between machines (the standalone cluster here ran on one
machine), skew in real data, and a cluster's storage. It is a lower bound on time for a cluster
and a statement of the driver's memory, not a promise.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.md"
STEPS = ("match", "cluster", "timeline", "snapshot")
ROW = re.compile(r"^\| ([\d,]+) \| (duckdb|spark-local|spark-standalone) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
                 r"([\d.]+) \| ([\d.]+) \| [\d.]* \| ([\d,]+) \| (\{.*\}) \|$")


def measurements(text: str) -> dict[tuple[str, int], dict]:
    """The latest engines row per (engine, customers) in the results file."""
    out = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            n, engine = int(m.group(1).replace(",", "")), m.group(2)
            out[(engine, n)] = {"seconds": dict(zip(STEPS, map(float, m.group(3, 4, 5, 6)))),
                                "peak_mb": int(m.group(8).replace(",", "")), "detail": json.loads(m.group(9))}
    return out


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """fixed, per-customer through the two largest sizes (fixed never below zero)."""
    (n1, y1), (n2, y2) = sorted(points)[-2:]
    slope = max((y2 - y1) / (n2 - n1), 0.0)
    return max(y2 - slope * n2, 0.0), slope


def project(rows: dict, engine: str, customers: int, cores: int = 2) -> dict:
    sizes = sorted(n for e, n in rows if e == engine)
    if len(sizes) < 2:
        raise SystemExit(f"not enough data: {engine} is measured at {len(sizes)} size(s), the fit needs two")
    seconds = 0.0
    for step in STEPS:
        points = [(n, rows[(engine, n)]["seconds"][step]) for n in sizes]
        driver = [(n, 0.0) for n in sizes]
        if step == "cluster" and engine != "duckdb":
            # the union-find of the guarded components, on the driver; rows from before it was
            # measured apart had all of the cluster step there
            driver = [(n, rows[(engine, n)]["detail"].get("union_find_s", y)) for n, y in points]
        speedup = 1 if engine == "duckdb" else cores / 2
        fixed, per = fit([(n, y - d) for (n, y), (_, d) in zip(points, driver)])
        d_fixed, d_per = fit(driver)
        seconds += fixed + per * customers / speedup + d_fixed + d_per * customers
    key = "peak_mb" if engine == "duckdb" else None
    mem_points = [(n, rows[(engine, n)][key] if key else rows[(engine, n)]["detail"].get("python_peak_mb"))
                  for n in sizes]
    mem_points = [(n, m) for n, m in mem_points if m is not None]
    memory = None
    if len(mem_points) >= 2:
        fixed, per = fit(mem_points)
        memory = fixed + per * customers
    return {"seconds": seconds, "memory_mb": memory, "sizes": sizes}


def table(rows: dict, targets=(1_000_000, 10_000_000, 100_000_000)) -> list[str]:
    base = max(n for _, n in rows)
    ratio = rows[("duckdb", base)]["detail"]
    per_record = ratio["records"] / base
    per_event = ratio["events"] / base
    lines = ["| customers | records | events | engine | executor cores | memory | expected time |",
             "|---|---|---|---|---|---|---|"]

    def fmt_time(s: float) -> str:
        return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 120 else f"{s:.0f} s"

    def fmt_mem(mb: float | None) -> str:
        return "-" if mb is None else f"{mb / 1024:.0f} GB" if mb >= 10 * 1024 else f"{mb / 1024:.1f} GB"

    # executors in their own JVMs, as on a cluster, where measured at two sizes; else local mode
    spark = "spark-standalone" if sum(e == "spark-standalone" for e, _ in rows) >= 2 else "spark-local"
    for n in targets:
        head = f"| {n:,} | {n * per_record:,.0f} | {n * per_event:,.0f}"
        d = project(rows, "duckdb", n)
        lines.append(f"{head} | DuckDB, one machine | 2 | {fmt_mem(d['memory_mb'])} | {fmt_time(d['seconds'])} |")
        for cores in (2, 16, 64):
            s = project(rows, spark, n, cores)
            lines.append(f"{head} | Spark | {cores} | driver {fmt_mem(s['memory_mb'])}, executors 5 GB per core "
                         f"| {fmt_time(s['seconds'])} |")
    return lines


def main(argv: list[str]) -> None:
    rows = measurements(RESULTS.read_text())
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main(sys.argv[1:])
