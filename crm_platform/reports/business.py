"""The business sections of the dashboard: the KPI tiles and trends, CAC against CLV, the lifecycle,
RFM segments, cohorts and churn risk."""

from __future__ import annotations


import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crm_platform.marts import segments
from crm_platform.core import settings
from crm_platform.marts.attribution import attribution_sql
from crm_platform.reports.page import Tile
from crm_platform.core.days import day_end
from crm_platform.contracts.schemas import AtRiskCustomers
from crm_platform.core.warehouse import table_exists
from crm_platform.contracts.vocabularies import STAGES
from crm_platform.reports.context import (BLUE, GREEN, ORANGE, RED, GREY, BAND_COLORS, TOP_AT_RISK, TREND_DAYS, Context, chart, table)


# ---------------------------------------------------------------------------------------------- KPIs
TILES = [  # kpi, label, format, higher is better, what it means
    ("active_customers", "Active customers", "{:,.0f}", True, "customers in an active lifecycle stage today"),
    ("churn_rate", "Churn rate (30 days)", "{:.1%}", False, "share of active or at-risk customers who churned in the window"),
    ("nps", "NPS (30 days)", "{:+.0f}", True, "promoters minus detractors among the window's survey answers"),
    ("historic_clv", "Historic CLV", "{:,.0f} EUR", True, "net value per buyer so far: orders - returns - support cost"),
    ("revenue", "Revenue (30 days)", "{:,.0f} EUR", True, "order value of the last 30 days"),
    ("repeat_purchase_rate", "Repeat-purchase rate", "{:.1%}", True, "share of the window's buyers with two orders or more"),
]
COMPARE_DAYS = 7


def tiles(ctx: Context) -> list[Tile]:
    """The KPI header: today's value of each headline KPI against a week before."""
    if ctx.absent("marts.kpi_daily"):
        return [Tile(label, "n/a", "marts.kpi_daily not built yet", help_) for _, label, _, _, help_ in TILES]
    rows = ctx.df(f"""SELECT kpi, kpi_date, value, note FROM marts.kpi_daily WHERE channel IS NULL
                      AND kpi_date IN ({ctx.d}, {ctx.d} - INTERVAL {COMPARE_DAYS} DAY)""")
    now = rows[rows.kpi_date.dt.date == ctx.day].set_index("kpi")
    before = rows[rows.kpi_date.dt.date != ctx.day].set_index("kpi")
    out = []
    for kpi, label, fmt, higher, help_ in TILES:
        if kpi not in now.index or pd.isna(now.at[kpi, "value"]):
            note = now.at[kpi, "note"] if kpi in now.index else f"no value for {ctx.day}"
            out.append(Tile(label, "n/a", note, help_))
            continue
        v = float(now.at[kpi, "value"])
        detail, tone = f"no value {COMPARE_DAYS} days before", ""
        if kpi in before.index and pd.notna(before.at[kpi, "value"]):
            b = float(before.at[kpi, "value"])
            delta = v - b
            detail = f"{'+' if delta >= 0 else '−'}{fmt.format(abs(delta)).lstrip('+')} vs {COMPARE_DAYS} days before"
            tone = "" if abs(delta) < 1e-12 else ("good" if (delta > 0) == higher else "bad")
        out.append(Tile(label, fmt.format(v), detail, help_, tone))
    out.append(_predicted_clv_tile(ctx))
    return out


def _predicted_clv_tile(ctx: Context) -> Tile:
    help_ = "mean predicted net value of the next 12 months per customer with an order (CLV model)"
    if ctx.absent("ml.clv_scores"):
        return Tile("Predicted CLV (12 months)", "n/a", "ml.clv_scores not built yet", help_)
    n, mean, total = ctx.con.execute(f"SELECT count(*), avg(clv_12m), sum(clv_12m) FROM ml.clv_scores "
                                     f"WHERE snapshot_date = {ctx.d}").fetchall()[0]
    if not n:
        return Tile("Predicted CLV (12 months)", "n/a", f"no CLV scores for {ctx.day} (no champion model?)", help_)
    return Tile("Predicted CLV (12 months)", f"{mean:,.0f} EUR", f"{total:,.0f} EUR over {n:,} customers", help_)


@chart("cac_vs_clv", "CAC vs CLV per channel",
       "What a new customer cost per marketing channel in the last 30 days (CAC: spend / "
       "first-touch new customers) beside the predicted 12-month value of the customers it "
       "brought; a channel pays off where the green bar is higher than the blue one.",
       "marts.kpi_daily", "ml.clv_scores", "staging.marketing_spend", wide=True)
def cac_vs_clv(ctx: Context):
    end = day_end(ctx.day)
    start = f"({end} - INTERVAL {ctx.kpi.window_days} DAY)"
    frame = ctx.df(f"""
        WITH a AS ({attribution_sql(start, end, ctx.kpi.attribution_lookback_days)}),
        new_ AS (SELECT channel, customer_id, credit FROM a WHERE rule = 'first_touch' AND is_first_order),
        clv AS (SELECT n.channel, sum(n.credit) AS new_customers,
                       sum(n.credit * s.clv_12m) / nullif(sum(n.credit) FILTER (WHERE s.clv_12m IS NOT NULL), 0) AS clv
                FROM new_ n LEFT JOIN ml.clv_scores s ON s.customer_id = n.customer_id AND s.snapshot_date = {ctx.d}
                GROUP BY 1),
        cac AS (SELECT channel, value AS cac FROM marts.kpi_daily WHERE kpi = 'cac' AND kpi_date = {ctx.d})
        SELECT cac.channel, cac.cac, clv.new_customers,
               CASE WHEN clv.new_customers >= {ctx.kpi.min_channel_customers} THEN clv.clv END AS clv
        FROM cac LEFT JOIN clv USING (channel) ORDER BY cac.channel""")
    shown = frame.dropna(subset=["cac", "clv"], how="all")
    if shown.empty:
        return (f"no channel won {ctx.kpi.min_channel_customers} or more first-touch new customers in the last "
                f"{ctx.kpi.window_days} days up to {ctx.day}")
    fig = go.Figure([
        go.Bar(name="CAC (EUR per new customer)", x=shown.channel, y=shown.cac, marker_color=BLUE),
        go.Bar(name="Predicted 12-month CLV (EUR)", x=shown.channel, y=shown.clv, marker_color=GREEN,
               customdata=shown.new_customers, hovertemplate="%{y:,.0f} EUR over %{customdata:.1f} new customers"),
    ])
    fig.update_layout(barmode="group", yaxis_title="EUR")
    return fig


TREND_KPIS = [("active_customers", "Active customers"), ("churn_rate", "Churn rate"), ("nps", "NPS"),
              ("revenue", "Revenue, 30 days (EUR)"), ("average_order_value", "Average order value (EUR)"),
              ("repeat_purchase_rate", "Repeat-purchase rate")]


@chart("kpi_trends", "KPI trends",
       "Each headline KPI per day (each point covers the 30 days up to that day), over the daily "
       "partitions built so far; a gap is a day whose base was too small to report.",
       "marts.kpi_daily", wide=True)
def kpi_trends(ctx: Context):
    frame = ctx.df(f"""SELECT kpi_date, kpi, value, note FROM marts.kpi_daily WHERE channel IS NULL
                       AND kpi_date BETWEEN {ctx.d} - INTERVAL {TREND_DAYS} DAY AND {ctx.d} ORDER BY 1""")
    notes = frame.dropna(subset=["note"]).groupby("kpi")["note"].last().to_dict()
    days = frame.kpi_date.nunique()
    if days < 2:
        return f"{days} day(s) of KPIs up to {ctx.day}: a trend needs two or more"
    fig = make_subplots(rows=2, cols=3, subplot_titles=[t for _, t in TREND_KPIS], vertical_spacing=0.18)
    for i, (kpi, label) in enumerate(TREND_KPIS):
        s = frame[frame.kpi == kpi]
        fig.add_trace(go.Scatter(x=s.kpi_date, y=s.value, mode="lines+markers", name=label, showlegend=False,
                                 line=dict(color=BLUE)), row=i // 3 + 1, col=i % 3 + 1)
        if s.value.notna().sum() == 0:
            note = notes.get(kpi) or "no value"
            fig.add_annotation(text=note if "not reported" in note else f"not reported:<br>{note}",
                               showarrow=False, font=dict(color=GREY),
                               xref="x domain" if i == 0 else f"x{i + 1} domain",
                               yref="y domain" if i == 0 else f"y{i + 1} domain", x=0.5, y=0.5)
    fig.update_xaxes(tickformat="%d %b", **({"dtick": 86_400_000} if days <= 10 else {}))
    for i, (kpi, _) in enumerate(TREND_KPIS):
        if kpi in ("churn_rate", "repeat_purchase_rate"):
            fig.update_yaxes(tickformat=".1%", row=i // 3 + 1, col=i % 3 + 1)      # a few tenths apart on most days
    return fig


# --------------------------------------------------------------------------------------- lifecycle
@chart("lifecycle_funnel", "Purchase funnel",
       "Of all customers known at the end of the day: how many ever ordered, ordered twice, and "
       "reached the loyalty threshold of orders; each step holds the ones below it, so the bars only "
       "narrow. Where they stand today is the next chart.",
       "marts.customer_segments", "features.customer_features")
def lifecycle_funnel(ctx: Context):
    loyal = segments.load_config(settings.segments_file()).loyal_min_orders
    row = ctx.df(f"""SELECT count(*) AS known, count(*) FILTER (WHERE orders_total >= 1) AS once,
                            count(*) FILTER (WHERE orders_total >= 2) AS twice,
                            count(*) FILTER (WHERE orders_total >= {loyal}) AS loyal
                     FROM features.customer_features WHERE snapshot_date = {ctx.d}""").iloc[0]
    if not row.known:
        return f"no feature snapshot for {ctx.day}"
    steps = ["known customers", "ordered at least once", "ordered twice or more", f"ordered {loyal} times or more"]
    values = [int(row.known), int(row.once), int(row.twice), int(row.loyal)]
    if loyal <= 2:
        steps, values = steps[:3], values[:3]
    return go.Figure(go.Funnel(y=steps, x=values, texttemplate="%{value:,}<br>%{percentInitial:.0%}",
                               marker_color=[GREY, BLUE, BLUE, GREEN][:len(steps)]))


@chart("lifecycle_stages", "Where customers stand today",
       "Customers in each lifecycle stage at the end of the day, in the order a customer moves "
       "through them; at risk and churned collect those the active stages lost (config/segments.yaml).",
       "marts.customer_segments")
def lifecycle_stages(ctx: Context):
    frame = ctx.df(f"SELECT lifecycle_stage, count(*) AS customers FROM marts.customer_segments "
                   f"WHERE snapshot_date = {ctx.d} GROUP BY 1")
    if frame.empty:
        return f"no segments for {ctx.day}"
    counts = frame.set_index("lifecycle_stage")["customers"].reindex(list(STAGES)).fillna(0)
    share = counts / counts.sum()
    return go.Figure(go.Bar(x=[st.replace("_", " ") for st in counts.index], y=counts.values,
                            customdata=share.values, texttemplate="%{y:,} (%{customdata:.0%})",
                            marker_color=[GREY, BLUE, BLUE, GREEN, ORANGE, RED]),
                     layout=dict(yaxis_title="customers"))


@chart("lifecycle_flows", "Lifecycle transitions",
       "Moves between lifecycle stages over the last 30 days: each cell counts the customers who "
       "left the stage of its row for the stage of its column; the at risk and churned columns are "
       "the moves to stop, the active columns of the at risk and churned rows are win-backs.",
       "marts.lifecycle_transitions")
def lifecycle_flows(ctx: Context):
    frame = ctx.df(f"""SELECT coalesce(from_stage, 'new') AS src, to_stage AS dst, count(*) AS customers
                       FROM marts.lifecycle_transitions
                       WHERE transition_at::DATE BETWEEN {ctx.d} - INTERVAL 29 DAY AND {ctx.d} GROUP BY ALL""")
    if frame.empty:
        return f"no stage changes in the 30 days up to {ctx.day}"
    order = ["new", *STAGES]
    rows = [st for st in order if st in set(frame.src)]
    cols = [st for st in STAGES if st in set(frame.dst)]
    grid = frame.pivot(index="src", columns="dst", values="customers").reindex(index=rows, columns=cols)
    label = lambda names: [n.replace("_", " ") for n in names]  # noqa: E731
    fig = go.Figure(go.Heatmap(z=grid.values, x=label(cols), y=label(rows), colorscale="Blues", texttemplate="%{z:,}",
                               hovertemplate="from %{y} to %{x}: %{z:,} customers<extra></extra>", showscale=False))
    fig.update_layout(xaxis=dict(title="to stage", side="top"), yaxis=dict(title="from stage", autorange="reversed"))
    return fig


# ----------------------------------------------------------------------------------------- segments
@chart("rfm_map", "RFM segments",
       "Customers per RFM segment, largest first, coloured by mean recency score (5 = bought most "
       "recently): champions and loyal are the base to keep, at risk and can't lose the ones to "
       "win back.",
       "marts.customer_segments")
def rfm_map(ctx: Context):
    frame = ctx.df(f"""SELECT rfm_segment, count(*) AS customers, avg(rfm_r) AS r, avg(rfm_f) AS f, avg(rfm_m) AS m
                       FROM marts.customer_segments WHERE snapshot_date = {ctx.d} AND rfm_segment IS NOT NULL
                       GROUP BY 1 ORDER BY 2""")
    if frame.empty:
        return f"no customer has an RFM segment on {ctx.day}"
    fig = go.Figure(go.Bar(
        y=frame.rfm_segment.str.replace("_", " "), x=frame.customers, orientation="h", texttemplate="%{x:,}",
        marker=dict(color=frame.r, colorscale="RdYlGn", cmin=1, cmax=5, colorbar=dict(title="mean R")),
        customdata=frame[["r", "f", "m"]].round(1),
        hovertemplate="%{y}: %{x:,} customers<br>mean R %{customdata[0]}, F %{customdata[1]}, M %{customdata[2]}"
                      "<extra></extra>"))
    fig.update_layout(xaxis_title="customers", margin=dict(l=130))
    return fig


@chart("rfm_grid", "Recency x frequency",
       "Customers by recency score (columns, 5 = most recent) and frequency score (rows, 5 = most "
       "orders): the top right holds the best customers, the top left frequent buyers slipping "
       "away.",
       "marts.customer_segments")
def rfm_grid(ctx: Context):
    frame = ctx.df(f"""SELECT rfm_r::INT AS r, rfm_f::INT AS f, count(*) AS customers FROM marts.customer_segments
                       WHERE snapshot_date = {ctx.d} AND rfm_r IS NOT NULL GROUP BY ALL""")
    if frame.empty:
        return f"no RFM scores on {ctx.day}"
    grid = frame.pivot(index="f", columns="r", values="customers").reindex(index=range(1, 6), columns=range(1, 6))
    fig = go.Figure(go.Heatmap(z=grid.values, x=[f"R{r}" for r in grid.columns], y=[f"F{f}" for f in grid.index],
                               colorscale="Blues", texttemplate="%{z}", hovertemplate="%{y} %{x}: %{z} customers"))
    return fig


@chart("cohort_retention", "Cohort retention",
       "Share of each acquisition-month cohort (rows) ordering again n months after its first "
       "order (columns); read along a row for how a cohort fades, down a column to compare "
       "cohorts.",
       "marts.cohort_retention", wide=True)
def cohort_heatmap(ctx: Context):
    frame = ctx.df(f"""SELECT strftime(cohort_month, '%Y-%m') AS cohort, months_since_acquisition AS m, retention,
                              cohort_size
                       FROM marts.cohort_retention WHERE snapshot_date = {ctx.d}
                         AND cohort_month >= date_trunc('month', {ctx.d}) - INTERVAL 18 MONTH
                         AND months_since_acquisition BETWEEN 1 AND 12""")
    reported = frame.dropna(subset=["retention"])
    if reported.cohort.nunique() < 2:
        return (f"{reported.cohort.nunique()} cohort(s) with retention reported (cohorts need "
                f"{ctx.kpi.min_cohort}+ customers and a month after acquisition)")
    grid = frame.pivot(index="cohort", columns="m", values="retention").sort_index(ascending=False)
    fig = go.Figure(go.Heatmap(z=grid.values, x=[f"+{m}" for m in grid.columns], y=grid.index, colorscale="YlGnBu",
                               zmin=0, texttemplate="%{z:.0%}", hovertemplate="cohort %{y}, month %{x}: %{z:.1%}",
                               colorbar=dict(tickformat=".0%")))
    fig.update_layout(xaxis_title="months since acquisition", yaxis=dict(type="category"))
    return fig


# ------------------------------------------------------------------------------------------- churn
@chart("churn_distribution", "Churn-risk distribution",
       "Customers by predicted churn probability, coloured by risk band; a heavy right-hand tail "
       "means many customers are likely to stop buying in the churn horizon.",
       "ml.churn_scores")
def churn_distribution(ctx: Context):
    frame = ctx.df(f"""SELECT least(floor(churn_probability * 40), 39) / 40 AS bin, risk_band, count(*) AS customers
                       FROM ml.churn_scores WHERE snapshot_date = {ctx.d} GROUP BY ALL ORDER BY 1""")
    if frame.empty:
        return f"no churn scores for {ctx.day} (no champion model?)"
    fig = go.Figure([go.Bar(name=f"{band} risk", x=frame[frame.risk_band == band].bin + 0.0125,
                            y=frame[frame.risk_band == band].customers, width=0.025, marker_color=color)
                     for band, color in BAND_COLORS.items() if (frame.risk_band == band).any()])
    fig.update_layout(barmode="stack", xaxis=dict(title="churn probability", tickformat=".0%", range=[0, 1]),
                      yaxis_title="customers")
    base = (ctx.cards.get("churn") or {}).get("train_positive_rate")
    if base is not None:      # why so many are "high": the bands are absolute, the base rate is not
        high = frame.loc[frame.risk_band == "high", "customers"].sum() / frame.customers.sum()
        fig.add_annotation(text=f"{high:.0%} high risk; in the model's training data {base:.0%} of customers "
                                f"churned<br>within the horizon, so a high share is expected", xref="paper",
                           yref="paper", x=0.01, y=0.98, yanchor="top", xanchor="left", showarrow=False, align="left",
                           font=dict(color=GREY), bgcolor="rgba(255,255,255,0.8)")
    return fig


@table("top_at_risk", f"Top {TOP_AT_RISK} at-risk high-value customers",
       "Customers in the top fifth of predicted 12-month value with medium or high churn risk, "
       "ordered by value at risk (churn probability x predicted value); ids only - look them up in"
       " the CRM to act.",
       "ml.churn_scores", "ml.clv_scores", schema=AtRiskCustomers)
def top_at_risk(ctx: Context):
    """The high-value customers (top fifth of predicted CLV) most likely to churn, by value at risk."""
    nbo = "ml.next_best_offer" if table_exists(ctx.con, "ml.next_best_offer") else None
    seg = "marts.customer_segments" if table_exists(ctx.con, "marts.customer_segments") else None
    frame = ctx.df(f"""
        WITH s AS (SELECT c.customer_id, c.churn_probability, c.risk_band, v.clv_12m
                   FROM ml.churn_scores c JOIN ml.clv_scores v USING (snapshot_date, customer_id)
                   WHERE c.snapshot_date = {ctx.d}),
        q AS (SELECT quantile_cont(clv_12m, 0.8) AS high_value FROM s)
        SELECT s.customer_id, round(s.churn_probability, 3) AS churn_probability, s.risk_band,
               round(s.clv_12m, 2) AS predicted_clv_12m, round(s.churn_probability * s.clv_12m, 2) AS value_at_risk,
               {'g.lifecycle_stage, g.rfm_segment' if seg else 'NULL AS lifecycle_stage, NULL AS rfm_segment'},
               {'o.category' if nbo else 'NULL'} AS next_best_offer
        FROM s CROSS JOIN q
        {f'LEFT JOIN {seg} g ON g.customer_id = s.customer_id AND g.snapshot_date = {ctx.d}' if seg else ''}
        {f'LEFT JOIN {nbo} o ON o.customer_id = s.customer_id AND o.snapshot_date = {ctx.d} AND o.offer_rank = 1'
         if nbo else ''}
        WHERE s.clv_12m >= q.high_value AND s.clv_12m > 0 AND s.risk_band IN ('medium', 'high')
        ORDER BY value_at_risk DESC, s.customer_id LIMIT {TOP_AT_RISK}""")
    return frame if len(frame) else f"no high-value customer at medium or high churn risk on {ctx.day}"
