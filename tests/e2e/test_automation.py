"""Automation: the alert assets in Dagster (exactly-once delivery, backfill = day by day), the
sensors and schedules, and two runs sharing one warehouse."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from assets import alert_assets, feature_assets, marts_assets, policy
from crm_platform.core import settings
from crm_platform.alerts.delivery import Outbox
from resources.alerts import Alerting
from sensors import chain_job, retrain_job
from sensors.folders import landing_sensor, requests_sensor
from sensors.runs import drift_sensor, run_failures

DAYS = ["2026-09-28", "2026-09-29", "2026-09-30"]
ALERTS = [dg.AssetKey(["alerts", k]) for k in ("customer_alerts", "kpi_alerts", "outbox")] + \
    [dg.AssetKey(["marts", "action_uplift"])]


def _home(timeline_world, tmp_path, name):
    """A home whose warehouse holds the resolved world, its golden records and timeline."""
    from crm_platform.golden import survivorship as golden

    home = tmp_path / name
    home.mkdir()
    shutil.copy(timeline_world, home / "warehouse.duckdb")
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    golden.build(con, golden.load_rules())
    con.close()
    return home


def _resources(home):
    return {"warehouse": DuckDBResource(database=str(home / "warehouse.duckdb")),
            "alerting": Alerting(home=str(home), config_path=str(settings.DEFAULT_ALERTS))}


def _daily_defs():
    return [*feature_assets(), *marts_assets(), *alert_assets()]


def _daily_selection():
    keys = {k for a in _daily_defs() for k in a.keys}
    return [k for k in keys if k.path[0] != "governance"]


def _tables(home, tables):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").df() for t in tables}
    finally:
        con.close()


def _checks(result):
    return {(ev.asset_key.to_user_string(), ev.check_name): ev for ev in result.get_asset_check_evaluations()}


@pytest.mark.slow
def test_a_range_backfill_equals_day_by_day_and_delivers_nothing_twice(timeline_world, tmp_path):
    one, many = _home(timeline_world, tmp_path, "range"), _home(timeline_world, tmp_path, "days")
    defs, sel = _daily_defs(), _daily_selection()
    job = dg.define_asset_job("daily", selection=sel, partitions_def=None)
    defs_obj = dg.Definitions(assets=defs, jobs=[job], resources=_resources(one))
    ranged = defs_obj.resolve_job_def("daily").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]})
    assert ranged.success
    # one run, and every asset recorded as materialized for each day of the range
    assert {e.partition for e in ranged.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(["alerts", "outbox"])} == set(DAYS)
    for day in DAYS:
        r = dg.materialize(defs, selection=sel, partition_key=day, resources=_resources(many),
                           instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        assert r.success
        bad = {k: v.description for k, v in _checks(r).items() if not v.passed
               and v.severity == dg.AssetCheckSeverity.ERROR}
        assert not bad, bad
    tables = ["features.customer_features", "marts.customer_segments", "marts.kpi_daily",
              "alerts.customer_alerts", "marts.action_uplift", "alerts.delivery_log"]
    a, b = _tables(one, tables), _tables(many, tables)
    for t in tables:
        assert len(a[t]) > 0 or t == "marts.action_uplift", t
        # equal up to the last bits of float sums (DuckDB adds in parallel, in no fixed order)
        pd.testing.assert_frame_equal(a[t], b[t], check_exact=False, rtol=1e-9, obj=t)
    alerts = a["alerts.customer_alerts"]
    assert len(alerts) > 0 and set(alerts["alert_date"].astype(str)) <= set(DAYS)
    # what the JSON-lines sink holds is exactly the non-control alerts, in both homes
    lines = [json.loads(x) for x in (one / "outbox" / "alerts.jsonl").read_text().splitlines()]
    assert sorted(x["alert_id"] for x in lines) == sorted(alerts.loc[~alerts["is_control"], "alert_id"])
    assert (one / "outbox" / "alerts.jsonl").read_text().count("\n") == \
        (many / "outbox" / "alerts.jsonl").read_text().count("\n")

    # re-materializing the alerts (a rerun, a backfill over the same days) sends nothing new
    before = {p.name: p.read_bytes() for p in (one / "outbox").iterdir()}
    again = dg.materialize(defs, selection=ALERTS, partition_key=DAYS[-1], resources=_resources(one),
                           instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert again.success
    after = {p.name: p.read_bytes() for p in (one / "outbox").iterdir()}
    assert after == before
    meta = next(e.materialization.metadata for e in again.get_asset_materialization_events()
                if e.materialization.asset_key == dg.AssetKey(["alerts", "outbox"]))
    assert "| 0 |" in meta["per_sink"].value and _checks(again)[("alerts/outbox", "everything_delivered")].passed
    checks = _checks(again)
    assert checks[("alerts/customer_alerts", "alerts_respect_the_customer")].passed
    assert checks[("alerts/customer_alerts", "pandera_CustomerAlerts")].passed


def _drop(folder: Path, name: str, text: str, mtime: float | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text)
    if mtime:
        os.utime(p, (mtime, mtime))
    return p


def test_folder_sensors_request_a_run_for_new_or_changed_files_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PLATFORM_HOME", str(tmp_path))
    sensor = landing_sensor(chain_job)
    landing = tmp_path / "landing" / "shop"
    assert sensor(dg.build_sensor_context()).skip_reason                      # no folder yet
    _drop(landing, "orders_2026-09-30.csv", "id\n1\n", 1_700_000_000)
    _drop(landing, "orders.csv.part", "id\n")                                # still being written
    first = sensor(dg.build_sensor_context())
    assert len(first.run_requests) == 1 and first.run_requests[0].tags["crm_platform/files"] == "1"
    cursor = first.cursor
    assert "shop/orders_2026-09-30.csv" in json.loads(cursor) and "shop/orders.csv.part" not in json.loads(cursor)
    same = sensor(dg.build_sensor_context(cursor=cursor))
    assert not same.run_requests and cursor == same.cursor
    _drop(landing, "orders_2026-09-30.csv", "id\n1\n2\n", 1_700_000_100)      # changed
    _drop(landing, "web.csv", "x\n", 1_700_000_000)                           # new
    changed = sensor(dg.build_sensor_context(cursor=cursor))
    assert changed.run_requests[0].tags["crm_platform/files"] == "2"
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key and changed.cursor != cursor

    requests = requests_sensor(chain_job)
    _drop(tmp_path / "requests", "erase-1.json", '{"type": "erase", "email": "a@b.de"}')
    got = requests(dg.build_sensor_context())
    assert len(got.run_requests) == 1
    assert not requests(dg.build_sensor_context(cursor=got.cursor)).run_requests


def test_schedules_tick_with_their_targets():
    from crm_platform.definitions import defs

    repo = defs.get_repository_def()
    assert repo.get_schedule_def("nightly_refresh").job_name == "refresh_core"
    assert repo.get_schedule_def("daily_snapshots_schedule").job_name == "daily_snapshots"
    weekly = repo.get_schedule_def("weekly_retraining")
    assert weekly.cron_schedule == "0 3 * * 0" and weekly.job_name == "retrain_models"
    assert {s.name for s in repo.sensor_defs} >= {"landing_files", "subject_requests", "run_failures",
                                                  "drift_retraining", "follow_parents"}
    job = repo.get_job("retrain_models")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "ml/churn_model", "ml/clv_model", "ml/next_best_offer_model", "ml/lead_scoring_model"}
    graph = repo.asset_graph
    # derived assets follow their parents; ingestion, models and requests have their own triggers
    for key in graph.get_all_asset_keys():
        cond = graph.get(key).automation_condition
        own = key.path[0] == "raw" or key.path[-1].endswith("_model") or key.path[0] == "governance" and \
            key.path[1] in ("requests", "subject_requests")
        assert (cond is None) == own, key
    assert graph.get(dg.AssetKey(["marts", "kpi_daily"])).freshness_policy is not None
    assert graph.get(dg.AssetKey(["ml", "churn_scores"])).backfill_policy == dg.BackfillPolicy.single_run()


def test_a_drift_warning_requests_retraining_once(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    resources = {"warehouse": DuckDBResource(database=str(tmp_path / "warehouse.duckdb"))}

    @policy.asset(key=["ml", "churn_scores"], check_specs=[dg.AssetCheckSpec("drift", asset=["ml", "churn_scores"])])
    def scores(warehouse: DuckDBResource):
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="drift", passed=False, severity=dg.AssetCheckSeverity.WARN,
                                  description="PSI 0.4")

    @policy.asset(key=["ml", "clv_scores"], check_specs=[dg.AssetCheckSpec("drift", asset=["ml", "clv_scores"])])
    def clv_scores(warehouse: DuckDBResource):
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="drift", passed=True)

    sensor = drift_sensor(retrain_job)

    def tick(cursor=None):
        return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))

    assert not tick().run_requests
    assert dg.materialize([scores, clv_scores], instance=instance, resources=resources).success
    first = tick()
    (req,) = first.run_requests
    assert req.asset_selection == [dg.AssetKey(["ml", "churn_model"])]
    again = tick(first.cursor)
    assert not again.run_requests
    assert dg.materialize([scores], instance=instance, resources=resources).success                 # a new warning
    assert len(tick(first.cursor).run_requests) == 1


def test_a_failed_run_becomes_one_data_quality_alert(tmp_path):
    instance = dg.DagsterInstance.ephemeral()

    @dg.asset
    def broken():
        raise ValueError("orders file has no header")

    result = dg.materialize([broken], instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    alerting = Alerting(home=str(tmp_path), config_path=str(settings.DEFAULT_ALERTS))
    for _ in range(2):            # the sensor may see the same failure twice: one alert
        ctx = dg.build_run_status_sensor_context(sensor_name="run_failures", dagster_event=failure,
                                                 dagster_instance=instance, dagster_run=result.dagster_run,
                                                 resources={"alerting": alerting}).for_run_failure()
        run_failures(ctx)
    lines = (tmp_path / "outbox" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 1
    alert = json.loads(lines[0])
    assert alert["kind"] == "data_quality" and "broken" in alert["reason"]
    assert len(Outbox(tmp_path / "outbox").delivered("crm_import")) == 1


SLOW_WRITER = textwrap.dedent('''
    import sys, time
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    @dg.asset(pool="duckdb")
    def slow_table(context, warehouse: DuckDBResource):
        t = time.time()
        time.sleep(3)              # work before writing: only the pool keeps the two runs apart
        with warehouse.get_connection() as con:
            con.execute("CREATE TABLE IF NOT EXISTS runs (who VARCHAR, started DOUBLE, ended DOUBLE)")
            con.execute("INSERT INTO runs VALUES (?, ?, ?)", [sys.argv[2], t, time.time()])

    result = dg.materialize([slow_table], instance=dg.DagsterInstance.get(),
                            resources={"warehouse": DuckDBResource(database=sys.argv[1])})
    sys.exit(0 if result.success else 1)
''')


def test_two_concurrent_materializations_on_one_warehouse_both_succeed(tmp_path):
    from crm_platform.cli import prepare_dagster_home

    prepare_dagster_home(tmp_path / "dagster_home")           # the project's dagster.yaml: pool limit 1
    script = tmp_path / "writer.py"
    script.write_text(SLOW_WRITER)
    db = tmp_path / "warehouse.duckdb"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    procs = [subprocess.Popen([sys.executable, str(script), str(db), who], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for who in ("a", "b")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT who, started, ended FROM runs ORDER BY started").fetchall()
    con.close()
    assert sorted(r[0] for r in rows) == ["a", "b"]
    assert rows[1][1] >= rows[0][2] - 0.05        # the pool ran them one after the other


def _claim_at(home: str, start: float, run: str, claimed) -> None:
    import time

    storage = dg.DagsterInstance.from_config(home).event_log_storage
    while time.time() < start:                       # every process claims at the same instant
        pass
    claimed.put(storage.claim_concurrency_slot("duckdb", run, "step").is_claimed)


def test_runs_claiming_the_one_pool_slot_at_the_same_instant_get_it_once(tmp_path):
    """Plain SQLite event log storage gave the one slot to 2-3 of 4 processes in 7 of 10 rounds;
    the project's storage claims under a lock."""
    import multiprocessing
    import time

    from crm_platform.cli import prepare_dagster_home

    home = tmp_path / "dagster_home"
    prepare_dagster_home(home)
    storage = dg.DagsterInstance.from_config(str(home)).event_log_storage
    ctx = multiprocessing.get_context("fork")
    for round_ in range(4):
        claimed, start = ctx.Queue(), time.time() + 1.0
        procs = [ctx.Process(target=_claim_at, args=(str(home), start, f"run{round_}-{i}", claimed))
                 for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 4
        assert sum(claimed.get(timeout=10) for _ in procs) == 1, f"round {round_}"
        for run in storage.get_concurrency_run_ids():
            storage.free_concurrency_slots_for_run(run)


def test_the_nightly_schedule_computes_the_days_with_data_and_nothing_else(tmp_path, monkeypatch):
    """Time follows the data: the daily schedule computes each day with data not delivered yet as
    one run, nothing on a night without a new day (no alert for an empty day), and says when the
    code location must reload to see a new day."""
    from datetime import date

    from assets.lib.partitions import PARTITIONS
    from crm_platform.definitions import defs
    from sensors.days import days_to_compute

    d = date.fromisoformat
    assert "no event" in days_to_compute(None, d("2026-09-30"), set())
    assert days_to_compute(d("2026-09-30"), d("2026-09-30"), set()) == (d("2026-09-30"), d("2026-09-30"))
    assert days_to_compute(d("2026-09-30"), d("2026-09-30"), {"2026-09-27"}) == (d("2026-09-28"), d("2026-09-30"))
    assert "no new day" in days_to_compute(d("2026-09-30"), d("2026-09-30"), {"2026-09-30", "2026-09-29"})
    assert "reload" in days_to_compute(d("2026-10-01"), d("2026-09-30"), {"2026-09-30"})
    assert days_to_compute(d("2026-09-30"), d("2026-09-30"), {"2026-01-01"})[0] == d("2026-08-31")  # an outage: a month

    monkeypatch.setenv("CRM_PLATFORM_HOME", str(tmp_path))
    schedule = defs.get_repository_def().get_schedule_def("daily_snapshots_schedule")
    with dg.instance_for_test() as instance, \
            dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 10, 1, 2, 30)) as ctx:
        assert "no event" in schedule.evaluate_tick(ctx).skip_message
        last = PARTITIONS.end.date() - timedelta(days=1)
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "last_event_day").write_text(last.isoformat() + "\n")
        (req,) = schedule.evaluate_tick(ctx).run_requests
        assert req.tags["dagster/asset_partition_range_start"] == req.tags["dagster/asset_partition_range_end"] \
            == last.isoformat()
        instance.report_runless_asset_event(dg.AssetMaterialization(["alerts", "outbox"], partition=last.isoformat()))
        assert "no new day" in schedule.evaluate_tick(ctx).skip_message      # delivered: nothing to do


def test_the_landing_sensor_knows_the_files_the_demo_loaded(tiny_run, tmp_path, monkeypatch):
    """Switched on after the demo, the landing sensor's first tick starts nothing: every file's
    content is in the ingest manifest. A file that then changes starts the core refresh."""
    home = tmp_path / "home"
    shutil.copytree(tiny_run / "landing", home / "landing")
    shutil.copy(tiny_run / "warehouse.duckdb", home / "warehouse.duckdb")
    monkeypatch.setenv("CRM_PLATFORM_HOME", str(home))
    sensor = landing_sensor(chain_job)
    first = sensor(dg.build_sensor_context())
    assert not first.run_requests and "already loaded" in first.skip_reason.skip_message, first.skip_reason
    files = sorted(json.loads(first.cursor))
    assert len(files) >= 10
    changed = home / "landing" / files[0]
    changed.write_bytes(changed.read_bytes() + b"\n")          # new content under a known name
    again = sensor(dg.build_sensor_context(cursor=first.cursor))
    (req,) = again.run_requests
    assert req.tags["crm_platform/files"] == "1" and req.tags["crm_platform/first_file"] == files[0]
    assert not sensor(dg.build_sensor_context(cursor=again.cursor)).run_requests
