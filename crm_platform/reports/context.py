"""What every section of the dashboard reads: the context (connection, day, KPI settings, champion
cards, check results), the decorators that turn a figure or a frame into a chart or a table, the
colours, and the day the page shows by default."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from crm_platform.reports.page import Chart, Table
from crm_platform.core.days import LAST_DATA_DAY_SQL
from crm_platform.marts.kpis import KpiConfig
from crm_platform.core.warehouse import table_exists

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


def as_of_day(con) -> date | None:
    """The day the dashboard shows by default: the newest day the KPI marts hold, up to the newest
    day with data (the rule that ends the daily partitions; a day computed past it, e.g. by an
    older installation that followed the wall clock, holds no new data)."""
    if not table_exists(con, "marts.kpi_daily"):
        return None
    cap = f"WHERE kpi_date <= ({LAST_DATA_DAY_SQL})" if table_exists(con, "core.customer_events") else ""
    return con.execute(f"SELECT max(kpi_date) FROM marts.kpi_daily {cap}").fetchall()[0][0]
