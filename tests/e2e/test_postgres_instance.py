"""The Dagster instance on PostgreSQL (DAGSTER_PG_*): run, event log and schedule storage in a
server of the tests' own, shared by separate processes, with the ``duckdb`` pool holding across them."""

import multiprocessing
import shutil
import time

import pytest

from tests.conftest import cli
from tests.servers import local_postgres, postgres_missing

pytestmark = [pytest.mark.slow, pytest.mark.skipif(postgres_missing() is not None, reason=str(postgres_missing()))]


@pytest.fixture
def on_postgres(monkeypatch):
    """A server of the test's own (a few seconds to start), its DAGSTER_PG_* set."""
    with local_postgres() as env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield env


def _rows(env, sql):
    import psycopg2

    con = psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=int(env["DAGSTER_PG_PORT"]),
                           user=env["DAGSTER_PG_USERNAME"], dbname=env["DAGSTER_PG_DB"])
    try:
        cur = con.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        con.close()


def test_a_materialization_from_the_command_line_is_recorded_in_postgres(world, on_postgres, tmp_path):
    import dagster as dg

    home = tmp_path / "home"
    shutil.copytree(world / "landing", home / "landing")
    shutil.copytree(world / "truth", home / "truth")
    out = cli(home, "materialize", "--select", "*core/customers")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    dagster_home = home / "dagster_home"
    text = (dagster_home / "dagster.yaml").read_text()
    assert "postgres_db" in text and "{env: DAGSTER_PG_HOST}" in text
    assert on_postgres["DAGSTER_PG_PORT"] not in text               # references, not values
    assert not (dagster_home / "history" / "runs.db").exists()       # no SQLite run storage beside it
    assert _rows(on_postgres, "SELECT status FROM runs") == [("SUCCESS",)]
    keys = {k for (k,) in _rows(on_postgres, "SELECT DISTINCT asset_key FROM event_logs "
                                             "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")}
    assert '["core", "customers"]' in keys and '["identity", "crosswalk"]' in keys
    assert _rows(on_postgres, "SELECT concurrency_key, count(*) FROM concurrency_slots GROUP BY 1") == [("duckdb", 1)]

    # another process (the webserver, the daemon, the next run) reads the same history
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["core", "customers"]))
        assert event is not None and event.asset_materialization.metadata["dagster/row_count"].value > 0


def _claim(home, start, run_id, results):
    import dagster as dg

    storage = dg.DagsterInstance.from_config(home).event_log_storage
    while time.time() < start:
        pass
    results.put(storage.claim_concurrency_slot("duckdb", run_id, "step").is_claimed)


def test_the_one_pool_slot_goes_to_one_of_four_processes_claiming_at_once(on_postgres, tmp_path):
    import dagster as dg

    from crm_platform.cli import prepare_dagster_home

    home = tmp_path / "dagster_home"
    prepare_dagster_home(home)
    ctx = multiprocessing.get_context("spawn")
    given = []
    for r in range(3):
        results, start = ctx.Queue(), time.time() + 4.0
        procs = [ctx.Process(target=_claim, args=(str(home), start, f"race{r}-{i}", results)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        given.append(sum(results.get(timeout=10) for _ in procs))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for i in range(4):
                instance.event_log_storage.free_concurrency_slots_for_run(f"race{r}-{i}")
    assert given == [1, 1, 1]
