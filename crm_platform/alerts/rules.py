"""Customer alerts of one day, from the scores, lifecycle transitions and offers of that day.

Kinds: ``churn_risk`` (high churn probability and high predicted value), ``lifecycle`` (became at
risk, first purchase, reactivated), ``next_best_offer`` (the top offer). Every alert has a reason a
marketer can read and the model version behind it. Rules that respect the customer, in order:

* only customers with e-mail marketing consent in their golden record (unknown counts as no);
* no alert of a kind a customer got within ``suppression_days`` of that kind;
* no offer within ``no_upsell_after_return_days`` of a return, nor while a support ticket is open;
* the control group (a fixed, hash-chosen share of customers) gets alerts flagged ``is_control``:
  recorded for the uplift measurement, never delivered.

Everything in DuckDB SQL over the warehouse tables; ``previous`` is the table of alerts already
raised (for the suppression window), or None on the first run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from crm_platform.core.days import day_end
from crm_platform.contracts.vocabularies import KPIS
from crm_platform.core.settings import DEFAULT_ALERTS, read_config


class AlertConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AlertConfig:
    churn_min_probability: float
    churn_min_clv: float
    lifecycle_stages: tuple[str, ...]
    lifecycle_reactivations: bool
    offer_min_probability: float
    suppression_days: dict[str, int]
    no_upsell_after_return_days: int
    control_share: float
    control_salt: str
    kpi_bands: "KpiBands"
    data_quality_min_severity: str
    sinks: tuple[dict, ...]
    retry_days: int
    uplift_window_days: int
    uplift_min_group: int


@dataclass(frozen=True)
class KpiBands:
    baseline_days: int
    min_history_days: int
    sigmas: float
    min_relative_change: float
    kpis: dict[str, str]          # kpi -> up | down | both


DIRECTIONS = ("up", "down", "both")
SINK_TYPES = ("jsonl", "csv", "webhook")


def load_config(path: str | Path = DEFAULT_ALERTS) -> AlertConfig:
    cfg = read_config(path, lambda raw: AlertConfig(
        churn_min_probability=float(raw["churn_risk"]["min_probability"]),
        churn_min_clv=float(raw["churn_risk"]["min_clv_12m"]),
        lifecycle_stages=tuple(str(s) for s in raw["lifecycle_stages"]),
        lifecycle_reactivations=bool(raw["lifecycle_reactivations"]),
        offer_min_probability=float(raw["next_best_offer"]["min_probability"]),
        suppression_days={str(k): int(v) for k, v in raw["suppression_days"].items()},
        no_upsell_after_return_days=int(raw["no_upsell_after_return_days"]),
        control_share=float(raw["control_group"]["share"]), control_salt=str(raw["control_group"]["salt"]),
        kpi_bands=KpiBands(
            baseline_days=int(raw["kpi_bands"]["baseline_days"]),
            min_history_days=int(raw["kpi_bands"]["min_history_days"]),
            sigmas=float(raw["kpi_bands"]["sigmas"]),
            min_relative_change=float(raw["kpi_bands"]["min_relative_change"]),
            kpis={str(k): str(v) for k, v in raw["kpi_bands"]["kpis"].items()}),
        data_quality_min_severity=str(raw["data_quality_min_severity"]).upper(),
        sinks=tuple(dict(x) for x in raw["sinks"]), retry_days=int(raw["retry_days"]),
        uplift_window_days=int(raw["uplift"]["window_days"]),
        uplift_min_group=int(raw["uplift"]["min_group"])), AlertConfigError)
    if not 0 <= cfg.control_share < 1:
        raise AlertConfigError(f"{path}: control_group.share must be in [0, 1)")
    missing = {"churn_risk", "lifecycle", "next_best_offer"} - set(cfg.suppression_days)
    if missing:
        raise AlertConfigError(f"{path}: suppression_days lacks {sorted(missing)}")
    bad = {k: v for k, v in cfg.kpi_bands.kpis.items() if k not in KPIS or v not in DIRECTIONS}
    if bad:
        raise AlertConfigError(f"{path}: kpi_bands.kpis: unknown KPI or direction (up/down/both): {bad}")
    if cfg.kpi_bands.min_history_days < 2 or cfg.kpi_bands.baseline_days < cfg.kpi_bands.min_history_days:
        raise AlertConfigError(f"{path}: kpi_bands needs 2 <= min_history_days <= baseline_days")
    if cfg.data_quality_min_severity not in ("WARN", "ERROR"):
        raise AlertConfigError(f"{path}: data_quality_min_severity must be WARN or ERROR")
    names = [x.get("name") for x in cfg.sinks]
    if len(set(names)) != len(names) or any(x.get("type") not in SINK_TYPES or not x.get("name") for x in cfg.sinks):
        raise AlertConfigError(f"{path}: every sink needs a unique name and a type of {SINK_TYPES}")
    if cfg.uplift_window_days < 1 or cfg.retry_days < 0:
        raise AlertConfigError(f"{path}: uplift.window_days must be >= 1 and retry_days >= 0")
    return cfg


def in_control_group(customer_id_sql: str, cfg: AlertConfig) -> str:
    """SQL: whether a customer belongs to the control group: the first 32 bits of md5(id + salt)
    below the share, so the same customers on every run, engine version and machine
    (``control_group_member`` gives the same answer in Python)."""
    return (f"(('0x' || substr(md5({customer_id_sql} || '{cfg.control_salt}'), 1, 8))::UBIGINT "
            f"< {int(cfg.control_share * 2 ** 32)})")


def control_group_member(customer_id: str, cfg: AlertConfig) -> bool:
    return int(hashlib.md5((customer_id + cfg.control_salt).encode()).hexdigest()[:8], 16) < \
        int(cfg.control_share * 2 ** 32)


# the tables each kind of customer alert is computed from
SOURCES = {"churn_risk": ("ml.churn_scores", "ml.clv_scores"), "lifecycle": ("marts.lifecycle_transitions",),
           "next_best_offer": ("ml.next_best_offer",)}


def candidates_sql(day: date, cfg: AlertConfig, kinds=tuple(SOURCES)) -> str:
    """Every alert the day's data calls for, before consent, suppression and the control group,
    of the ``kinds`` whose source tables exist (a model without a champion has no scores yet)."""
    d = f"DATE '{day.isoformat()}'"
    stages = ", ".join(f"'{s}'" for s in cfg.lifecycle_stages) or "NULL"
    parts = {"churn_risk": f"""
SELECT c.customer_id, 'churn_risk' AS kind, 'churn ' || c.model_version || ', clv ' || v.model_version AS model_version,
       printf('churn probability %.2f (%s risk) with a predicted 12-month value of %.0f EUR',
              c.churn_probability, c.risk_band, v.clv_12m) AS reason, c.model_version AS key
FROM ml.churn_scores c JOIN ml.clv_scores v USING (snapshot_date, customer_id)
WHERE c.snapshot_date = {d} AND c.churn_probability >= {cfg.churn_min_probability}
  AND v.clv_12m >= {cfg.churn_min_clv}""", "lifecycle": f"""
SELECT customer_id, 'lifecycle' AS kind, 'lifecycle-rules' AS model_version,
       CASE WHEN is_reactivation THEN 'reactivated: ' ELSE 'became ' END || to_stage || ' (' || reason || ')' AS reason,
       to_stage AS key
FROM marts.lifecycle_transitions
WHERE transition_at >= {d} AND transition_at < {day_end(day)}
  AND (to_stage IN ({stages}) {"OR is_reactivation" if cfg.lifecycle_reactivations else ""})
QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY transition_at DESC) = 1""",
             "next_best_offer": f"""
SELECT customer_id, 'next_best_offer' AS kind, 'next_best_offer ' || model_version AS model_version,
       printf('offer %s: probability %.2f of buying it next', category, offer_probability) AS reason, category AS key
FROM ml.next_best_offer
WHERE snapshot_date = {d} AND offer_rank = 1 AND offer_probability >= {cfg.offer_min_probability}"""}
    chosen = [f"({parts[k]})" for k in SOURCES if k in kinds]
    if not chosen:
        return ("SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS kind, NULL::VARCHAR AS model_version, "
                "NULL::VARCHAR AS reason, NULL::VARCHAR AS key WHERE false")
    return "\nUNION ALL\n".join(chosen)


def window_days_sql(kind: str, cfg: AlertConfig) -> str:
    """SQL: the suppression window in days of the alert kind ``kind``."""
    cases = " ".join(f"WHEN '{k}' THEN {int(v)}" for k, v in cfg.suppression_days.items())
    return f"(CASE {kind} {cases} END)"


def alerts_sql(day: date, cfg: AlertConfig, previous: str | None, kinds=tuple(SOURCES),
               suppression_list: str | None = None) -> str:
    """The day's alerts after consent, the suppression list, the suppression window and the upsell
    rules, with id and control flag. ``suppression_list`` is a table of customer ids nobody may
    contact (None: no list)."""
    d = f"DATE '{day.isoformat()}'"
    suppressed = f"""AND NOT EXISTS (SELECT 1 FROM {previous} p WHERE p.customer_id = a.customer_id
        AND p.kind = a.kind AND p.alert_date < {d}
        AND p.alert_date >= {d} - {window_days_sql('a.kind', cfg)} * INTERVAL 1 DAY)""" if previous else ""
    return f"""
WITH a AS ({candidates_sql(day, cfg, kinds)})
SELECT substr(sha256(a.kind || '|' || a.customer_id || '|' || a.key || '|' || {d}::VARCHAR), 1, 24) AS alert_id,
       {d} AS alert_date, a.customer_id, a.kind, a.reason, a.model_version,
       {in_control_group('a.customer_id', cfg)} AS is_control
FROM a JOIN core.customers cu USING (customer_id)
WHERE coalesce(cu.consent_email, false)
  {f"AND a.customer_id NOT IN (SELECT customer_id FROM {suppression_list})" if suppression_list else ""}
  {suppressed}
  AND NOT (a.kind = 'next_best_offer' AND (
      EXISTS (SELECT 1 FROM core.customer_events e WHERE e.customer_id = a.customer_id AND e.event_type = 'return'
              AND e.event_at >= {d} - INTERVAL {int(cfg.no_upsell_after_return_days)} DAY
              AND e.event_at < {day_end(day)})
      OR EXISTS (SELECT 1 FROM features.customer_features f WHERE f.customer_id = a.customer_id
                 AND f.snapshot_date = {d} AND f.tickets_open > 0)))
ORDER BY a.kind, a.customer_id"""
