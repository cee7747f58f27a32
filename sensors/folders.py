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

from crm_platform import settings
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
            tags: dict | None = None) -> dg.SensorResult:
    """A run request for the new or changed files of ``folder`` (or a skip reason), and the cursor
    of what the folder holds now (a removed file leaves it)."""
    seen = json.loads(context.cursor) if context.cursor else {}
    now = fingerprints(folder, pattern)
    changed = sorted(k for k, v in now.items() if seen.get(k) != v)
    if not changed:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no new or changed {what} in {folder}"),
                               cursor=json.dumps(now, sort_keys=True))
    key = hashlib.sha256("\n".join(f"{k}={now[k]}" for k in changed).encode()).hexdigest()[:24]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"{what}:{key}", tags={
            **(tags or {}), "crm_platform/trigger": what, "crm_platform/files": str(len(changed)),
            "crm_platform/first_file": changed[0][:200]})],
        cursor=json.dumps(now, sort_keys=True))


def folder_sensor(name: str, job, folder: Callable[[], Path], pattern: str, what: str, interval: int,
                  description: str) -> dg.SensorDefinition:
    """A sensor (off by default, see sensors/defaults.py) that starts ``job`` for new or changed files in ``folder()``
    (read at each tick, so it follows ``CRM_PLATFORM_HOME``)."""
    @dg.sensor(name=name, job=job, minimum_interval_seconds=interval,
               default_status=sensor_status(), description=description)
    def _sensor(context: dg.SensorEvaluationContext):
        return changes(context, folder(), pattern, what)

    return _sensor


def landing_sensor(job) -> dg.SensorDefinition:
    return folder_sensor("landing_files", job, lambda: settings.paths().landing, "**/*", "landing files", 60,
                         "Starts the core refresh when a source system drops a new or changed file into "
                         "CRM_PLATFORM_HOME/landing (ingestion then loads only what it has not loaded).")


def requests_sensor(job) -> dg.SensorDefinition:
    return folder_sensor("subject_requests", job, lambda: settings.paths().requests, "*.json", "requests", 30,
                         "Registers erasure and export requests dropped as JSON files into "
                         "CRM_PLATFORM_HOME/requests (governance/requests).")
