"""Identity resolution, the timeline and one point-in-time feature snapshot on DuckDB and on Spark,
in the same run, on the same staged warehouse.

    .venv/bin/python benchmarks/throughput.py 100000              # builds the staged warehouse
    .venv/bin/python benchmarks/engines.py 100000 --record
    .venv/bin/python benchmarks/engines.py 100000 --engines spark-standalone --record

Engines: ``duckdb`` (the embedded default), ``spark-local`` (``local[2]``: the driver's JVM does the
work on two cores) and ``spark-standalone`` (a master and two one-core workers started on this
machine for the run, executors in their own JVMs). The staged tables are handed to Spark as Parquet
(not timed: a deployment on Spark stages there). Each engine runs in its own process, one after the
other; peak memory is the largest sum of resident memory, sampled twice a second, of the stage's
process and every Spark JVM and Python worker on the machine (driver, executors, master, workers);
``python_peak_mb`` in the detail is the stage's Python process alone (on Spark the driver, which
holds the records and links of the components that break a guard: ``guarded_records``,
``guarded_links``; ``union_find_s`` is the part of the cluster step spent on them there).
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from _runner import append_results, machine_header, run_stage

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
ENGINES = ("duckdb", "spark-local", "spark-standalone")
STEPS = ("match", "cluster", "timeline", "snapshot")
SPARK = Path(importlib.util.find_spec("pyspark").origin).parent if importlib.util.find_spec("pyspark") else None


class PeakMemory:
    """The largest resident memory of this process plus every Spark process on the machine."""

    def __init__(self):
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now_mb() -> float:
        total = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if int(pid) != os.getpid() and b"org.apache.spark" not in cmd and b"pyspark" not in cmd:
                    continue
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except (OSError, ValueError):
                continue
        return total / 1024

    def _run(self):
        while not self._stop.wait(0.5):
            self.peak_mb = max(self.peak_mb, self.now_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.now_mb())


class StandaloneCluster:
    """A Spark standalone master and two one-core workers on localhost, for the length of a run."""

    def __init__(self, workers: int = 2, memory: str = "6g"):
        self.url = "spark://127.0.0.1:7077"
        self.workers, self.memory, self.procs = workers, memory, []

    def _start(self, *args: str) -> None:
        env = {**os.environ, "SPARK_HOME": str(SPARK), "PYSPARK_PYTHON": sys.executable}
        self.procs.append(subprocess.Popen([str(SPARK / "bin" / "spark-class"), *args], env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def __enter__(self):
        self._start("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "7077",
                    "--webui-port", "8090")
        time.sleep(5)
        for i in range(self.workers):
            self._start("org.apache.spark.deploy.worker.Worker", self.url, "--cores", "1", "--memory", self.memory,
                        "--webui-port", str(8091 + i), "--work-dir", str(WORK / "spark-worker" / str(i)))
        time.sleep(5)
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            p.wait(timeout=30)


def _folder(customers: int) -> Path:
    return WORK / str(customers)


def prepare(customers: int) -> Path:
    """The staged tables of throughput.py's warehouse as Parquet tables for Spark (once per size)."""
    import duckdb

    from crm_platform.core.spark import publish

    parquet = _folder(customers) / "engines-parquet"
    if not (parquet / "staging").exists():
        con = duckdb.connect(str(_folder(customers) / "warehouse.duckdb"), read_only=True)
        staged = [f"staging.{t}" for (t,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging'").fetchall()]
        publish(con, staged, parquet)
        con.close()
    return parquet


def _steps(engine) -> tuple[dict, dict]:
    from crm_platform.customer360 import timeline
    from crm_platform.features import snapshots as features
    from crm_platform.identity import derive, resolve

    seconds, detail = {}, {}
    t = time.perf_counter()
    spec = derive.spec_for(engine)
    m = resolve.match(engine, spec)
    seconds["match"], t = time.perf_counter() - t, time.perf_counter()
    r = resolve.resolve(engine, spec)
    seconds["cluster"], t = time.perf_counter() - t, time.perf_counter()
    counts = timeline.build(engine)
    seconds["timeline"], t = time.perf_counter() - t, time.perf_counter()
    day = engine.execute("SELECT CAST(max(known_at) AS DATE) FROM core.customer_events").fetchall()[0][0]
    rows = features.build_snapshot(engine, features.load_config(), day)
    seconds["snapshot"] = time.perf_counter() - t
    detail.update(records=r.records, customers=r.customers, candidate_pairs=m.candidate_pairs,
                  events=counts["events"], feature_rows=rows, guarded_records=r.guarded_records,
                  guarded_links=r.guarded_links, union_find_s=r.union_find_seconds)
    return seconds, detail


def stage(engine_name: str, customers: int) -> dict:
    out = {"engine": engine_name, "customers": customers}
    with PeakMemory() as mem:
        if engine_name == "duckdb":
            import duckdb

            db = _folder(customers) / "engines.duckdb"
            db.unlink(missing_ok=True)
            shutil.copy(_folder(customers) / "warehouse.duckdb", db)
            con = duckdb.connect(str(db))
            seconds, detail = _steps(con)
            con.close()
        else:
            from crm_platform.core.spark import SparkWarehouse, session

            work = _folder(customers) / f"engines-{engine_name}"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(prepare(customers), work)
            cluster = StandaloneCluster() if engine_name == "spark-standalone" else None
            if cluster:
                cluster.__enter__()
            try:
                master = cluster.url if cluster else "local[2]"
                conf = {"spark.executor.memory": "5g", "spark.executor.cores": "1"} if cluster else {}
                spark = session(master, memory="6g", partitions=8, conf=conf)
                warehouse = SparkWarehouse(spark, work)
                seconds, detail = _steps(warehouse)
                warehouse.close()
                spark.stop()
            finally:
                if cluster:
                    cluster.__exit__()
    out["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    out["total_seconds"] = round(sum(seconds.values()), 1)
    out["peak_mb"] = round(mem.peak_mb)
    # the Python process alone: on Spark, the driver that holds the guarded components' records and links
    detail["python_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["detail"] = detail
    return out


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--stage":
        print(json.dumps(stage(argv[1], int(argv[2]))))
        return
    record = "--record" in argv
    engines = argv[argv.index("--engines") + 1].split(",") if "--engines" in argv else list(ENGINES)
    sizes = [int(a) for a in argv if a.isdigit()] or [100_000]
    lines = machine_header("Engines: DuckDB and Spark", "benchmarks/engines.py " + " ".join(argv))
    lines += ["", "| customers | engine | match s | cluster s | timeline s | snapshot s | total s | x DuckDB | peak MB | detail |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        if any(e != "duckdb" for e in engines):
            prepare(n)
        base = None
        for e in engines:
            r = run_stage(__file__, e, n)
            base = r["total_seconds"] if e == "duckdb" else base
            ratio = f"{r['total_seconds'] / base:.1f}" if base else ""
            s = r["seconds"]
            lines.append(f"| {n:,} | {e} | {s['match']} | {s['cluster']} | {s['timeline']} | {s['snapshot']} | "
                         f"{r['total_seconds']} | {ratio} | {r['peak_mb']:,} | {json.dumps(r['detail'])} |")
            print(lines[-1], flush=True)
    if record:
        append_results(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
