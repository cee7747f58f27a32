"""Sensors on runs and checks: a failed run becomes a data-quality alert; a drift warning on the
scores requests retraining of the model behind them."""

import json
from datetime import datetime, timezone

import dagster as dg

from dagster_duckdb import DuckDBResource

from assets.lib import keys
from crm_platform.core import check_results
from crm_platform.alerts.delivery import alert_id
from resources.alerts import Alerting
from sensors.defaults import sensor_status

def failure_alert(job: str, run_id: str, message: str, day: str) -> dict:
    return {"alert_id": alert_id("data_quality", f"run:{job}", run_id, ""), "alert_date": day,
            "kind": "data_quality", "customer_id": None, "subject": f"run:{job}",
            "reason": f"run {run_id[:8]} of {job} failed: {message}"[:500], "model_version": None}


@dg.run_failure_sensor(name="run_failures", default_status=sensor_status(),
                       description="Delivers a data-quality alert through the configured sinks when a run "
                                   "of this code location fails (once per run: the outbox ledger).")
def run_failures(context: dg.RunFailureSensorContext, alerting: Alerting):
    run = context.dagster_run
    steps = [e.step_key for e in context.get_step_failure_events()]
    message = (context.failure_event.message or "failed").splitlines()[0]
    if steps:
        message = f"step(s) {', '.join(steps)} failed; {message}"
    when = datetime.now(timezone.utc).date().isoformat()
    sinks, skipped = alerting.sinks()
    report = alerting.outbox().deliver([failure_alert(run.job_name, run.run_id, message, when)], sinks)
    context.log.info(f"data-quality alert for run {run.run_id}: sent {report.sent}, failed {report.failed}"
                     + (f", left out: {skipped}" if skipped else ""))


def drift_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(name="drift_retraining", job=job, minimum_interval_seconds=300,
               default_status=sensor_status(),
               description="Requests retraining of a model when the latest drift check of its scores warns "
                           "(PSI above the threshold of config/models.yaml); once per warning.")
    def drift_retraining(context: dg.SensorEvaluationContext, warehouse: DuckDBResource):
        scored_by = {k.to_user_string(): model for k, model in keys.SCORED_BY.items()}
        latest = check_results.latest(check_results.path_beside(warehouse.database),
                                      {(name, "drift") for name in scored_by})
        # the cursor: the number of the latest drift evaluation handled per scores table (older cursors,
        # numbered by Dagster's event log, start afresh)
        seen = json.loads(context.cursor).get("check_results", {}) if context.cursor else {}
        models, handled = [], dict(seen)
        for ev in latest:
            if ev.seq <= seen.get(ev.asset, 0):
                continue
            handled[ev.asset] = ev.seq
            if not ev.passed:
                models.append(scored_by[ev.asset])
        if not models:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new drift warning"),
                                   cursor=json.dumps({"check_results": handled}, sort_keys=True))
        run_key = "drift:" + ",".join(f"{k}={v}" for k, v in sorted(handled.items()))
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=run_key, asset_selection=sorted(models, key=str),
                                        tags={"crm_platform/trigger": "drift"})],
            cursor=json.dumps({"check_results": handled}, sort_keys=True))

    return drift_retraining
