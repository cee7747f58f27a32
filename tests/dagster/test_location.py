"""The code location as the Dagster UI shows it, held against a recorded inventory.

Every asset with its group, kinds, owners, tags, partitions, automation, freshness, pool and
parents; every check and whether it blocks; every job with the assets it selects; every schedule
and sensor. A refactoring of the Dagster side keeps this file unchanged; a change meant to alter
the location rewrites it on purpose:

    CRM_WRITE_LOCATION=1 .venv/bin/python -m pytest tests/dagster/test_location.py
"""

import json
import os
from pathlib import Path

import pytest

from crm_platform.definitions import defs

RECORDED = Path(__file__).with_name("location.json")


def inventory(definitions) -> dict:
    repo = definitions.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.path):
        node = graph.get(key)
        condition = node.automation_condition
        assets[key.to_user_string()] = {
            "group": node.group_name, "kinds": sorted(node.kinds), "owners": sorted(node.owners),
            "tags": {k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")},
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "automation": (condition.get_label() or type(condition).__name__) if condition else None,
            "freshness": node.assets_def.get_asset_spec(key).freshness_policy is not None,
            "pool": node.assets_def.node_def.pool,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "described": bool(node.description)}
    checks = {}
    for assets_def in set(repo.assets_defs_by_key.values()):
        for spec in assets_def.check_specs:
            checks[f"{spec.asset_key.to_user_string()}:{spec.name}"] = {"blocking": spec.blocking}
    for checks_def in definitions.asset_checks or []:
        for spec in checks_def.check_specs:
            checks[f"{spec.asset_key.to_user_string()}:{spec.name}"] = {"blocking": spec.blocking}
    jobs = sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__"))
    return {"assets": assets, "checks": dict(sorted(checks.items())),
            "jobs": {name: sorted(k.to_user_string() for k in repo.get_job(name).asset_layer.selected_asset_keys)
                     for name in jobs},
            "schedules": {s.name: s.job_name for s in sorted(repo.schedule_defs, key=lambda s: s.name)},
            "sensors": sorted(s.name for s in repo.sensor_defs)}


def test_the_location_shows_what_it_showed():
    now = inventory(defs)
    assert set(now["checks"]) == {f"{k.asset_key.to_user_string()}:{k.name}"
                                  for k in defs.get_repository_def().asset_graph.asset_check_keys}
    if os.environ.get("CRM_WRITE_LOCATION"):
        RECORDED.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(RECORDED.read_text())
    for part in ("assets", "checks", "jobs", "schedules", "sensors"):
        gone, new = set(recorded[part]) - set(now[part]), set(now[part]) - set(recorded[part])
        assert not gone and not new, f"{part}: gone {sorted(gone)}, new {sorted(new)}"
        if isinstance(now[part], dict):
            changed = {k: _difference(recorded[part][k], now[part][k]) for k in now[part]
                       if recorded[part][k] != now[part][k]}
            assert not changed, f"{part} changed (recorded -> now): {changed}"


def _difference(before, after):
    if isinstance(before, dict) and isinstance(after, dict):
        return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}
    return before, after


def test_a_selection_of_one_asset_of_a_multi_asset_step_brings_the_steps_other_assets():
    from crm_platform.cli.runs import SelectionError, selected_keys
    from crm_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in selected_keys("key:identity/crosswalk", graph)}
    assert {"identity/crosswalk", "identity/links", "identity/id_changes", "identity/review_queue"} <= keys
    with pytest.raises(SelectionError, match="names no asset"):
        selected_keys("key:no/such_asset", graph)
