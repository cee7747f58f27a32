"""``crm-platform``: generate demo data, materialize the asset graph, summarize what was built."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from datetime import date, timedelta
from pathlib import Path

import duckdb

from crm_platform.core import settings
from crm_platform.core.days import LAST_DATA_DAY_SQL, newest_data_day, partitions_end, partitions_start


def _generate(args) -> None:
    from crm_platform.demo import GeneratorConfig, generate

    home = Path(args.home).resolve() if args.home else settings.home()
    cfg = GeneratorConfig(customers=args.customers, seed=args.seed,
                          end_date=date.fromisoformat(args.end_date),
                          dirty_rate=args.dirty_rate, delivery_days=args.delivery_days)
    summary = generate(cfg, home)
    print(f"generated {args.customers} customers (seed {args.seed}) in {summary.seconds:.1f}s "
          f"under {home / 'landing'}")
    for name, rows in sorted(summary.rows.items()):
        print(f"  {name:<26} {rows:>12,}")


def prepare_dagster_home(home: Path) -> None:
    """A project-local DAGSTER_HOME with the instance settings the platform relies on (the
    project's ``dagster.yaml``, written afresh each time), and the ``duckdb`` pool created at its
    limit before any run (two runs starting at once would each create it otherwise)."""
    import dagster as dg

    home.mkdir(parents=True, exist_ok=True)
    template = (settings.PACKAGE_DIR / "config" / "dagster.yaml").read_text()
    text = template.replace("{home}", home.resolve().as_posix())
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        if storage.supports_global_concurrency_limits and "duckdb" not in storage.get_concurrency_keys():
            storage.initialize_concurrency_limit_to_default("duckdb")


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


def summary_lines(results=()) -> list[str]:
    import dagster as dg

    from crm_platform.core import warehouse

    p = settings.paths()
    lines = []
    for result in results:
        failed = [ev for ev in result.get_asset_check_evaluations() if not ev.passed]
        errors = [ev for ev in failed if ev.severity == dg.AssetCheckSeverity.ERROR]
        job = result.dagster_run.job_name
        lines.append(f"run {'of the selection' if job == '__ASSET_JOB' else job}{_partitions(result.dagster_run.tags)}"
                     f" {'succeeded' if result.success else 'FAILED'}; {len(errors)} failed check(s), "
                     f"{len(failed) - len(errors)} warning(s)")
        for ev in failed:
            lines.append(f"  check {ev.asset_key.to_user_string()}:{ev.check_name} "
                         f"{'failed' if ev in errors else 'warns'}: {ev.description}")
            if ev in errors:
                lines += [f"    {row}" for row in _failure_cases(ev)]
        lines += [f"  step {key} failed: {message}" for key, message in _step_failures(result)]
    con = warehouse.reader(p.warehouse)
    try:
        lines.append("staging tables:")
        for (name,) in con.execute("SELECT table_name FROM information_schema.tables WHERE "
                                   "table_schema = 'staging' ORDER BY 1").fetchall():
            n = con.execute(f"SELECT count(*) FROM staging.{name}").fetchall()[0][0]
            lines.append(f"  staging.{name:<20} {n:>12,} rows")
        from crm_platform.staging.tables import without_data

        lines += [f"  no {name} in the data: leaves out {what}" for name, what in without_data(con)]
        files = con.execute("SELECT count(*) FILTER (WHERE status = 'loaded'), count(*) FILTER "
                            "(WHERE status = 'quarantined'), coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0), "
                            "coalesce(sum(rows_quarantined), 0) FROM raw.ingest_manifest").fetchall()[0] \
            if warehouse.table_exists(con, "raw.ingest_manifest") else (0, 0, 0, 0, 0)
        lines.append(f"ingestion: {files[0]} files loaded, {files[1]} quarantined; "
                     f"{files[2]:,} rows read = {files[3]:,} loaded + {files[4]:,} quarantined")
        for reason, n in (con.execute(
                "SELECT regexp_replace(reason, '''.*''', '<value>') AS r, count(*) "
                "FROM raw.quarantine_rows GROUP BY 1 ORDER BY 2 DESC LIMIT 8").fetchall()
                if warehouse.table_exists(con, "raw.quarantine_rows") else []):
            lines.append(f"  quarantined {n:>6,} x {reason}")
        quality = dict(con.execute("SELECT metric, value FROM identity.resolution_quality").fetchall()) \
            if warehouse.table_exists(con, "identity.resolution_quality") else {}
        if quality:
            lines.append(f"identity: {int(quality['records']):,} contact records -> "
                         f"{int(quality['clusters']):,} customers; review queue "
                         f"{int(quality.get('review_queue', 0)):,} pairs")
            if "bcubed_f1" in quality:
                lines.append("  against the generator's truth: " + ", ".join(
                    f"{k} {quality[k]:.4f}" for k in ("bcubed_precision", "bcubed_recall", "bcubed_f1",
                                                     "pairwise_f1", "blocking_recall")))
        if warehouse.table_exists(con, "core.customer_events") and not latest_data_day():
            lines.append("timeline: no event yet, so no daily snapshot (features, segments, KPIs, scores, alerts, "
                         "dashboard) was computed")
        elif warehouse.table_exists(con, "core.customer_events"):
            ev = con.execute("SELECT count(*), count(DISTINCT customer_id), count(DISTINCT channel) "
                             "FROM core.customer_events").fetchall()[0]
            lost = con.execute("SELECT count(*) FROM core.unattributed_events").fetchall()[0][0]
            lines.append(f"timeline: {ev[0]:,} events of {ev[1]:,} customers over {ev[2]} channels; "
                         f"{lost:,} activity rows without a customer (core.unattributed_events)")
        if warehouse.table_exists(con, "features.customer_features"):
            for day, n, eng in con.execute(
                    "SELECT snapshot_date, count(*), round(avg(engagement_score), 2) FROM "
                    "features.customer_features GROUP BY 1 ORDER BY 1 DESC LIMIT 3").fetchall():
                lines.append(f"features: snapshot {day}: {n:,} customers, mean engagement {eng}")
        if warehouse.table_exists(con, "marts.kpi_daily"):
            day = con.execute("SELECT max(kpi_date) FROM marts.kpi_daily").fetchall()[0][0]
            k = dict(con.execute("SELECT kpi, value FROM marts.kpi_daily WHERE kpi_date = ? AND channel IS NULL",
                                 [day]).fetchall())
            notes = dict(con.execute("SELECT kpi, note FROM marts.kpi_daily WHERE kpi_date = ? AND channel IS NULL "
                                     "AND note IS NOT NULL", [day]).fetchall())
            stages = con.execute("SELECT lifecycle_stage, count(*) FROM marts.customer_segments WHERE snapshot_date = ? "
                                 "GROUP BY 1 ORDER BY 2 DESC", [day]).fetchall()
            fmt = lambda v, p="": "n/a" if v is None else f"{v:{p}}"  # noqa: E731
            lines.append(f"KPIs {day}: {fmt(k.get('active_customers'), ',.0f')} active customers, churn rate "
                         f"{fmt(k.get('churn_rate'), '.1%')}, NPS "
                         f"{fmt(k.get('nps'), '+.0f') if k.get('nps') is not None else 'n/a (' + notes.get('nps', 'no answers') + ')'}"
                         f", revenue (30 days) "
                         f"{fmt(k.get('revenue'), ',.0f')} EUR")
            lines.append("  stages: " + ", ".join(f"{s} {n:,}" for s, n in stages))
        lines += _model_lines(con, p)
        lines += _alert_lines(con, p)
        if warehouse.table_exists(con, "governance.audit_log"):
            counts = dict(con.execute("SELECT action, count(*) FROM governance.audit_log GROUP BY 1").fetchall())
            lines.append("audit log: " + ", ".join(f"{counts.get(a, 0):,} {a.replace('_', ' ')}(s)" for a in
                                                   ("erasure", "export", "review_decision", "model_promotion")))
    except duckdb.Error as e:
        # the runs' lines above are what matters; a warehouse left half-built must not hide them
        lines.append(f"(the rest of the summary could not be read from the warehouse: {str(e).splitlines()[0][:200]})")
    finally:
        con.close()
    board = p.reports / "dashboard.html"
    if board.exists():
        lines.append(f"dashboard:  {board}  (one file: open it in a browser, no server needed)")
    lines += [f"warehouse:  {p.warehouse}", f"quarantine: {p.quarantine}",
              f"truth:      {p.truth} (never read by the pipeline)",
              "Dagster UI: make ui  (then open http://127.0.0.1:3000)"]
    return lines


def _failure_cases(evaluation, rows: int = 5) -> list[str]:
    """The first failure cases a failed check recorded (its markdown table), as terminal lines."""
    for name in ("failure_cases", "examples"):
        value = evaluation.metadata.get(name)
        text = getattr(value, "md_str", None) or getattr(value, "value", None)
        if isinstance(text, str) and text.count("\n") >= 2:
            table = [line for line in text.splitlines() if line.strip()]
            return [table[0]] + table[2:2 + rows] + ([f"... ({len(table) - 2 - rows} more)"]
                                                    if len(table) > 2 + rows else [])
    return []


def _step_failures(result) -> list[tuple[str, str]]:
    """(step, first line of its error) of every step that raised (not a failed blocking check,
    which the check lines say)."""
    out = []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.event_specific_data.error
        while error is not None and error.cause is not None and "DagsterExecutionStepExecutionError" in error.cls_name:
            error = error.cause
        if error is None or "DagsterAssetCheckFailedError" in (error.cls_name or ""):
            continue
        out.append((event.step_key, f"{error.cls_name}: {error.message.strip().splitlines()[0][:300]}"))
    return out


def _partitions(tags) -> str:
    if "dagster/partition" in tags:
        return f" [{tags['dagster/partition']}]"
    if "dagster/asset_partition_range_start" in tags:
        return f" [{tags['dagster/asset_partition_range_start']} .. {tags['dagster/asset_partition_range_end']}]"
    return ""


def _alert_lines(con, p: settings.Paths) -> list[str]:
    """Alerts raised, where they went, and the uplift so far."""
    from crm_platform.core import warehouse
    from crm_platform.alerts.uplift import verdict as uplift_verdict

    if not warehouse.table_exists(con, "alerts.delivery_log"):
        return []
    lines = []
    for kind, treated, control, days in con.execute(
            "SELECT kind, count(*) FILTER (WHERE NOT is_control), count(*) FILTER (WHERE is_control), "
            "count(DISTINCT alert_date) FROM alerts.customer_alerts GROUP BY 1 ORDER BY 1").fetchall():
        lines.append(f"alerts {kind}: {treated:,} to deliver, {control:,} held back (control group) over {days} day(s)")
    kpi = dict((kind, (n, days)) for kind, n, days in con.execute(
        "SELECT kind, count(*), count(DISTINCT alert_date) FROM alerts.kpi_alerts GROUP BY 1").fetchall())
    for kind in ("kpi_band", "data_quality"):
        n, days = kpi.get(kind, (0, 0))
        lines.append(f"alerts {kind}: {n:,}" + (f" over {days} day(s)" if n else ""))
    lines.append("where the alerts went:")
    from crm_platform.alerts.delivery import Outbox

    ledger = Outbox(p.outbox)
    # the ledger counts what each sink ever acknowledged; the log of each day's latest delivery
    # says what is still failing and which sinks were left out
    for sink, failed, note in con.execute(
            "SELECT sink, sum(failed), any_value(note) FROM alerts.delivery_log GROUP BY 1 ORDER BY 1").fetchall():
        lines.append(f"  {sink}: left out ({note})" if note else
                     f"  {sink}: {len(ledger.delivered(sink)):,} alerts delivered"
                     + (f", {failed:,} failed (sent again next time)" if failed else ""))
    lines.append(f"  files and ledger: {p.outbox}")
    if warehouse.table_exists(con, "marts.action_uplift"):
        for kind, t, c, up, margin, note in con.execute(
                "SELECT kind, treated_alerts, control_alerts, order_rate_uplift, order_rate_uplift_margin, note "
                "FROM marts.action_uplift WHERE snapshot_date = (SELECT max(snapshot_date) FROM marts.action_uplift) "
                "ORDER BY 1").fetchall():
            lines.append(f"  uplift {kind}: " + (note if up is None else
                         f"order rate {100 * up:+.1f} ± {100 * margin:.1f} points (95 %; treated {t:,}, control {c:,}): "
                         f"{uplift_verdict(up, margin)}"))
    return lines


def _model_lines(con, p: settings.Paths) -> list[str]:
    """Champion, its test metrics and today's risk bands per model task."""
    from crm_platform.core import warehouse
    from crm_platform.ml.registry import Registry

    reg, lines = Registry(p.models), []
    for task in reg.tasks():
        champion, attempt = reg.champion(task), reg.last_attempt(task) or {}
        if champion is None:
            status = attempt.get("status", "never trained")
            last = reg.decisions(task)[-1:]
            if status == "trained" and last and last[0]["version"] == attempt.get("version"):
                status = f"{attempt['version']} refused: {'; '.join(last[0]['reasons'])}"
            lines.append(f"model {task}: no champion ({status})")
            continue
        card = reg.card(task, champion)
        if attempt.get("status", "").startswith("unchanged"):
            lines.append(f"model {task}: latest retraining {attempt['status']}")
        m = card["metrics"][card["model"]]
        lines.append(f"model {task}: champion {champion} ({card['model']}), test cutoff {card['test_cutoff']}: "
                     + ", ".join(f"{k} {m[k]:.3f}" for k in ("roc_auc", "pr_auc", "brier", "mae", "spearman", "aggregate_error",
                                                        "interval_coverage", "hit_rate_at_3", "hit_rate_at_1") if k in m)
                     + f"; {card['main_metric']} {card['challenger_metric']:.3f} vs baseline {card['baseline']} "
                       f"{card['baseline_metric']:.3f}")
        if card.get("notes"):
            lines.append(f"  {card['notes'][0]}")
        for name, error in (card.get("failed_candidates") or {}).items():
            lines.append(f"  candidate {name} failed to train: {error}")
        last = reg.decisions(task)[-1:]
        if last and last[0]["version"] != champion:
            lines.append(f"  latest challenger {last[0]['version']} refused: {'; '.join(last[0]['reasons'])}")
    if warehouse.table_exists(con, "ml.churn_scores"):
        day, bands = con.execute("SELECT max(snapshot_date) FROM ml.churn_scores").fetchall()[0][0], {}
        bands = dict(con.execute("SELECT risk_band, count(*) FROM ml.churn_scores WHERE snapshot_date = ? "
                                 "GROUP BY 1", [day]).fetchall())
        lines.append(f"churn scores {day}: " + ", ".join(f"{b} risk {bands.get(b, 0):,}" for b in ("high", "medium", "low"))
                     + _risk_band_note(con, reg, day))
    if warehouse.table_exists(con, "ml.clv_scores"):
        day, n, total, alive = con.execute("SELECT max(snapshot_date), count(*), sum(clv_12m), avg(probability_alive) "
                                           "FROM ml.clv_scores WHERE snapshot_date = (SELECT max(snapshot_date) "
                                           "FROM ml.clv_scores)").fetchall()[0]
        lines.append(f"CLV scores {day}: {n:,} customers, predicted 12-month value {total:,.0f} EUR, "
                     f"mean probability alive {alive:.2f}")
    return lines


def _risk_band_note(con, reg, day) -> str:
    """What the churn risk bands mean: their thresholds, the mean predicted probability and the
    share of customers who churned in the champion's training data (a base rate near one half
    makes "high" common, not alarming)."""
    from crm_platform.ml import load_config

    cfg = load_config(settings.models_file())
    mean = con.execute("SELECT avg(churn_probability) FROM ml.churn_scores WHERE snapshot_date = ?",
                       [day]).fetchall()[0][0]
    champion = reg.champion("churn")
    base = reg.card("churn", champion).get("train_positive_rate") if champion else None
    note = f" (high: probability >= {cfg.risk_high:.2f}, medium: >= {cfg.risk_medium:.2f}"
    if mean is not None:
        note += f"; mean probability {mean:.2f}"
    if base is not None:
        note += f", against a base rate of {base:.0%} who churned within {cfg.horizon_days} days in the training data"
    return note + ")"


# exit codes of materialize and backfill (docs/sources.md "The command line")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def materialize_selection(selection: str, partition: str | None = None, raise_on_error: bool = False,
                          progress: bool = False, started: float | None = None):
    """Runs of the assets a Dagster asset selection names (``group:identity``, ``+core/customers``,
    ``key:marts/*``) with their checks: the assets not partitioned by day in one run, then the
    daily ones for ``partition`` (default: the last day with data) in another."""
    import dagster as dg

    show = {"progress": progress, "started": started}
    run = job_runner(raise_on_error, **show)
    from crm_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    try:
        with warnings.catch_warnings():        # a group selection asks a beta parameter of Dagster's own
            warnings.simplefilter("ignore")
            keys = dg.AssetSelection.from_string(selection).resolve(graph)
    except Exception as e:             # the selection's own parser says what is wrong
        raise SelectionError(f"--select {selection!r}: {str(e).splitlines()[0]}") from None
    keys = {k for k in keys if graph.get(k).is_materializable}
    if not keys:
        raise SelectionError(f"--select {selection!r} names no asset of this code location")
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


def _materialize(args) -> int:
    try:
        # `demo` runs everything: no selection
        select = getattr(args, "select", None)
        show = {"progress": True, "started": getattr(args, "started", None)}
        results = materialize_selection(select, getattr(args, "partition", None), **show) if select else \
            materialize(history_days=args.days, **show)
    except SelectionError as e:
        print(f"crm-platform materialize: {e}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(summary_lines(results)))
    if getattr(args, "started", None):
        import time

        from crm_platform.cli.progress import clock
        print(f"the demo took {clock(time.monotonic() - args.started)}")
    return EXIT_OK if all(r.success for r in results) else EXIT_FAILED


def _backfill(args) -> int:
    """One run over a range of days (every daily asset has a single-run backfill policy)."""
    from sensors.days import range_tags

    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if end < start:
        print(f"--to {end} is before --from {start}", file=sys.stderr)
        return 2
    newest = newest_data_day(settings.paths().last_day_file)
    if newest is None or end > newest:
        print(f"--to {end} is after the newest day with data ({newest or 'none yet: run the core refresh first'}); "
              "the daily partitions end there", file=sys.stderr)
        return 2
    result = job_runner(fresh=_partitions_moved(), progress=True)(args.job, tags=range_tags(start, end))
    print("\n".join(summary_lines([result])))
    return 0 if result.success else 1


def _explain(args) -> int:
    from crm_platform.core import warehouse
    from crm_platform.identity.resolve import explain

    con = warehouse.connect(settings.paths().warehouse, read_only=True)
    try:
        print("\n".join(explain(con, args.left, args.right)))
    finally:
        con.close()
    return 0


def _match_spec(args) -> int:
    """Print the match spec the platform uses: derived from the staged contacts (or, before any
    contact is staged, the one for data that fills every match column), or the user's file merged
    onto it."""
    import yaml

    from crm_platform.core import warehouse
    from crm_platform.identity import derive
    from crm_platform.identity.spec import MatchSpecError, read_spec

    p = settings.paths()
    derived, where = derive.derive(derive.for_columns(derive.MATCH_COLUMNS)), "data that fills every match column"
    if p.warehouse.exists():
        con = warehouse.reader(p.warehouse)
        try:
            if warehouse.table_exists(con, "staging.contacts"):
                prof = derive.profile(con)
                derived, where = derive.derive(prof), f"staging.contacts ({prof.records:,} records)"
        finally:
            con.close()
    own = settings.match_spec_file()
    try:
        spec = read_spec(own, derived=derived) if own else derived
    except MatchSpecError as e:
        print(f"crm-platform: the match spec is not usable: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"# match spec derived from {where}" + (f", with {own.name} merged onto it" if own else "")
          + "\n# save it, edit it and point CRM_PLATFORM_MATCH_SPEC at it (or start a file with "
            "'extends: derived' and name only what differs); see docs/identity.md")
    print(yaml.safe_dump(spec, sort_keys=False, width=110, allow_unicode=True), end="")
    return 0


def _subject(args) -> tuple[str, str, dict]:
    """(identifier type, identifier, scope) of an erase or export: an e-mail address, or a customer
    id, or both (the e-mail address several customers hold, and the one meant)."""
    scope = {"all_matching": True} if args.all_matching else {}
    if args.email:
        if args.customer_id:
            scope = {"customer_id": args.customer_id}
        return "email", args.email, scope
    return "customer_id", args.customer_id, scope


def _refused(con, rid: str, kind: str, itype: str, actor: str, e) -> int:
    from crm_platform.governance import requests

    requests.record(con, rid, kind, itype, "refused", str(e), actor)
    print(f"refused: {e}", file=sys.stderr)
    return 4


def _erase(args) -> int:
    """Erase a person now; prints the receipt's counts (never the identifier)."""
    from crm_platform.core import audit
    from crm_platform.governance import erasure, requests
    from crm_platform.governance.subject import AmbiguousSubject, SubjectNotFound
    from crm_platform.ingest.sources import load_sources

    p, rid, actor = settings.paths(), erasure.new_request_id(), audit.default_actor()
    itype, ident, scope = _subject(args)
    cfg = load_sources(settings.sources_file())
    connect = lambda: _writer(p)  # noqa: E731
    if args.dry_run:
        con = connect()
        try:
            s = erasure.plan(con, p, cfg, itype, ident, **scope)
        except (SubjectNotFound, AmbiguousSubject) as e:
            print(f"nothing would be erased: {e}")
            return 3 if isinstance(e, SubjectNotFound) else 4
        finally:
            con.close()
        found = erasure.searched(s)
        print(f"would erase {found['customer_ids']} customer(s) with {found['contact_records']} source record(s) in "
              f"{', '.join(sorted({k.split(':', 1)[0] for k in s.contact_keys})) or 'no system'}; searched: "
              + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in found.items() if isinstance(v, int) and v))
        _print_candidates(s.candidates)
        return 0
    try:
        receipt = erasure.erase(connect, p, cfg, itype, ident, request_id=rid, actor=actor,
                                compact_warehouse=not args.no_compact, **scope)
    except SubjectNotFound as e:
        print(f"nothing to erase: {e}")
        return 3
    except AmbiguousSubject as e:
        con = connect()
        try:
            return _refused(con, rid, "erase", itype, actor, e)
        finally:
            con.close()
    v = receipt["verification"]
    con = connect()
    try:
        requests.record(con, rid, "erase", itype, "done" if v["passed"] else "failed",
                        f"receipt governance/receipts/{rid}.json", actor)
    finally:
        con.close()
    print(f"erasure {rid}: {receipt['customers_erased']} customer(s), {receipt['source_records_erased']} source "
          f"record(s) in {', '.join(receipt['source_systems']) or 'no system'}; {receipt['rows_removed_total']:,} rows "
          f"removed from {len(receipt['rows_removed'])} tables, {len(receipt['files_changed'])} file(s) changed")
    print(f"verification: {v['tables_scanned']} tables ({v['text_columns_scanned']} text columns) and "
          f"{v['files_scanned']} files scanned for the {v['identifiers_scanned_for']} identifiers linked to the "
          "person: " + ("no trace of them left" if v["passed"] else f"{v['occurrences']} trace(s) left in "
                        + ", ".join(f["where"] for f in v["found"][:10])))
    kept = receipt["shared_identifiers_kept"]
    print("not reached: records never linked to these identifiers"
          + (f"; {kept} e-mail address(es) or phone number(s) someone else holds too were kept" if kept else ""))
    _print_candidates(receipt["candidates"])
    print(f"receipt: {erasure.receipts_dir(p) / (rid + '.json')}")
    return 0 if v["passed"] else 1


def _print_candidates(candidates: list[dict]) -> None:
    """Records not linked to the person with the same name and birth date, postcode or city."""
    if not candidates:
        print("no other record with the same name and birth date, postcode or city")
        return
    print(f"{len(candidates)} record(s) not linked to the person have the same name and "
          "birth date, postcode or city - if one is the same person, erase it with --customer-id:")
    for c in candidates:
        print(f"  {c['source_system']} record of customer {c['customer_id'] or '(not resolved yet)'}: "
              f"same {', '.join(c['agreeing'])}")


def _export(args) -> int:
    from crm_platform.core import audit
    from crm_platform.governance import erasure, export, requests
    from crm_platform.governance.subject import AmbiguousSubject, SubjectNotFound
    from crm_platform.ingest.sources import load_sources

    p, rid, actor = settings.paths(), erasure.new_request_id(), audit.default_actor()
    itype, ident, scope = _subject(args)
    con = _writer(p)
    try:
        path = export.export(con, p, load_sources(settings.sources_file()), itype, ident, request_id=rid,
                             actor=actor, **scope)
        requests.record(con, rid, "export", itype, "done", f"export {path.relative_to(p.home).as_posix()}", actor)
    except SubjectNotFound as e:
        print(f"nothing to export: {e}")
        return 3
    except AmbiguousSubject as e:
        return _refused(con, rid, "export", itype, actor, e)
    finally:
        con.close()
    print(f"export {rid}: {path}")
    return 0


def _writer(p: settings.Paths):
    """The warehouse for writing; a run's step holding it is waited for (up to the lock wait)."""
    from crm_platform.core import warehouse

    try:
        return warehouse.connect(p.warehouse, on_wait=lambda why: print(
            f"the warehouse is in use by a running job; waiting up to {settings.lock_wait_seconds():g} s "
            f"(CRM_PLATFORM_LOCK_WAIT) ...", file=sys.stderr, flush=True))
    except warehouse.WarehouseBusy as e:
        raise SystemExit(f"{e}; try again when the run has finished, or drop a request file into "
                         f"{p.requests} for the subject_requests sensor") from None


def _demo(args) -> int:
    import time

    args.started = time.monotonic()
    print(f"> generate: {args.customers} customers (seed {args.seed})", file=sys.stderr, flush=True)
    _generate(args)
    return _materialize(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (("generate", _generate, "write demo landing files and truth"),
                            ("demo", _demo, "generate, materialize everything, summarize")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--customers", type=int, default=10000)
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--end-date", default="2026-09-30", help="last day of generated activity")
        p.add_argument("--dirty-rate", type=float, default=0.002,
                       help="share of rows per file with an injected data error")
        p.add_argument("--delivery-days", type=int, default=0,
                       help="hold back what the last N days created as a delivery under deliveries/<end date>/")
        p.add_argument("--home", help="output folder (default: $CRM_PLATFORM_HOME)")
        if name == "demo":
            p.add_argument("--days", type=int, default=14, help="daily partitions before the last day to compute "
                                                                "too (default 14)")
        p.set_defaults(fn=fn)
    m = sub.add_parser("materialize", help="materialize every asset and run every check (or a selection)",
                       description="Without --select: the core refresh, the models, then the daily assets of "
                                   "the last day with data and the --days before it, as the schedules run "
                                   "them. Exit 0: every run succeeded; 1: a run failed (a step's error or a "
                                   "blocking check; the summary says which); 2: bad arguments or sources.")
    m.add_argument("--select", help="a Dagster asset selection: group:identity, +core/customers, "
                                    "key:ml/churn_scores, ... (daily assets run for the last day with data)")
    m.add_argument("--partition", help="with --select: the day of the daily assets (default: the last day with data)")
    m.add_argument("--days", type=int, default=14, help="daily partitions before the last day to compute too "
                                                        "(default 14: a baseline for the KPI alerts)")
    m.set_defaults(fn=_materialize)
    b = sub.add_parser("backfill", help="materialize the daily assets of a range of days in one run")
    b.add_argument("--from", dest="start", required=True, help="first day, e.g. 2026-09-01")
    b.add_argument("--to", dest="end", required=True, help="last day, e.g. 2026-09-30")
    b.add_argument("--job", default="daily_snapshots", help="a day-partitioned job (default daily_snapshots)")
    b.set_defaults(fn=_backfill)
    e = sub.add_parser("explain", help="why two contact records are (not) the same customer")
    e.add_argument("left", help="contact key, e.g. shop:K00000123")
    e.add_argument("right", help="contact key, e.g. newsletter:NL-0000456")
    e.set_defaults(fn=_explain)
    ms = sub.add_parser("match-spec", help="print the match spec identity resolution uses (derived from the data)")
    ms.set_defaults(fn=_match_spec)
    for name, fn, help_ in (("erase", _erase, "erase a person from every table and file, verify, write a receipt"),
                            ("export", _export, "write everything held about a person as one JSON document")):
        g = sub.add_parser(name, help=help_, description=(
            "Name the person by --email or --customer-id. An e-mail address several customers hold is "
            "refused (exit 4, with their number) unless --customer-id names the one meant or "
            "--all-matching takes every one of them; the refusal is recorded in the audit log."))
        g.add_argument("--email")
        g.add_argument("--customer-id")
        g.add_argument("--all-matching", action="store_true",
                       help="with --email: every customer holding the address (a shared address reaches them all)")
        if name == "erase":
            g.add_argument("--no-compact", action="store_true",
                           help="skip rewriting the warehouse file (deleted values may linger in free blocks)")
            g.add_argument("--dry-run", action="store_true",
                           help="change nothing: say what would be erased and list the records not linked "
                                "to the person with the same name and birth date, postcode or city")
        g.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    if args.command in ("erase", "export"):
        if not (args.email or args.customer_id):
            parser.error(f"{args.command}: give --email or --customer-id")
        if args.all_matching and (args.customer_id or not args.email):
            parser.error(f"{args.command}: --all-matching goes with --email alone")
    if getattr(args, "home", None):
        os.environ["CRM_PLATFORM_HOME"] = str(Path(args.home).resolve())
    from crm_platform.ingest.sources import SourceConfigError

    try:
        return args.fn(args) or 0
    except SourceConfigError as e:          # the mapping says where; a traceback would not help
        print(f"crm-platform: the source declaration is not usable: {e}", file=sys.stderr)
        return EXIT_USAGE

