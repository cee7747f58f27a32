"""Predictive models on the point-in-time feature snapshots (churn, CLV, next-best-offer, lead
scoring): training sets without leakage, training, evaluation, gating and the registry.

Configuration in ``config/models.yaml`` (``CRM_PLATFORM_MODELS``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crm_platform.core.settings import DEFAULT_MODELS, read_config

DEFAULT_CLV_HORIZONS = (90, 180, 365)


class ModelConfigError(ValueError):
    pass


class NotEnoughData(Exception):
    """Too few examples (or of one class) to train or to evaluate honestly; the message says which."""


@dataclass(frozen=True)
class ModelConfig:
    horizon_days: int
    train_cutoffs: int
    cutoff_spacing_days: int
    min_examples: int
    min_positives: int
    risk_medium: float
    risk_high: float
    gate_margin: float
    gate_tolerance: float
    drift_psi_warn: float
    random_state: int
    # above this many customers on the timeline, models learn from a seeded sample of them
    max_train_customers: int = 50_000
    # churn = no order in this many days; None: from the purchase cadence (ml/labels.churn_horizon)
    churn_horizon_days: int | None = None
    # expected purchases per customer over these horizons (days): clv_scores.expected_purchases_<n>d
    clv_horizons: tuple[int, ...] = DEFAULT_CLV_HORIZONS


def load_config(path: str | Path = DEFAULT_MODELS) -> ModelConfig:
    cfg = read_config(path, lambda raw: ModelConfig(
        horizon_days=int(raw["horizon_days"]), train_cutoffs=int(raw["train_cutoffs"]),
        cutoff_spacing_days=int(raw["cutoff_spacing_days"]), min_examples=int(raw["min_examples"]),
        min_positives=int(raw["min_positives"]), risk_medium=float(raw["risk_bands"]["medium"]),
        risk_high=float(raw["risk_bands"]["high"]), gate_margin=float(raw["gate"]["margin"]),
        gate_tolerance=float(raw["gate"]["tolerance"]), drift_psi_warn=float(raw["drift_psi_warn"]),
        random_state=int(raw.get("random_state", 42)),
        max_train_customers=int(raw.get("max_train_customers", 50_000)),
        churn_horizon_days=_auto(raw.get("churn_horizon_days", "auto")),
        clv_horizons=tuple(sorted({int(h) for h in raw.get("clv_horizons_days", DEFAULT_CLV_HORIZONS)}))), ModelConfigError)
    if min(cfg.horizon_days, cfg.train_cutoffs, cfg.cutoff_spacing_days, cfg.max_train_customers) < 1:
        raise ModelConfigError(f"{path}: horizon, cutoffs, spacing and max_train_customers must be positive")
    if cfg.churn_horizon_days is not None and cfg.churn_horizon_days < 1:
        raise ModelConfigError(f"{path}: churn_horizon_days must be positive or auto")
    if not cfg.clv_horizons or min(cfg.clv_horizons) < 1:
        raise ModelConfigError(f"{path}: clv_horizons_days must be a list of positive day counts")
    if not 0 < cfg.risk_medium < cfg.risk_high < 1:
        raise ModelConfigError(f"{path}: risk bands need 0 < medium < high < 1")
    return cfg


def _auto(value) -> int | None:
    """A day count, or None for ``auto``."""
    return None if str(value).strip().lower() == "auto" else int(value)
