"""KPI alerts: a KPI of the whole customer base leaves the band of its own recent past.

For each configured KPI of ``marts.kpi_daily`` the band is built from the KPI's values on the
``baseline_days`` before the day: the median, plus and minus the larger of ``sigmas`` robust
standard deviations (1.4826 x the median absolute deviation) and ``min_relative_change`` of the
median (so a KPI that barely moved does not alert on noise). A KPI alerts when its value leaves
the band in the configured direction (churn going up, NPS or revenue going down). A KPI with
fewer than ``min_history_days`` earlier values gets no band and is reported, not alerted.

Data-quality alerts (an asset check whose latest evaluation failed) are built from the check
evaluations the orchestrator records; ``data_quality_alerts`` turns them into alert rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from crm_platform.alerts.rules import AlertConfig

COLUMNS = ("alert_id", "alert_date", "kind", "subject", "reason", "value", "expected_low", "expected_high",
           "history_days")


def band_sql(day: date, cfg: AlertConfig) -> str:
    """One row per configured KPI of the day: its value, the band, the history it rests on and
    whether it alerts (``alert`` is null when there is too little history)."""
    b = cfg.kpi_bands
    d = f"DATE '{day.isoformat()}'"
    directions = " UNION ALL ".join(f"SELECT '{k}' AS kpi, '{v}' AS direction" for k, v in b.kpis.items())
    return f"""
WITH wanted AS ({directions}),
hist AS (
    SELECT kpi, count(*) AS n, median(value) AS med, mad(value) AS mad
    FROM marts.kpi_daily
    WHERE channel IS NULL AND value IS NOT NULL AND kpi_date < {d} AND kpi_date >= {d} - INTERVAL {int(b.baseline_days)} DAY
    GROUP BY kpi),
today AS (SELECT kpi, value FROM marts.kpi_daily WHERE channel IS NULL AND kpi_date = {d}),
banded AS (
    SELECT w.kpi, w.direction, t.value, coalesce(h.n, 0) AS history_days, h.med,
           greatest({b.sigmas} * 1.4826 * h.mad, {b.min_relative_change} * abs(h.med)) AS half
    FROM wanted w LEFT JOIN today t USING (kpi) LEFT JOIN hist h USING (kpi))
SELECT kpi, direction, value, history_days, med AS baseline, med - half AS expected_low, med + half AS expected_high,
       CASE WHEN history_days < {int(b.min_history_days)} OR value IS NULL OR med IS NULL THEN NULL
            ELSE (direction IN ('up', 'both') AND value > med + half)
                 OR (direction IN ('down', 'both') AND value < med - half) END AS alert
FROM banded ORDER BY kpi"""


def band_alerts_sql(day: date, cfg: AlertConfig) -> str:
    """The day's KPI alerts in the columns of ``alerts.kpi_alerts``."""
    d = f"DATE '{day.isoformat()}'"
    return f"""
SELECT substr(sha256('kpi_band|' || kpi || '|' || CASE WHEN value > expected_high THEN 'above' ELSE 'below' END
                     || '|' || {d}::VARCHAR), 1, 24) AS alert_id,
       {d} AS alert_date, 'kpi_band' AS kind, kpi AS subject,
       printf('%s is %s its expected band: %.4g against %.4g to %.4g (median of the last %d days %.4g)',
              kpi, CASE WHEN value > expected_high THEN 'above' ELSE 'below' END, value, expected_low,
              expected_high, history_days, baseline) AS reason,
       value, expected_low, expected_high, history_days
FROM ({band_sql(day, cfg)}) WHERE alert"""


@dataclass(frozen=True)
class FailedCheck:
    asset: str          # e.g. staging/orders
    check: str
    severity: str       # WARN | ERROR
    run_id: str
    description: str


def data_quality_alerts(day: date, failed: list[FailedCheck], min_severity: str) -> list[dict]:
    """Alert rows for failed checks of at least ``min_severity``. The id comes from the check and
    what it found (its description: counts, failing values), not the day or the run: the same
    failure is one alert however often it is seen, a rerun on the same data included; a failure
    that changes is a new alert."""
    from crm_platform.alerts.delivery import alert_id

    keep = ("ERROR",) if min_severity == "ERROR" else ("WARN", "ERROR")
    return [{"alert_id": alert_id("data_quality", f"{f.asset}:{f.check}", f.description, ""),
             "alert_date": day, "kind": "data_quality", "subject": f"{f.asset}:{f.check}",
             "reason": f"check {f.check} on {f.asset} failed ({f.severity.lower()}): {f.description}"[:500],
             "value": None, "expected_low": None, "expected_high": None, "history_days": None}
            for f in failed if f.severity in keep]
