"""What the command line prints when its runs end: each run and its failed checks with their first
failure cases, then what was built - rows per layer, alerts and where they went, the models."""

from __future__ import annotations


import duckdb

from crm_platform.core import settings
from crm_platform.cli.runs import latest_data_day



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
