"""What the dashboard shows, section by section, read from the warehouse as of one day.

Every query aggregates in DuckDB (a histogram is binned counts, a trend one value per day), so
the page holds a few hundred numbers whatever the number of customers. A chart whose table is not
built yet, or whose data is too thin to mean anything, is a ``Chart`` with ``missing`` saying so.
Customers appear by id only (the top at-risk list): no name, e-mail or address reaches the page.
The sections themselves: business.py (KPIs, lifecycle, segments, churn) and health.py (models,
identity, data quality, alerts); what they share: context.py.
"""

from __future__ import annotations

from crm_platform.reports.business import (tiles, cac_vs_clv, kpi_trends, lifecycle_funnel, lifecycle_stages,
                                           lifecycle_flows, rfm_map, rfm_grid, cohort_heatmap,
                                           churn_distribution, top_at_risk)
from crm_platform.reports.health import (calibration, lift, clv_deciles, champions, identity_quality,
                                         cluster_sizes, review_queue, identity_table, ingestion, coverage,
                                         quarantine_reasons, check_status, failing_checks, alerts_per_day,
                                         delivery, uplift, kpi_band_alerts)
from crm_platform.reports.context import CheckStatus, Context, as_of_day
from crm_platform.reports.page import Section, Tile

__all__ = ["CheckStatus", "Context", "as_of_day", "build"]


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
