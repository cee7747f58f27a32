"""Crash recovery and reruns: the core refresh killed with SIGKILL in the middle of ingestion and in
the middle of identity resolution leaves no half-written table, and running it again gives exactly
the tables an uninterrupted run gives; running it (or a day's partition) twice changes nothing.
Tables are compared row by row through an order-independent hash of every row, leaving out only the
columns that record when the platform did something (load and resolution times)."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb

from tests.conftest import ROOT, run_python

# when the platform did something, not what the data says
RUN_TIME = {"_loaded_at", "loaded_at", "quarantined_at", "resolved_at", "changed_at", "minted_at", "retired_at",
            "measured_at", "received_at", "at", "_built_at", "built_at", "trained_at", "resolved_through",
            "loaded_through", "source_generation"}

DRIVER = """
import sys
from crm_platform.cli import job_runner
result = job_runner(log_level="DEBUG")(sys.argv[1], **({"partition_key": sys.argv[2]} if len(sys.argv) > 2 else {}))
sys.exit(0 if result.success else 1)
"""


def _env(home: Path) -> dict:
    return {**os.environ, "CRM_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}


def run_job(home: Path, job: str, *args: str) -> None:
    out = subprocess.run([sys.executable, "-c", DRIVER, job, *args], cwd=ROOT, env=_env(home), capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]


def kill_during(home: Path, job: str, step: str, after: float, timeout: float = 300) -> None:
    """Start ``job`` and SIGKILL it ``after`` seconds into ``step``; fails if the job ended first or
    never reached the step (e.g. waiting for a slot a dead run still holds)."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, job], cwd=ROOT, env=_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    marker = f'STEP_START - Started execution of step "{step}"'
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    reached = False
    try:
        for line in proc.stderr:
            if marker in line:
                reached = True
                time.sleep(after)
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=600)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    assert reached, f"{job} never reached {step} within {timeout} s"
    assert proc.returncode == -signal.SIGKILL, f"{job} ended ({proc.returncode}) before it could be killed in {step}"


def snapshot(db: Path) -> dict[str, tuple[int, int]]:
    """Rows and the sum of every row's hash (run-time columns left out) of every warehouse table."""
    con = duckdb.connect(str(db))          # read-write: replays what the log of a killed writer holds
    try:
        out = {}
        for schema, table in con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary "
                                         "ORDER BY 1, 2").fetchall():
            cols = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND "
                                              "table_name = ? ORDER BY column_index", [schema, table]).fetchall()
                    if c not in RUN_TIME]
            row = ", ".join(f'"{c}"' for c in cols)
            out[f"{schema}.{table}"] = tuple(con.execute(
                f"SELECT count(*), coalesce(sum(hash(struct_pack({row}))::HUGEINT), 0) FROM {schema}.{table}"
            ).fetchall()[0])
        return out
    finally:
        con.close()


def differences(a: dict, b: dict) -> dict:
    return {t: (a.get(t), b.get(t)) for t in sorted(set(a) | set(b)) if a.get(t) != b.get(t)}


def assert_loads_are_whole(db: Path) -> None:
    """Every file the manifest calls loaded has exactly its rows in its raw table; no raw row comes
    from a file the manifest does not know."""
    con = duckdb.connect(str(db))
    try:
        for (dataset,) in con.execute("SELECT DISTINCT dataset FROM raw.ingest_manifest").fetchall():
            bad = con.execute(f"""
                WITH m AS (SELECT source_file, version AS file_version, rows_loaded FROM raw.ingest_manifest
                           WHERE dataset = ? AND status = 'loaded'),
                     r AS (SELECT _source_file AS source_file, _file_version AS file_version, count(*) AS n
                           FROM raw.{dataset} GROUP BY ALL)
                SELECT * FROM m FULL JOIN r USING (source_file, file_version)
                WHERE coalesce(m.rows_loaded, -1) <> coalesce(r.n, 0)""", [dataset]).fetchall()
            assert not bad, (dataset, bad)
    finally:
        con.close()


CORE = ("raw", "staging", "identity", "core")


def _copy(run_home: Path, tmp: Path, name: str, landing_only: bool = False) -> Path:
    home = tmp / name
    if landing_only:
        shutil.copytree(run_home / "landing", home / "landing")
        shutil.copytree(run_home / "truth", home / "truth")
    else:
        shutil.copytree(run_home, home)
    return home


def _core(tables: dict) -> dict:
    """The tables the core refresh writes."""
    return {t: v for t, v in tables.items() if t.split(".")[0] in CORE}


def test_a_refresh_killed_in_ingestion_and_in_identity_recovers_to_the_uninterrupted_tables(tiny_run, tmp_path):
    expected = _core(snapshot(_copy(tiny_run, tmp_path, "reference") / "warehouse.duckdb"))
    assert expected["core.customers"][0] > 100

    home = _copy(tiny_run, tmp_path, "crashed", landing_only=True)
    kill_during(home, "refresh_core", "raw__web_events", after=0.15)
    assert_loads_are_whole(home / "warehouse.duckdb")
    kill_during(home, "refresh_core", "resolve_customers", after=0.3)   # clustering pairs, minting ids
    assert_loads_are_whole(home / "warehouse.duckdb")
    half = snapshot(home / "warehouse.duckdb")
    assert "core.customers" not in half or half["core.customers"] == expected["core.customers"]
    run_job(home, "refresh_core")
    assert differences(expected, _core(snapshot(home / "warehouse.duckdb"))) == {}


def test_the_refresh_and_a_day_run_twice_change_nothing(tiny_run, tmp_path):
    """The tiny world ran the refresh and its last day once; running each again changes no table."""
    home = _copy(tiny_run, tmp_path, "twice")
    once = snapshot(home / "warehouse.duckdb")
    run_job(home, "refresh_core")
    assert differences(once, snapshot(home / "warehouse.duckdb")) == {}
    last = run_python(home, textwrap.dedent("""
        from crm_platform.cli import latest_data_day
        print(latest_data_day())""")).strip()
    run_job(home, "daily_snapshots", last)
    assert differences(once, snapshot(home / "warehouse.duckdb")) == {}
