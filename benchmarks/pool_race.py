"""Why the project keeps its own event log storage (crm_platform/cli/storage.py): four processes
claim the one ``duckdb`` pool slot at the same instant, ten rounds, on Dagster's stock SQLite
storage and on the project's, and the slots given per round are counted (more than one: two runs'
steps would write the warehouse together).

    .venv/bin/python benchmarks/pool_race.py
"""
import multiprocessing
import tempfile
import time
from pathlib import Path
import dagster as dg

STOCK = """telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
"""

def claim(home, start, run, q):
    storage = dg.DagsterInstance.from_config(home).event_log_storage
    while time.time() < start:
        pass
    q.put(storage.claim_concurrency_slot("duckdb", run, "step").is_claimed)

def rounds(home, n=10):
    ctx = multiprocessing.get_context("fork")
    out = []
    for r in range(n):
        q, start = ctx.Queue(), time.time() + 1.0
        ps = [ctx.Process(target=claim, args=(home, start, f"r{r}-{i}", q)) for i in range(4)]
        [p.start() for p in ps]; [p.join(60) for p in ps]
        got = sum(q.get() for _ in ps)
        out.append(got)
        storage = dg.DagsterInstance.from_config(home).event_log_storage
        for i in range(4):
            storage.free_concurrency_slots_for_run(f"r{r}-{i}")
    return out

if __name__ == "__main__":
    from crm_platform.cli import prepare_dagster_home
    stock = Path(tempfile.mkdtemp()); (stock / "dagster.yaml").write_text(STOCK)
    with dg.DagsterInstance.from_config(str(stock)) as inst:
        inst.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
    project = Path(tempfile.mkdtemp()); prepare_dagster_home(project)
    for name, home in (("stock SQLite storage", stock), ("project storage", project)):
        got = rounds(str(home))
        print(f"{name}: slots given per round of 4 simultaneous claims: {got}; rounds with more than one: {sum(g > 1 for g in got)}/10")
