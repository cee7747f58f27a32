"""The business dashboard: one self-contained HTML file (plotly embedded, no server, no network at
view time) with the KPIs, lifecycle, segments, cohorts, churn risk, model quality, identity health,
data quality and alert outcomes as of one day.

``sections`` reads the warehouse (aggregated in DuckDB, so the page stays small at any volume) and
builds the charts; ``page`` writes the HTML; ``render`` renders a day into the reports folder; ``columns`` describes
the columns of the tables the business reads. A
chart without enough data says so instead of drawing an empty or misleading plot.
"""

from crm_platform.reports.render import Rendered, champion_cards, render_day
from crm_platform.reports.sections import CheckStatus, as_of_day

__all__ = ["CheckStatus", "Rendered", "as_of_day", "champion_cards", "render_day"]
