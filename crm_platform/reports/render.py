"""Render the dashboard of one day into ``CRM_PLATFORM_HOME/reports``.

``reports/dashboard.html`` always shows the newest day the KPI marts hold; rendering an older day
(a backfill of history) writes ``reports/dashboard_<day>.html`` beside it and leaves the current
one alone. The file is written to a temporary name and moved into place, so a reader never sees a
half-written page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd

from crm_platform.reports.page import personal_data, render, summary, withhold_invalid
from crm_platform.reports.sections import CheckStatus, Context, as_of_day, build
from crm_platform.core.privacy import EMAIL_RE, PHONE_RE
from crm_platform.marts.kpis import KpiConfig
from crm_platform.core.warehouse import table_exists

TITLE = "CRM dashboard"


@dataclass
class Rendered:
    path: Path
    day: date
    bytes: int
    drawn: list[str]
    not_enough_data: dict[str, str]
    failures: dict[str, pd.DataFrame] = field(default_factory=dict)
    personal_data: list[str] = field(default_factory=list)
    tiles: list = field(default_factory=list)


def champion_cards(registry) -> dict:
    """The model card of each task's champion (task -> card with its version)."""
    out = {}
    for task in registry.tasks():
        version = registry.champion(task)
        if version:
            out[task] = {**registry.card(task, version), "version": version}
    return out


def target(reports: Path, day: date, newest: date | None) -> Path:
    return reports / ("dashboard.html" if newest is None or day >= newest else f"dashboard_{day.isoformat()}.html")


def render_day(con, day: date, reports: Path, kpi: KpiConfig, cards: dict | None = None,
               checks: list[CheckStatus] | None = None) -> Rendered:
    """Build, check and write the dashboard of ``day``."""
    ctx = Context(con, day, kpi, cards or {}, checks)
    tiles, sections = build(ctx)
    failures = withhold_invalid(sections)
    customers = con.execute("SELECT count(*) FROM core.customers").fetchall()[0][0] \
        if table_exists(con, "core.customers") else 0
    subtitle = (f"As of the end of {day:%A, %d %B %Y} · {customers:,} golden customers · rendered "
                f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · hover any chart for the numbers")
    html = render(TITLE, subtitle, tiles, sections)
    path = target(reports, day, as_of_day(con))
    reports.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    s = summary(sections)
    return Rendered(path, day, len(html.encode()), s["drawn"], s["not_enough_data"], failures,
                    personal_data(tiles, sections, [EMAIL_RE, PHONE_RE]), tiles)
