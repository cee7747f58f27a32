"""What the dashboard shows, section by section, read from the warehouse as of one day.

Every query aggregates in DuckDB (a histogram is binned counts, a trend one value per day), so
the page holds a few hundred numbers whatever the number of customers. A chart whose table is not
built yet, or whose data is too thin to mean anything, is a ``Chart`` with ``missing`` saying so.
Customers appear by id only (the top at-risk list): no name, e-mail or address reaches the page.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crm_platform.marts import segments
from crm_platform.core import settings
from crm_platform.alerts.uplift import verdict as uplift_verdict
from crm_platform.marts.attribution import attribution_sql
from crm_platform.reports.page import Chart, Section, Table, Tile
from crm_platform.core.days import LAST_DATA_DAY_SQL, day_end
from crm_platform.marts.kpis import KpiConfig
from crm_platform.contracts.schemas import AtRiskCustomers
from crm_platform.core.warehouse import table_exists
from crm_platform.contracts.vocabularies import STAGES

BLUE, GREEN, ORANGE, RED, GREY = "#3b6fb6", "#2f9e44", "#f08c00", "#e03131", "#9aa5b1"
BAND_COLORS = {"low": GREEN, "medium": ORANGE, "high": RED}
TOP_AT_RISK = 25
SCORED_BY = {"ml.churn_scores": "churn", "ml.clv_scores": "clv", "ml.next_best_offer": "next_best_offer",
             "ml.lead_scores": "lead_scoring"}
TREND_DAYS = 90


@dataclass(frozen=True)
class CheckStatus:
    """The latest evaluation of one asset check."""

    asset: str
    check: str
    passed: bool
    severity: str
    description: str = ""


@dataclass
class Context:
    """What the sections read: the warehouse connection, the day, the KPI settings, the champion
    model cards (task -> card) and the latest asset check results (None outside Dagster)."""

    con: object
    day: date
    kpi: KpiConfig
    cards: dict = field(default_factory=dict)
    checks: list[CheckStatus] | None = None

    def df(self, sql: str, params=None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()

    def absent(self, *tables: str) -> str | None:
        """Why a chart cannot be drawn when a table it reads is not built yet (for scores: no
        champion model to score with)."""
        missing = [t for t in tables if not table_exists(self.con, t)]
        if not missing:
            return None
        models = [SCORED_BY[t] for t in missing if t in SCORED_BY and SCORED_BY[t] not in self.cards]
        tables = [t for t in missing if t not in SCORED_BY or SCORED_BY[t] in self.cards]
        return "; ".join([f"no champion {' or '.join(models)} model yet, so no scores"] * bool(models)
                         + [f"{', '.join(tables)} not built yet"] * bool(tables))

    @property
    def d(self) -> str:
        return f"DATE '{self.day.isoformat()}'"

    @property
    def older(self) -> bool:
        """Whether the day is older than the newest the marts hold (its page is a look back)."""
        newest = as_of_day(self.con)
        return newest is not None and self.day < newest


def chart(key: str, title: str, caption: str, *tables: str, wide: bool = False):
    """Make a function of the context that returns a figure, or a string saying why there is not
    enough data, into one that returns the ``Chart``; it is not called while a table in ``tables``
    is missing."""
    def wrap(fn):
        @functools.wraps(fn)
        def build_chart(ctx: Context) -> Chart:
            out = ctx.absent(*tables) or fn(ctx)
            return Chart(key, title, caption, missing=out, wide=wide) if isinstance(out, str) else \
                Chart(key, title, caption, out, wide=wide)
        return build_chart
    return wrap


def table(key: str, title: str, caption: str, *tables: str, wide: bool = True, schema=None):
    """Like ``chart`` for a function returning a frame (or why there is nothing to list)."""
    def wrap(fn):
        @functools.wraps(fn)
        def build_table(ctx: Context) -> Table:
            out = ctx.absent(*tables) or fn(ctx)
            return Table(key, title, caption, pd.DataFrame(), missing=out, wide=wide) if isinstance(out, str) else \
                Table(key, title, caption, out, wide=wide, schema=schema)
        return build_table
    return wrap


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


def build(ctx: Context) -> tuple[list[Tile], list[Section]]:
    """The header tiles and every section of the page."""
    q = identity_quality(ctx)
    merged = (f"{int(q['records']):,} source records resolved into {int(q['clusters']):,} customers "
              f"(merge rate {1 - q['clusters'] / q['records']:.1%}); {int(q.get('review_queue', 0)):,} pairs "
              "wait for review." if q.get("records") else "Identity resolution has not run yet.")
    sections = [
        Section("overview", "Overview", "The headline KPIs over time and what marketing spend buys per channel.",
                [kpi_trends(ctx), cac_vs_clv(ctx)]),
        Section("lifecycle", "Lifecycle and segments", "Where customers stand today and how they moved.",
                [lifecycle_funnel(ctx), lifecycle_stages(ctx), lifecycle_flows(ctx), rfm_map(ctx), rfm_grid(ctx), cohort_heatmap(ctx)]),
        Section("churn", "Churn risk", "Who is likely to stop buying, and which of them matter most.",
                [churn_distribution(ctx), top_at_risk(ctx)]),
        Section("models", "Model quality", "Whether the scores can be trusted: measured on a later test cutoff.",
                [calibration(ctx), lift(ctx), clv_deciles(ctx), champions(ctx)]),
        Section("identity", "Identity resolution", merged,
                [cluster_sizes(ctx), review_queue(ctx), identity_table(ctx)]),
        Section("data_quality", "Data quality", "What the sources sent, what was refused, and the state of every check.",
                [coverage(ctx), ingestion(ctx), quarantine_reasons(ctx), check_status(ctx), failing_checks(ctx)]),
        Section("alerts", "Alerts and their effect", "What the platform told the teams and whether it helped.",
                [alerts_per_day(ctx), delivery(ctx), uplift(ctx), kpi_band_alerts(ctx)]),
    ]
    return tiles(ctx), sections


def as_of_day(con) -> date | None:
    """The day the dashboard shows by default: the newest day the KPI marts hold, up to the newest
    day with data (the rule that ends the daily partitions; a day computed past it, e.g. by an
    older installation that followed the wall clock, holds no new data)."""
    if not table_exists(con, "marts.kpi_daily"):
        return None
    cap = f"WHERE kpi_date <= ({LAST_DATA_DAY_SQL})" if table_exists(con, "core.customer_events") else ""
    return con.execute(f"SELECT max(kpi_date) FROM marts.kpi_daily {cap}").fetchall()[0][0]

