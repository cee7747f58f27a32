"""The whole chain at N generated customers, run the way the schedules run it, with the time and
peak memory of every step and of every stage (asset group).

    .venv/bin/python benchmarks/full_chain.py 10000 100000 1000000 [--record] [--reuse] [--again] [--daily]

A full refresh is: ``refresh_core`` (ingestion, staging, identity resolution, customer 360,
governance), ``retrain_models`` and ``daily_snapshots`` of the last day with data (features,
scores, segments, KPIs, alerts, dashboard), on an empty warehouse and Dagster instance. The
landing files are generated once per size under ``benchmarks/_work/<N>`` (seed 42) and reused;
generation is not part of the refresh. Each size runs in its own process; its memory is sampled
every 0.2 s and attributed to the step running at that moment (the in-process executor runs one
step at a time). With ``--record`` the tables are appended to benchmarks/results.md. Each size's
result is kept in ``benchmarks/_work/full_chain_<N>.json``; ``--reuse`` takes it from there instead
of running that size again (to put sizes measured one after another into one table). ``--again``
then runs ``refresh_core`` and the last day once more with no new landing file.

``--daily`` measures the daily refresh instead: the world is generated with its last
DELIVERY_DAYS days held back as a delivery (about 1 % of the rows; under
``benchmarks/_work/<N>-daily``), the full refresh runs on the history, the delivery lands, and
``refresh_core`` plus ``daily_snapshots`` of the new last day run again - the daily refresh, set
against the full refresh of the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from _runner import append_results, machine_header, run_stage

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
KEEP = {"landing", "truth", "deliveries"}
JOBS = ("refresh_core", "retrain_models", "daily_snapshots")
DAILY_JOBS = ("refresh_core", "daily_snapshots")
DELIVERY_DAYS = 11


class RssSampler(threading.Thread):
    """Resident memory of this process every ``interval`` seconds (DuckDB runs in it too)."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        self.interval, self.samples, self.done = interval, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.time(), rss_mb()))
            self.done.wait(self.interval)

    def peak(self, start: float, end: float) -> int:
        inside = [m for t, m in self.samples if start <= t <= end + self.interval]
        return max(inside, default=0)


def rss_mb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def fresh_home(customers: int, daily: bool = False) -> Path:
    """The size's landing files (generated on first use) and nothing else; for ``daily``, the
    history without the delivery."""
    from crm_platform.demo import GeneratorConfig, generate

    home = WORK / (f"{customers}-daily" if daily else str(customers))
    if not (home / "landing").exists():
        generate(GeneratorConfig(customers=customers, seed=42, delivery_days=DELIVERY_DAYS if daily else 0), home)
    for p in home.iterdir():
        if p.name not in KEEP:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for d in (home / "deliveries").glob("*"):           # a delivery landed by an earlier run
        for f in d.rglob("*"):
            if f.is_file():
                (home / "landing" / f.relative_to(d)).unlink(missing_ok=True)
    return home


def step_times(instance, run_id: str) -> list[tuple[str, float, float]]:
    """(step key, start, end) of every step of a run, from its event log."""
    import dagster as dg

    started, out = {}, []
    for rec in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS,
                                                   dg.DagsterEventType.STEP_FAILURE}):
        ev = rec.dagster_event
        if ev.event_type == dg.DagsterEventType.STEP_START:
            started[rec.step_key] = rec.timestamp
        else:
            out.append((rec.step_key, started.pop(rec.step_key, rec.timestamp), rec.timestamp))
    return out


def run_jobs(names, sampler: RssSampler, customers: int) -> tuple[dict, list[dict]]:
    """Run the jobs one after another (the daily one for the last day with data); seconds and
    peak memory per job and per step."""
    import dagster as dg

    from crm_platform.cli import job_runner, latest_data_day

    run = job_runner()
    jobs, steps = {}, []
    for job in names:
        kw = {"partition_key": latest_data_day()} if job == "daily_snapshots" else {}
        t0 = time.time()
        result = run(job, **kw)
        jobs[job] = {"seconds": round(time.time() - t0, 1), "peak_rss_mb": sampler.peak(t0, time.time()),
                     "success": result.success, **kw}
        if not result.success:
            raise SystemExit(f"{job} failed at {customers}")
        for key, start, end in step_times(dg.DagsterInstance.get(), result.run_id):
            steps.append({"job": job, "step": key, "seconds": round(end - start, 2),
                          "peak_rss_mb": sampler.peak(start, end)})
    return jobs, steps


def stage(customers: int, again: bool = False, daily: bool = False) -> dict:
    home = fresh_home(customers, daily)
    os.environ["CRM_PLATFORM_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    from crm_platform.cli import job_runner, latest_data_day

    run = job_runner()
    sampler = RssSampler()
    sampler.start()
    jobs, steps = run_jobs(JOBS, sampler, customers)
    day = {}
    if daily:
        from crm_platform.demo import GeneratorConfig, deliver

        landed = deliver(home, GeneratorConfig().end_date)
        day_jobs, day_steps = run_jobs(DAILY_JOBS, sampler, customers)
        groups = step_groups()
        for s in day_steps:
            s["group"] = groups.get(s["step"], s["step"])
        day = {"jobs": day_jobs, "steps": day_steps, "files": len(landed),
               "bytes": sum(f.stat().st_size for f in landed),
               "seconds": round(sum(j["seconds"] for j in day_jobs.values()), 1),
               "peak_rss_mb": max(j["peak_rss_mb"] for j in day_jobs.values())}
    rerun = {}
    if again:
        # the refresh and the day once more with no new landing file: what a day without new data
        # costs today (the incremental refresh is measured against this)
        for job in ("refresh_core", "daily_snapshots"):
            kw = {"partition_key": latest_data_day()} if job == "daily_snapshots" else {}
            t0 = time.time()
            result = run(job, **kw)
            rerun[job] = {"seconds": round(time.time() - t0, 1), "success": result.success}
    sampler.done.set()
    groups = step_groups()
    for s in steps:
        s["group"] = groups.get(s["step"], s["step"])
    from crm_platform.core import settings, warehouse

    con = warehouse.connect(settings.paths().warehouse, read_only=True)
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in (
        "staging.contacts", "staging.orders", "core.customers", "core.customer_events")}
    con.close()
    return {"customers": customers, "jobs": jobs, "steps": steps, "rows": counts, "rerun_no_new_data": rerun,
            "seconds": round(sum(j["seconds"] for j in jobs.values()), 1),
            "peak_rss_mb": max(j["peak_rss_mb"] for j in jobs.values()), "daily": day}


def step_groups() -> dict[str, str]:
    """The asset group (stage) of every step: an asset's op, or a check's op by its asset."""
    from crm_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    out = {}
    for node in graph.asset_nodes:
        out.setdefault(node.assets_def.node_def.name, node.group_name)
    for check in defs.asset_checks or []:
        key = next(iter(check.check_keys)).asset_key
        out.setdefault(check.node_def.name, graph.get(key).group_name)
    return out


def by_stage(steps: list[dict]) -> dict[str, dict]:
    """Seconds and peak memory per stage (asset group)."""
    out = defaultdict(lambda: {"seconds": 0.0, "peak_rss_mb": 0, "steps": 0})
    for s in steps:
        o = out[s["group"]]
        o["seconds"] += s["seconds"]
        o["peak_rss_mb"] = max(o["peak_rss_mb"], s["peak_rss_mb"])
        o["steps"] += 1
    return dict(out)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--stage":
        print(json.dumps(stage(int(argv[2]), "--again" in argv, "--daily" in argv)))
        return
    if "--daily" in argv:
        return main_daily(argv)
    record, reuse = "--record" in argv, "--reuse" in argv
    sizes = [int(a) for a in argv if not a.startswith("--")] or [10_000]
    runs = {}
    for n in sizes:
        saved = WORK / f"full_chain_{n}.json"
        if reuse and saved.exists():
            runs[n] = json.loads(saved.read_text())
        else:
            runs[n] = run_stage(__file__, "chain", n, ["--again"] if "--again" in argv else [])
            saved.write_text(json.dumps(runs[n], indent=1))
        print(f"{n:,}: {runs[n]['seconds']} s, peak {runs[n]['peak_rss_mb']:,} MB, {runs[n]['jobs']}", flush=True)
    stages = {n: by_stage(r["steps"]) for n, r in runs.items()}
    order = sorted({s for st in stages.values() for s in st}, key=lambda s: -stages[sizes[-1]].get(s, {}).get("seconds", 0))
    lines = machine_header("Full chain, per stage", f"benchmarks/full_chain.py {' '.join(argv)}")
    lines += ["", "| stage | " + " | ".join(f"{n:,} s" for n in sizes) + " | " + " | ".join(
        f"{n:,} peak MB" for n in sizes) + " |", "|---|" + "---|" * (2 * len(sizes))]
    for s in order:
        lines.append(f"| {s} | " + " | ".join(f"{stages[n].get(s, {}).get('seconds', 0):.1f}" for n in sizes) + " | "
                     + " | ".join(f"{stages[n].get(s, {}).get('peak_rss_mb', 0):,}" for n in sizes) + " |")
    lines.append("| **whole refresh** | " + " | ".join(f"**{runs[n]['seconds']}**" for n in sizes) + " | "
                 + " | ".join(f"**{runs[n]['peak_rss_mb']:,}**" for n in sizes) + " |")
    lines += ["", "Per job (seconds / peak MB): " + "; ".join(
        f"{n:,}: " + ", ".join(f"{j} {v['seconds']} s / {v['peak_rss_mb']:,} MB" for j, v in runs[n]["jobs"].items())
        for n in sizes), "", "Rows: " + "; ".join(f"{n:,}: {json.dumps(runs[n]['rows'])}" for n in sizes), "",
        *([("Refresh and last day again with no new landing file (seconds): " + "; ".join(
            f"{n:,}: " + ", ".join(f"{j} {v['seconds']}" for j, v in runs[n]["rerun_no_new_data"].items())
            for n in sizes if runs[n].get("rerun_no_new_data"))), ""] if any(
            runs[n].get("rerun_no_new_data") for n in sizes) else []),
        f"Slowest steps at {sizes[-1]:,}:", "", "| step | seconds | peak MB |", "|---|---|---|"]
    for s in sorted(runs[sizes[-1]]["steps"], key=lambda s: -s["seconds"])[:15]:
        lines.append(f"| {s['step']} | {s['seconds']} | {s['peak_rss_mb']:,} |")
    print("\n".join(lines))
    if record:
        append_results(lines)


def main_daily(argv: list[str]) -> None:
    """The daily refresh against the full refresh of the same run, per size."""
    sizes = [int(a) for a in argv if not a.startswith("--")] or [10_000]
    runs = {}
    for n in sizes:
        saved = WORK / f"daily_{n}.json"
        if "--reuse" in argv and saved.exists():
            runs[n] = json.loads(saved.read_text())
        else:
            runs[n] = run_stage(__file__, "chain", n, ["--daily"])
            saved.write_text(json.dumps(runs[n], indent=1))
        r = runs[n]
        print(f"{n:,}: full {r['seconds']} s, daily {r['daily']['seconds']} s", flush=True)
    lines = machine_header("Daily refresh against the full refresh", f"benchmarks/full_chain.py {' '.join(argv)}")
    lines += ["", f"History: the generated world without its last {DELIVERY_DAYS} days (seed 42); full refresh = "
              f"{' + '.join(JOBS)} on an empty warehouse; then the delivery of those days lands (about 1 % of the "
              f"rows) and the daily refresh = {' + '.join(DAILY_JOBS)} of the new last day runs.", "",
              "| customers | delivery files | delivery MB | full refresh s | daily refresh s | daily / full | "
              "full peak MB | daily peak MB |", "|---|---|---|---|---|---|---|---|"]
    for n, r in runs.items():
        d = r["daily"]
        lines.append(f"| {n:,} | {d['files']} | {d['bytes'] / 2**20:.1f} | {r['seconds']} | {d['seconds']} | "
                     f"{d['seconds'] / r['seconds']:.1%} | {r['peak_rss_mb']:,} | {d['peak_rss_mb']:,} |")
    lines += ["", "Daily refresh per job (seconds): " + "; ".join(
        f"{n:,}: " + ", ".join(f"{j} {v['seconds']}" for j, v in r["daily"]["jobs"].items()) for n, r in runs.items()),
        "", f"Daily refresh per stage at {sizes[-1]:,} (seconds, full refresh of the same run beside):", "",
        "| stage | daily s | full s |", "|---|---|---|"]
    daily_stages, full_stages = by_stage(runs[sizes[-1]]["daily"]["steps"]), by_stage(
        [{**s, "group": step_groups().get(s["step"], s["step"])} for s in runs[sizes[-1]]["steps"]])
    for st, v in sorted(daily_stages.items(), key=lambda kv: -kv[1]["seconds"]):
        lines.append(f"| {st} | {v['seconds']:.1f} | {full_stages.get(st, {}).get('seconds', 0):.1f} |")
    lines += ["", f"Slowest daily steps at {sizes[-1]:,}:", "", "| step | seconds | peak MB |", "|---|---|---|"]
    for s in sorted(runs[sizes[-1]]["daily"]["steps"], key=lambda s: -s["seconds"])[:15]:
        lines.append(f"| {s['step']} | {s['seconds']} | {s['peak_rss_mb']:,} |")
    print("\n".join(lines))
    if "--record" in argv:
        append_results(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
