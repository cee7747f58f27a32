"""Sensors on folders: new or changed files start a run, the cursor remembers what was seen.

The cursor is a JSON map of relative path -> ``size:mtime_ns``. A file whose fingerprint is not
in the cursor is new or changed; a run is requested with a run key made of those fingerprints, so
the same files never start a second run. Hidden files and ``.part``/``.tmp`` files (still being
written; write then rename) are ignored.
"""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from crm_platform.core import settings
from sensors.defaults import sensor_status

PARTIAL = (".part", ".tmp", ".partial")


def fingerprints(folder: Path, pattern: str = "**/*") -> dict[str, str]:
    folder = Path(folder)
    if not folder.exists():
        return {}
    out = {}
    for p in folder.glob(pattern):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts) or p.name.endswith(PARTIAL):
            continue
        st = p.stat()
        out[rel.as_posix()] = f"{st.st_size}:{st.st_mtime_ns}"
    return out


def changes(context: dg.SensorEvaluationContext, folder: Path, pattern: str, what: str,
            tags: dict | None = None, done: Callable[[list[str]], set[str]] | None = None) -> dg.SensorResult:
    """A run request for the new or changed files of ``folder`` (or a skip reason), and the cursor
    of what the folder holds now (a removed file leaves it). ``done(files)`` names those of the
    new or changed files whose work is already done (a first tick after the demo loaded them)."""
    seen = json.loads(context.cursor) if context.cursor else {}
    now = fingerprints(folder, pattern)
    changed = sorted(k for k, v in now.items() if seen.get(k) != v)
    handled = done(changed) if done and changed else set()
    changed = [k for k in changed if k not in handled]
    if not changed:
        why = f"; {len(handled)} already loaded" if handled else ""
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no new or changed {what} in {folder}{why}"),
                               cursor=json.dumps(now, sort_keys=True))
    key = hashlib.sha256("\n".join(f"{k}={now[k]}" for k in changed).encode()).hexdigest()[:24]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"{what}:{key}", tags={
            **(tags or {}), "crm_platform/trigger": what, "crm_platform/files": str(len(changed)),
            "crm_platform/first_file": changed[0][:200]})],
        cursor=json.dumps(now, sort_keys=True))


def folder_sensor(name: str, job, folder: Callable[[], Path], pattern: str, what: str, interval: int,
                  description: str, done: Callable[[list[str]], set[str]] | None = None) -> dg.SensorDefinition:
    """A sensor (off by default, see sensors/defaults.py) that starts ``job`` for new or changed files in ``folder()``
    (read at each tick, so it follows ``CRM_PLATFORM_HOME``)."""
    @dg.sensor(name=name, job=job, minimum_interval_seconds=interval,
               default_status=sensor_status(), description=description)
    def _sensor(context: dg.SensorEvaluationContext):
        return changes(context, folder(), pattern, what, done=done)

    return _sensor


def loaded_landing_files(files: list[str]) -> set[str]:
    """Those of ``files`` (relative to the landing folder) whose content the ingest manifest
    holds. A warehouse another process holds is not waited for: nothing counts as loaded then,
    and ingestion itself skips what it loaded."""
    from crm_platform.ingest import load as ingest
    from crm_platform.core import warehouse

    p = settings.paths()
    if not p.warehouse.exists():
        return set()
    try:
        con = warehouse.connect(p.warehouse, read_only=True, wait=2)
    except warehouse.WarehouseBusy:
        return set()
    try:
        return ingest.already_loaded(con, p.landing, files)
    finally:
        con.close()


def landing_sensor(job) -> dg.SensorDefinition:
    return folder_sensor("landing_files", job, lambda: settings.paths().landing, "**/*", "landing files", 60,
                         "Starts the core refresh when a source system drops a new or changed file into "
                         "CRM_PLATFORM_HOME/landing; a file whose content is already loaded (the demo's, "
                         "on the first tick) starts nothing.", done=loaded_landing_files)


def requests_sensor(job) -> dg.SensorDefinition:
    return folder_sensor("subject_requests", job, lambda: settings.paths().requests, "*.json", "requests", 30,
                         "Registers erasure and export requests dropped as JSON files into "
                         "CRM_PLATFORM_HOME/requests (governance/requests).")
