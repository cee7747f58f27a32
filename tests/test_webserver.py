"""Smoke test: the Dagster webserver loads workspace.yaml and serves every asset and check."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUERY = """{ assetNodes { assetKey { path } groupName kinds description
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
        blocking = {c["name"] for n in nodes for c in n["assetChecksOrError"]["checks"] if c["blocking"]}
        assert {"pandera_Contacts", "pandera_Orders", "pandera_OrderItems"} <= blocking
        # the schedules and sensors that run the platform, with their targets, running by default
        repo = _post(url, AUTOMATION)["data"]["repositoriesOrError"]["nodes"][0]
        schedules = {x["name"]: (x["pipelineName"], x["scheduleState"]["status"]) for x in repo["schedules"]}
        assert schedules == {"daily_refresh_schedule": ("daily_refresh", "RUNNING"),
                             "weekly_retraining": ("retrain_models", "RUNNING")}
        sensors = {x["name"]: ({t["pipelineName"] for t in x["targets"] or []}, x["sensorState"]["status"])
                   for x in repo["sensors"]}
        assert sensors["landing_files"] == ({"refresh_core"}, "RUNNING")
        assert sensors["subject_requests"] == ({"governance_requests"}, "RUNNING")
        assert sensors["drift_retraining"] == ({"retrain_models"}, "RUNNING")
        assert {"run_failures", "follow_parents"} <= set(sensors)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
