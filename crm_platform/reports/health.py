"""The health sections of the dashboard: model quality, identity resolution, data quality and the
alerts with their effect."""

from __future__ import annotations

from datetime import date

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crm_platform.core import settings
from crm_platform.alerts.uplift import verdict as uplift_verdict
from crm_platform.reports.context import (BLUE, GREEN, ORANGE, RED, GREY, Context, chart, table)


# -------------------------------------------------------------------------------------- models
@chart("calibration", "Churn model calibration",
       "Observed churn rate against the predicted probability per score bin on the model's test "
       "cutoff; the closer to the diagonal, the more a '30%' really means 30 in 100.")
def calibration(ctx: Context):
    card = ctx.cards.get("churn")
    if not card or "calibration" not in card:
        return "no champion churn model with a calibration table"
    t = pd.DataFrame(card["calibration"])
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                                line=dict(dash="dash", color=GREY)),
                     go.Scatter(x=t.predicted, y=t.observed, mode="lines+markers", name=card.get("version", "champion"),
                                line=dict(color=BLUE))])
    fig.update_layout(xaxis=dict(title="predicted churn probability", range=[0, 1]),
                      yaxis=dict(title="observed churn rate", range=[0, 1]))
    return fig


@chart("lift", "Lift by score decile",
       "How many times the average rate each tenth of customers shows when ranked by model score "
       "(1 = highest scores), on the test cutoff, one panel per model on its own scale; above 1 on "
       "the left means the model finds the cases.")
def lift(ctx: Context):
    shown = {task: pd.DataFrame(card["deciles"]) for task, card in sorted(ctx.cards.items()) if card.get("deciles")}
    if not shown:
        return "no champion model with a decile table"
    fig = make_subplots(rows=1, cols=len(shown), subplot_titles=[
        f"{task.replace('_', ' ')} ({ctx.cards[task].get('version', '')})" for task in shown])
    for i, t in enumerate(shown.values(), start=1):
        fig.add_trace(go.Bar(x=t.decile, y=t.lift, marker_color=BLUE, showlegend=False,
                             hovertemplate="decile %{x}: lift %{y:.2f}<extra></extra>"), row=1, col=i)
        fig.add_hline(y=1, line_dash="dash", line_color=GREY, row=1, col=i)
        fig.update_xaxes(title_text="score decile (1 = highest)", dtick=1, row=1, col=i)
    fig.update_yaxes(title_text="lift", row=1, col=1)
    return fig


@chart("clv_deciles", "CLV model: predicted vs actual value",
       "Mean predicted and actual 12-month value per decile of predicted value on the test cutoff;"
       " the bars should rise together from left to right and be of similar height.")
def clv_deciles(ctx: Context):
    card = ctx.cards.get("clv")
    if not card or not card.get("value_deciles"):
        return "no champion CLV model with value deciles"
    t = pd.DataFrame(card["value_deciles"])
    fig = go.Figure([go.Bar(name="predicted", x=t.decile, y=t.mean_predicted, marker_color=BLUE),
                     go.Bar(name="actual", x=t.decile, y=t.mean_actual, marker_color=GREEN)])
    fig.update_layout(barmode="group", xaxis=dict(title="decile of predicted value", dtick=1), yaxis_title="EUR")
    return fig


@table("champions", "Champion models",
       "The model version scoring each task, its main metric on the test cutoff against the naive "
       "baseline it had to beat; a model without a champion scores nothing.")
def champions(ctx: Context):
    rows = [{"task": task, "version": c.get("version", ""), "model": c["model"], "metric": c["main_metric"],
             "champion": round(float(c["challenger_metric"]), 4), "baseline": round(float(c["baseline_metric"]), 4),
             "baseline_model": c["baseline"], "test_cutoff": c["test_cutoff"]} for task, c in sorted(ctx.cards.items())]
    return pd.DataFrame(rows) if rows else "no champion model yet"


# ------------------------------------------------------------------------------------------ identity
def identity_quality(ctx: Context) -> dict:
    if ctx.absent("identity.resolution_quality"):
        return {}
    return dict(ctx.con.execute("SELECT metric, value FROM identity.resolution_quality").fetchall())


@chart("cluster_sizes", "Source records per customer",
       "Golden customers by how many source records (shop, newsletter, support, sales, ...) were "
       "merged into them; customers right of 1 are the duplicates the platform resolved.",
       "identity.crosswalk")
def cluster_sizes(ctx: Context):
    frame = ctx.df("""SELECT least(n, 6) AS records, count(*) AS customers FROM
                      (SELECT customer_id, count(*) AS n FROM identity.crosswalk GROUP BY 1) GROUP BY 1 ORDER BY 1""")
    if frame.empty:
        return "no resolved records"
    fig = go.Figure(go.Bar(x=[str(r) if r < 6 else "6+" for r in frame.records], y=frame.customers,
                           marker_color=BLUE, texttemplate="%{y:,}"))
    fig.update_layout(xaxis_title="source records per customer", yaxis_title="customers")
    return fig


@chart("review_queue", "Review queue",
       "Uncertain record pairs waiting for a person, by match probability; the middle of the range"
       " is where the model cannot tell, a growing queue means decisions are piling up.",
       "identity.review_queue")
def review_queue(ctx: Context):
    frame = ctx.df("""SELECT least(floor(match_probability * 10), 9) / 10 AS bin,
                             count(*) FILTER (WHERE decision IS NULL) AS open,
                             count(*) FILTER (WHERE decision IS NOT NULL) AS decided
                      FROM identity.review_queue GROUP BY 1 ORDER BY 1""")
    if frame.empty:
        return "the review queue is empty: no uncertain pairs"
    fig = go.Figure([go.Bar(name="open", x=frame.bin + 0.05, y=frame.open, width=0.1, marker_color=ORANGE),
                     go.Bar(name="decided", x=frame.bin + 0.05, y=frame.decided, width=0.1, marker_color=GREEN)])
    fig.update_layout(barmode="stack", xaxis=dict(title="match probability", range=[0, 1], tickformat=".0%"),
                      yaxis_title="pairs")
    return fig


IDENTITY_METRICS = ["records", "clusters", "merge_rate", "largest_cluster", "review_queue", "bcubed_precision",
                    "bcubed_recall", "bcubed_f1", "pairwise_f1", "blocking_recall"]


@table("identity_quality", "Resolution quality",
       "Records, customers and merge rate of the latest resolution; precision and recall where the"
       " generator's truth is known (demo data), descriptive figures otherwise.",
       "identity.resolution_quality", wide=False)
def identity_table(ctx: Context):
    frame = ctx.df("SELECT metric, value, measured_against FROM identity.resolution_quality")
    shown = frame[frame.metric.isin(IDENTITY_METRICS)].copy()
    shown["metric"] = pd.Categorical(shown.metric, IDENTITY_METRICS, ordered=True)
    return shown.sort_values("metric").astype({"metric": str})


# -------------------------------------------------------------------------------------- data quality
@chart("ingestion", "Quarantine rate per source",
       "Rows set aside per 1,000 rows read, per source dataset, over every landing file so far "
       "(hover for counts); a tall bar is a source sending rows the platform cannot trust.",
       "raw.ingest_manifest")
def ingestion(ctx: Context):
    frame = ctx.df("""SELECT dataset, sum(rows_read) AS read, sum(rows_loaded) AS loaded,
                             sum(rows_quarantined) AS quarantined,
                             count(*) FILTER (WHERE status = 'quarantined') AS files_refused
                      FROM raw.ingest_manifest GROUP BY 1 ORDER BY 1 DESC""")
    if frame.empty or not frame.read.sum():
        return "no landing file ingested yet"
    rate = 1000 * frame.quarantined / frame.read.where(frame.read > 0)
    fig = go.Figure(go.Bar(y=frame.dataset, x=rate.fillna(0), orientation="h", marker_color=RED,
                           customdata=frame[["read", "loaded", "quarantined", "files_refused"]],
                           texttemplate="%{x:.1f}", hovertemplate=(
                               "%{y}: %{customdata[0]:,} rows read, %{customdata[1]:,} loaded, %{customdata[2]:,} "
                               "quarantined; %{customdata[3]} file(s) refused<extra></extra>")))
    fig.update_layout(xaxis_title="quarantined rows per 1,000 read")
    return fig


@table("coverage", "What the data covers",
       "The kinds of data no source delivers, and what the dashboard and the models go without "
       "because of it: add the export to the sources mapping to get them.", "raw.ingest_manifest", wide=False)
def coverage(ctx: Context):
    from crm_platform.staging.tables import without_data

    missing = without_data(ctx.con)
    if not missing:
        return "every kind of data is there: shop, order lines, e-mail, support, web, survey, sales and spend"
    return pd.DataFrame(missing, columns=["not in the data", "leaves out"])


@chart("quarantine_reasons", "Quarantine reasons",
       "The most frequent reasons rows were set aside (values masked); fix the source or the "
       "mapping for the top ones.",
       "raw.quarantine_rows")
def quarantine_reasons(ctx: Context):
    frame = ctx.df("""SELECT left(regexp_replace(reason, '''.*''', '<value>'), 70) AS reason, count(*) AS rows
                      FROM raw.quarantine_rows GROUP BY 1 ORDER BY 2 DESC LIMIT 10""")
    if frame.empty:
        return "no row was quarantined"
    frame = frame.iloc[::-1]
    fig = go.Figure(go.Bar(y=frame.reason, x=frame.rows, orientation="h", marker_color=RED))
    fig.update_layout(xaxis_title="rows", margin=dict(l=300))
    return fig


@chart("checks", "Asset checks",
       "Latest result of every data check per layer: passed, warning or failed; a failed check "
       "stops the tables after it, warnings are worth a look (listed below).")
def check_status(ctx: Context):
    if ctx.checks is None:
        return "no check results (rendered outside Dagster)"
    if ctx.older:
        return f"the check results kept are those of the latest run, not of {ctx.day}: see the newest dashboard"
    if not ctx.checks:
        return "no check has run yet"
    frame = pd.DataFrame([{"layer": c.asset.split("/")[0], "status": "passed" if c.passed else
                           ("failed" if c.severity == "ERROR" else "warning")} for c in ctx.checks])
    counts = frame.groupby(["layer", "status"]).size().unstack(fill_value=0)
    fig = go.Figure([go.Bar(name=s, x=counts.index, y=counts[s], marker_color=color)
                     for s, color in (("passed", GREEN), ("warning", ORANGE), ("failed", RED)) if s in counts])
    fig.update_layout(barmode="stack", yaxis_title="checks")
    return fig


@table("failing_checks", "Checks not passing",
       "Each check whose latest result is a failure or warning, with what it found.")
def failing_checks(ctx: Context):
    rows = [{"asset": c.asset, "check": c.check, "severity": c.severity, "found": c.description[:360]}
            for c in ctx.checks or [] if not c.passed]
    if ctx.checks is None:
        return "no check results (rendered outside Dagster)"
    if ctx.older:
        return f"the check results kept are those of the latest run, not of {ctx.day}: see the newest dashboard"
    return pd.DataFrame(rows) if rows else "every check passed"


# -------------------------------------------------------------------------------------------- alerts
@chart("alerts_per_day", "Alerts raised",
       "Customer alerts delivered per day over the last 30 days, one panel per kind on its own "
       "scale (the light part: the control group held back to measure the effect). A day computed "
       "without the days before it (the first day, or the first after a gap longer than the "
       "suppression window) raises the backlog of every customer qualifying then; such a day is "
       "left out of the panels and its count given above them.",
       "alerts.customer_alerts", "marts.kpi_daily", wide=True)
def alerts_per_day(ctx: Context):
    from crm_platform.alerts.rules import load_config

    window = max(load_config(settings.alerts_file()).suppression_days.values())
    frame = ctx.df(f"""SELECT alert_date, kind, count(*) FILTER (WHERE NOT is_control) AS treated,
                              count(*) FILTER (WHERE is_control) AS control
                       FROM alerts.customer_alerts
                       WHERE alert_date BETWEEN {ctx.d} - INTERVAL 29 DAY AND {ctx.d} GROUP BY ALL ORDER BY 1""")
    if frame.empty:
        return f"no customer alert in the 30 days up to {ctx.day}"
    backlog_days = set(backlog_alert_days(ctx, window))
    backlog = frame[frame.alert_date.dt.date.isin(backlog_days)]
    frame = frame[~frame.alert_date.dt.date.isin(backlog_days)]
    said = "; ".join(f"{d:%d %b %Y}: {int(n):,} alerts" for d, n in
                     backlog.groupby(backlog.alert_date.dt.date)[["treated", "control"]].sum().sum(axis=1).items())
    if frame.empty:
        return f"only backlog days in the 30 days up to {ctx.day} ({said}: computed without the {window} days before)"
    kinds = sorted(frame.kind.unique())
    colors = {"churn_risk": RED, "lifecycle": BLUE, "next_best_offer": GREEN}
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=[k.replace("_", " ") for k in kinds])
    for i, kind in enumerate(kinds, start=1):
        part = frame[frame.kind == kind]
        for col, opacity, name in (("treated", 1.0, "delivered"), ("control", 0.35, "control group")):
            fig.add_trace(go.Bar(x=part.alert_date, y=part[col], name=name, marker_color=colors.get(kind, GREY),
                                 opacity=opacity, showlegend=False,
                                 hovertemplate=f"%{{x|%d %b}}: %{{y:,}} {name}<extra>{kind}</extra>"), row=1, col=i)
        top = int((part.treated + part.control).max())
        fig.update_yaxes(dtick=max(1, -(-top // 5)), rangemode="tozero", row=1, col=i)
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text="alerts", row=1, col=1)
    fig.update_xaxes(tickformat="%d %b")
    if said:
        fig.add_annotation(text=f"not shown, the backlog of a day computed without the {window} days before: {said}",
                           xref="paper", yref="paper", x=0, y=1.1, yanchor="bottom", showarrow=False,
                           xanchor="left", font=dict(color=GREY))
        fig.update_layout(margin=dict(t=60))
    return fig


def backlog_alert_days(ctx: Context, window: int) -> list[date]:
    """Alert days of the 30 up to the context's day computed without any of the ``window`` days
    before them (no KPI day there): their alerts are a backlog, not that day's news."""
    return [d.date() if hasattr(d, "date") else d for (d,) in ctx.con.execute(f"""
        SELECT DISTINCT a.alert_date FROM alerts.customer_alerts a
        WHERE a.alert_date BETWEEN {ctx.d} - INTERVAL 29 DAY AND {ctx.d}
          AND NOT EXISTS (SELECT 1 FROM marts.kpi_daily k WHERE k.kpi_date < a.alert_date
                          AND k.kpi_date >= a.alert_date - INTERVAL {int(window)} DAY)""").fetchall()]


@chart("delivery", "Delivery per sink",
       "Alerts each destination (CRM import, e-mail outbox, webhook) took over the last 30 days, "
       "and those still failing there at the latest delivery (offered again on the next run).",
       "alerts.delivery_log")
def delivery(ctx: Context):
    # a day's delivery offers that day's alerts and the ones failed in the retry days before: "sent"
    # counts each alert once, the latest day's "failed" is what is still pending
    frame = ctx.df(f"""SELECT sink, sum(sent) AS delivered, arg_max(failed, alert_date) AS failed
                       FROM alerts.delivery_log WHERE note IS NULL
                         AND alert_date BETWEEN {ctx.d} - INTERVAL 29 DAY AND {ctx.d} GROUP BY 1 ORDER BY 1""")
    if frame.empty or not frame[["delivered", "failed"]].to_numpy().sum():
        return f"no alert to deliver in the 30 days up to {ctx.day}"
    fig = go.Figure([go.Bar(name=c, x=frame.sink, y=frame[c], marker_color=color, texttemplate="%{y:,}")
                     for c, color in (("delivered", GREEN), ("failed", RED))])
    fig.update_layout(barmode="stack", yaxis_title="alerts")
    return fig


@chart("uplift", "Effect of the alerts (control-group uplift)",
       "Order rate in the follow-up window of customers whose alert was delivered minus that of "
       "the held-back control group, with its 95% margin. A bar whose margin crosses zero is not "
       "distinguishable from chance: the alerts may have helped, done nothing or harmed.",
       "marts.action_uplift")
def uplift(ctx: Context):
    frame = ctx.df(f"""SELECT kind, treated_alerts, control_alerts, order_rate_uplift, order_rate_uplift_margin, note
                       FROM marts.action_uplift WHERE snapshot_date = {ctx.d} ORDER BY kind""")
    shown = frame.dropna(subset=["order_rate_uplift"])
    if shown.empty:
        return "; ".join(f"{r.kind}: {r.note}" for r in frame.itertuples()) or f"no uplift rows for {ctx.day}"
    verdicts = [uplift_verdict(r.order_rate_uplift, r.order_rate_uplift_margin) for r in shown.itertuples()]
    fig = go.Figure(go.Bar(x=[f"{k.replace('_', ' ')}<br>{v}" for k, v in zip(shown.kind, verdicts)],
                           y=shown.order_rate_uplift, marker_color=[GREY if "chance" in v else BLUE for v in verdicts],
                           width=0.4,
                           texttemplate="%{y:+.1%}", error_y=dict(type="data", array=shown.order_rate_uplift_margin),
                           customdata=shown[["treated_alerts", "control_alerts"]],
                           hovertemplate="%{y:+.1%} (treated %{customdata[0]:,}, control %{customdata[1]:,})<extra></extra>"))
    fig.add_hline(y=0, line_color=GREY)
    fig.update_layout(yaxis=dict(title="order-rate uplift", tickformat="+.0%"))
    return fig


@table("kpi_alerts", "KPI and data-quality alerts of the day",
       "KPIs that left their expected band and checks that failed, as sent to the teams.",
       "alerts.kpi_alerts")
def kpi_band_alerts(ctx: Context):
    frame = ctx.df(f"""SELECT kind, subject, left(reason, 160) AS reason, round(value, 4) AS value,
                              round(expected_low, 4) AS expected_low, round(expected_high, 4) AS expected_high
                       FROM alerts.kpi_alerts WHERE alert_date = {ctx.d} ORDER BY kind, subject""")
    return frame if len(frame) else f"no KPI or data-quality alert on {ctx.day}"
