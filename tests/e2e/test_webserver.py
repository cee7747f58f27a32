"""Smoke test: the Dagster webserver loads workspace.yaml and serves every asset and check."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
QUERY = """{ assetNodes { assetKey { path } groupName kinds description dependencyKeys { path }
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


AUTOMATION = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  schedules { name pipelineName scheduleState { status } }
  sensors { name targets { pipelineName } sensorState { status } } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, query: str) -> dict:
    req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _automation(url: str) -> tuple[dict, dict]:
    repo = _post(url, AUTOMATION)["data"]["repositoriesOrError"]["nodes"][0]
    schedules = {x["name"]: (x["pipelineName"], x["scheduleState"]["status"]) for x in repo["schedules"]}
    sensors = {x["name"]: ({t["pipelineName"] for t in x["targets"] or []}, x["sensorState"]["status"])
               for x in repo["sensors"]}
    return schedules, sensors


def _wait_for(url: str, server: subprocess.Popen, query: str, seconds: int = 180) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"webserver exited: {server.stderr.read().decode()[-2000:]}")
        try:
            data = _post(url, query)
            if data.get("data"):
                return data
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"no answer from {url} in {seconds} s")


def _stop(server: subprocess.Popen) -> bool:
    """SIGTERM, then SIGKILL after 30 s; whether it stopped on SIGTERM."""
    server.terminate()
    try:
        server.wait(timeout=30)
        return True
    except subprocess.TimeoutExpired:
        server.kill()
        return False


RUNS = "{ runsOrError { ... on Runs { results { runId jobName } } } }"
DAYS = """{ assetNodeOrError(assetKey: {path: ["features", "customer_features"]}) {
  ... on AssetNode { partitionKeysByDimension { partitionKeys } } } }"""


def _fingerprints(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.read_bytes())
            for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


@pytest.mark.slow
def test_opening_the_ui_changes_nothing_until_asked(tiny_run, tmp_path):
    """``make ui`` on a demo home: the webserver and the daemon for half a minute launch no run, deliver
    no alert and change no file under outbox/ or reports/; every schedule and sensor is off until
    switched on, and the UI stops cleanly on SIGTERM."""
    import shutil

    import dagster as dg

    from crm_platform.cli import prepare_dagster_home

    home = tmp_path / "home"
    shutil.copytree(tiny_run, home)
    prepare_dagster_home(home / "dagster_home")
    before = {d: _fingerprints(home / d) for d in ("outbox", "reports")}
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        runs = {r.run_id for r in instance.get_runs()}
    assert runs, "the demo home has the demo's runs"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        newest = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster_home"), "CRM_PLATFORM_HOME": str(home)}
    env.pop("CRM_PLATFORM_AUTOMATION", None)
    server = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
                               "-h", "127.0.0.1", "-p", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        _wait_for(url, server, RUNS)
        schedules, sensors = _automation(url)
        assert {s for _, s in schedules.values()} | {s for _, s in sensors.values()} == {"STOPPED"}
        # time follows the data: the last daily partition is the newest day with data, not today
        (dim,) = _post(url, DAYS)["data"]["assetNodeOrError"]["partitionKeysByDimension"]
        assert dim["partitionKeys"][-1] == newest.isoformat() and newest < date.today()
        time.sleep(35)                      # the daemon ticks every few seconds; a sensor every 30 s
        after = _post(url, RUNS)["data"]["runsOrError"]["results"]
        assert [r for r in after if r["runId"] not in runs] == [], "opening the UI launched a run"
        assert {d: _fingerprints(home / d) for d in ("outbox", "reports")} == before
    finally:
        assert _stop(server), "the UI did not stop within 30 s of SIGTERM"


def test_automation_runs_by_default_when_switched_on():
    """``CRM_PLATFORM_AUTOMATION=on`` (a production deployment) turns every schedule and sensor on."""
    code = ("from crm_platform.definitions import defs\n"
            "r = defs.get_repository_def()\n"
            "print(sorted({s.default_status.value for s in [*r.schedule_defs, *r.sensor_defs]}))")
    for value, expected in (("on", "['RUNNING']"), ("off", "['STOPPED']")):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "CRM_PLATFORM_AUTOMATION": value})
        assert out.stdout.strip().splitlines()[-1] == expected, out.stderr[-2000:]


@pytest.mark.slow
def test_webserver_serves_every_asset_and_check(tmp_path):
    from crm_platform.definitions import defs

    expected_assets = {"/".join(s.key.path) for s in defs.resolve_all_asset_specs()}
    graph = defs.resolve_asset_graph()
    expected_checks = {("/".join(k.asset_key.path), k.name) for k in graph.asset_check_keys}
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "CRM_PLATFORM_HOME": str(tmp_path / "home")}
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        deadline = time.monotonic() + 180
        data = None
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"webserver exited: {server.stderr.read().decode()[-2000:]}")
            try:
                data = _post(url, QUERY)
                if data.get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert data and data["data"]["assetNodes"], data
        nodes = data["data"]["assetNodes"]
        served = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert served == expected_assets
        checks = {("/".join(n["assetKey"]["path"]), c["name"]) for n in nodes
                  for c in n["assetChecksOrError"].get("checks", [])}
        assert checks == expected_checks
        for n in nodes:
            assert n["groupName"] in {"ingestion", "staging", "identity", "core", "features", "segments", "kpis", "ml",
                                      "alerts", "reports", "governance"}
            assert n["kinds"] and n["description"]
        # the models train on the feature snapshots: the graph says so
        upstream = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
        for task in ("churn", "clv", "next_best_offer", "lead_scoring"):
            assert "features/customer_features" in upstream[f"ml/{task}_model"], upstream[f"ml/{task}_model"]
        blocking = {c["name"] for n in nodes for c in n["assetChecksOrError"]["checks"] if c["blocking"]}
        assert {"pandera_Contacts", "pandera_Orders", "pandera_OrderItems"} <= blocking
        # the schedules and sensors that run the platform, with their targets, off until switched on
        schedules, sensors = _automation(url)
        assert schedules == {"nightly_refresh": ("refresh_core", "STOPPED"),
                             "daily_snapshots_schedule": ("daily_snapshots", "STOPPED"),
                             "weekly_retraining": ("retrain_models", "STOPPED")}
        assert sensors["landing_files"] == ({"refresh_core"}, "STOPPED")
        assert sensors["subject_requests"] == ({"governance_requests"}, "STOPPED")
        assert sensors["drift_retraining"] == ({"retrain_models"}, "STOPPED")
        assert {"run_failures", "follow_parents"} <= set(sensors)
        assert {status for _, status in sensors.values()} == {"STOPPED"}
    finally:
        _stop(server)
