"""From a trained challenger to a day's scores: the quality gate's decision with its records, the
scores of one day by the champion, and the drift of that day from the training data.

The Dagster assets of the ml stage call these and report; the rules are here, testable without an
orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import ModuleType

import duckdb
import pandas as pd

from crm_platform.core import audit
from crm_platform.core.warehouse import replace_partition
from crm_platform.ml.evaluate import psi
from crm_platform.ml.gate import GateDecision, decide


def promote(con: duckdb.DuckDBPyConnection, registry, task: ModuleType, version: str, card: dict,
            current: str | None, cfg, actor: str) -> GateDecision:
    """The gate's decision on the registered challenger ``version`` against the baseline and the
    champion ``current``: recorded in the registry (which promotes a passing challenger) and in the
    audit log."""
    decision = decide(card["main_metric"], card["challenger_metric"], card["baseline_metric"],
                      card["champion_metric"] if current else None, cfg.gate_margin, cfg.gate_tolerance,
                      getattr(task, "HIGHER_IS_BETTER", True), champion_version=current)
    registry.record_decision(task.TASK, version, decision.passed, decision.reasons,
                             {"challenger": decision.challenger, "baseline": decision.baseline,
                              "champion": decision.champion})
    audit.record(con, "model_promotion", actor, f"{task.TASK} {version}", "promoted" if decision.passed else "refused",
                 {"metric": decision.metric, "challenger": decision.challenger, "baseline": decision.baseline,
                  "champion": decision.champion, "previous_champion": current, "reasons": decision.reasons})
    return decision


@dataclass
class ScoredDay:
    customers: int              # customers scored
    missing: int                # customers the model is for without a score
    scores: pd.DataFrame        # the day's scores as written
    eligible: pd.DataFrame      # the day's feature rows of the customers the model is for


def score_day(con: duckdb.DuckDBPyConnection, task: ModuleType, table: str, model, card: dict, version: str,
              cfg, features_cfg, day: date) -> ScoredDay:
    """Score the feature snapshot of ``day`` with the champion ``version`` and write the day's
    partition of ``table``, the version on every row: every customer the model is for."""
    frame = task.scoring_frame(con, features_cfg, day, model=model)
    out = task.score(model, card, frame, cfg)
    out.insert(0, "snapshot_date", pd.Timestamp(day))
    out["model_version"] = version
    con.register("_scores", out)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _scores_t AS SELECT snapshot_date::DATE AS snapshot_date, "
                    "* EXCLUDE (snapshot_date) FROM _scores")
    finally:
        con.unregister("_scores")
    replace_partition(con, table, "_scores_t", "snapshot_date", day)
    eligible = task.eligible(frame) if len(frame) else frame
    missing = int((~eligible["customer_id"].drop_duplicates().isin(out["customer_id"])).sum())
    return ScoredDay(int(out["customer_id"].nunique()), missing, out, eligible)


def drift(card: dict, day: ScoredDay, score_column: str, warn: float) -> tuple[dict, dict]:
    """The population stability index of the scores and of each reference feature between the
    training data and the day, and those at or above ``warn``."""
    values = {"score": psi(card["reference"]["score"], day.scores[score_column])}
    values.update({f: psi(ref, day.eligible[f]) for f, ref in card["reference"].items()
                   if f != "score" and f in day.eligible})
    values = {k: round(v, 4) for k, v in values.items()}
    return values, {k: v for k, v in values.items() if v >= warn}
