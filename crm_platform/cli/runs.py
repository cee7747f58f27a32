"""Runs of the code location from the command line: the project-local Dagster instance, a job run
in this process with its progress, runs whose process died released, and the selections and days
``materialize`` runs."""

from __future__ import annotations

import os
import sys
import warnings
from datetime import date, timedelta
from pathlib import Path


from crm_platform.core import settings
from crm_platform.core.days import LAST_DATA_DAY_SQL, partitions_end, partitions_start



# the first line of every dagster.yaml the project writes: a file without it is the user's own
WRITTEN_BY = "crm-platform writes this file"


def instance_yaml(home: Path) -> str:
    """The project's ``dagster.yaml`` for ``home``: run, event log and schedule storage in
    PostgreSQL when ``DAGSTER_PG_HOST`` says so (settings.dagster_postgres), otherwise SQLite files
    under the home with the pool slots claimed under a lock (cli/storage.py)."""
    pg = settings.dagster_postgres()
    if pg is None:
        return (settings.PACKAGE_DIR / "config" / "dagster.yaml").read_text().replace("{home}", home.resolve().as_posix())
    try:
        import dagster_postgres  # noqa: F401
    except ImportError as e:
        raise RuntimeError("DAGSTER_PG_HOST is set, but the PostgreSQL storage of Dagster is not installed: "
                           "pip install -c requirements.lock -e '.[postgres]'") from e
    fields = "\n".join(f"      {k}: {{env: {v}}}" for k, v in pg.items())
    return (settings.PACKAGE_DIR / "config" / "dagster-postgres.yaml").read_text().replace("{postgres_db}", fields)


def prepare_dagster_home(home: Path) -> None:
    """A DAGSTER_HOME with the instance settings the platform relies on (``instance_yaml``, written
    afresh each time unless the home holds a ``dagster.yaml`` of the user's own, which is kept),
    and the ``duckdb`` pool created at its limit of one before any run (two runs starting at once
    would each create it otherwise)."""
    import dagster as dg

    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    own = target.exists() and WRITTEN_BY not in target.read_text()
    if not own:
        text = instance_yaml(home)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        if storage.supports_global_concurrency_limits and "duckdb" not in storage.get_concurrency_keys():
            storage.initialize_concurrency_limit_to_default("duckdb")
            if "duckdb" not in storage.get_concurrency_keys():     # a user's file without a default limit
                storage.set_concurrency_slots("duckdb", 1)


# who runs a run started by job_runner: a run whose process is gone (killed, power cut) is found by these
RUN_PID, RUN_HOST = "crm_platform/pid", "crm_platform/host"


def job_runner(raise_on_error: bool = False, log_level: str = "WARNING", fresh: bool = False,
               progress: bool = False, started: float | None = None):
    """A function that runs a job of the code location in this process, recorded in DAGSTER_HOME
    when set (prepared first), in a throwaway instance otherwise. Before each run, runs this
    machine started whose process died are released (``release_dead_runs``). ``fresh`` loads the
    code location again (the daily partitions start where the data does, known after the first
    core refresh). ``progress`` writes each step as it starts and ends to stderr (crm_platform/
    progress.py), elapsed times counted from ``started`` (a ``time.monotonic()``)."""
    import socket
    import uuid

    from crm_platform.cli.progress import Progress

    import dagster as dg

    if fresh:
        for name in [m for m in sys.modules if m.split(".")[0] in ("assets", "sensors", "resources")
                     or m == "crm_platform.definitions"]:
            del sys.modules[name]
    from crm_platform.definitions import defs

    home = os.environ.get("DAGSTER_HOME")
    if home:
        prepare_dagster_home(Path(home))
    instance = dg.DagsterInstance.get() if home else dg.DagsterInstance.ephemeral()
    # Step-by-step logs stay in the run history (make ui); the terminal shows warnings and the summary.
    config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    owner = {RUN_PID: str(os.getpid()), RUN_HOST: socket.gethostname()}

    def run(job: str, tags: dict | None = None, **kw):
        release_dead_runs(instance)
        job_def = defs.resolve_job_def(job)
        run_id = str(uuid.uuid4())
        if progress:
            selection = kw.get("asset_selection")
            steps = job_def.get_subset(asset_selection=set(selection)) if selection else job_def
            shown = Progress(job if job != "__ASSET_JOB" else "materialize", len(steps.graph.node_dict),
                             started=started)
            instance.add_event_listener(run_id, shown.on_event)
        result = None
        try:
            result = job_def.execute_in_process(run_config=config, instance=instance, raise_on_error=raise_on_error,
                                                run_id=run_id, tags={**(tags or {}), **owner}, **kw)
            return result
        finally:
            if progress:
                shown.finish(result is not None and result.success)
    return run


def release_dead_runs(instance) -> list[str]:
    """Runs started on this machine by ``job_runner`` whose process no longer exists: each is
    marked failed and its slots of the ``duckdb`` pool are freed. Without this, a run killed in
    the middle (SIGKILL, out of memory, power cut) would keep its slot and every later run would
    wait for it for ever. Returns the released run ids."""
    import socket

    import dagster as dg

    here = socket.gethostname()
    holding = instance.event_log_storage.get_concurrency_run_ids() \
        if instance.event_log_storage.supports_global_concurrency_limits else set()
    open_runs = {r.run_id: r for r in instance.get_runs(filters=dg.RunsFilter(statuses=[
        dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED]))}
    released = []
    for run_id in set(open_runs) | holding:
        run = open_runs.get(run_id) or instance.get_run_by_id(run_id)
        if run is None or run.tags.get(RUN_HOST) != here or _alive(int(run.tags.get(RUN_PID, 0))):
            continue
        if not run.is_finished:
            instance.report_run_failed(run, f"its process ({run.tags[RUN_PID]}) is gone: killed or crashed")
        if run_id in holding:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        released.append(run_id)
    return released


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # someone else's process
        return True
    return True


def materialize(raise_on_error: bool = False, history_days: int = 14, progress: bool = False,
                started: float | None = None):
    """Run the platform the way its schedules do, recording the runs in DAGSTER_HOME: the core
    refresh, the models, then the daily partitions of the last day with data and the
    ``history_days`` before it as one backfill (so the KPI alerts have a baseline), and one day a full uplift window
    earlier (so marts/action_uplift has alerts whose outcome is known). ``progress``: see
    ``job_runner``."""
    from crm_platform.alerts.rules import load_config
    from sensors.days import range_tags

    show = {"progress": progress, "started": started}
    run = job_runner(raise_on_error, **show)
    results = [run("refresh_core")]
    day = latest_data_day() if results[0].success else None
    if day is None:      # nothing on the timeline: no day to compute (the summary says what is absent)
        return results
    if _partitions_moved():
        run = job_runner(raise_on_error, fresh=True, **show)
    results.append(run("retrain_models"))
    last = date.fromisoformat(day)
    earlier = last - timedelta(days=load_config(settings.alerts_file()).uplift_window_days + 1)
    results.append(run("daily_snapshots", partition_key=earlier.isoformat()))
    first = last - timedelta(days=max(history_days, 0))
    results.append(run("daily_snapshots", tags=range_tags(first, last)))
    return results


def _partitions_moved() -> bool:
    """Whether the daily partitions of the loaded code location span other days than the data now
    says (each core refresh records the first and the newest day with data)."""
    from assets.lib.config import FEATURES as CONFIG
    from assets.lib.partitions import PARTITIONS

    p = settings.paths()
    return (PARTITIONS.start.date(), PARTITIONS.end.date() - timedelta(days=1)) != (
        partitions_start(CONFIG.partitions_start, p.first_day_file), partitions_end(p.last_day_file))


def latest_data_day() -> str | None:
    """The last day the timeline holds an event for, as a partition key."""
    from crm_platform.core import warehouse

    con = warehouse.connect(settings.paths().warehouse, read_only=True)
    try:
        if not warehouse.table_exists(con, "core.customer_events"):
            return None
        day = con.execute(LAST_DATA_DAY_SQL).fetchall()[0][0]
        return day.isoformat() if day else None
    finally:
        con.close()



def selected_keys(selection: str, graph) -> set:
    """The materializable asset keys of ``graph`` a Dagster asset selection names; an asset made by
    a step that makes several (identity.crosswalk with identity.links ...) brings the step's other
    assets along, since one step cannot make only a part of them. SelectionError says what is wrong."""
    import dagster as dg

    try:
        with warnings.catch_warnings():        # a group selection asks a beta parameter of Dagster's own
            warnings.simplefilter("ignore")
            keys = dg.AssetSelection.from_string(selection).required_multi_asset_neighbors().resolve(graph)
    except Exception as e:             # the selection's own parser says what is wrong
        raise SelectionError(f"--select {selection!r}: {str(e).splitlines()[0]}") from None
    keys = {k for k in keys if graph.get(k).is_materializable}
    if not keys:
        raise SelectionError(f"--select {selection!r} names no asset of this code location")
    return keys


def materialize_selection(selection: str, partition: str | None = None, raise_on_error: bool = False,
                          progress: bool = False, started: float | None = None):
    """Runs of the assets a Dagster asset selection names (``group:identity``, ``+core/customers``,
    ``key:marts/*``) with their checks: the assets not partitioned by day in one run, then the
    daily ones for ``partition`` (default: the last day with data) in another."""
    show = {"progress": progress, "started": started}
    run = job_runner(raise_on_error, **show)
    from crm_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = selected_keys(selection, graph)
    daily = {k for k in keys if graph.get(k).partitions_def is not None}
    results = []
    if keys - daily:
        results.append(run("__ASSET_JOB", asset_selection=sorted(keys - daily)))
    if daily and (not results or results[-1].success):
        day = partition or latest_data_day()
        if day is None:
            raise SelectionError(f"--select {selection!r} names daily assets, and the timeline holds no event yet: "
                                 "materialize the core first, or give --partition")
        if _partitions_moved():
            run = job_runner(raise_on_error, fresh=True, **show)
        results.append(run("__ASSET_JOB", asset_selection=sorted(daily), partition_key=day))
    return results


class SelectionError(ValueError):
    """An asset selection the code location cannot run; the message says why."""
