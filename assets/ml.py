"""Model assets: training with a model card, the quality gate that promotes a champion, and daily
scoring with the champion (domain code in crm_platform/ml).

Per task: ``ml/<task>_model`` trains a challenger and registers it (or reports "not enough data");
its blocking ``quality_gate`` check promotes it only if it beats the naive baseline and is not
worse than the champion beyond the tolerance; ``ml/<task>_scores`` (daily partitions) scores that
day's feature snapshot with whichever version is champion and records it on every row.
"""

from datetime import date
from types import ModuleType

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.checks import check_name, partition_check, partition_check_spec
from assets.lib.metadata import image, markdown_table, table_metadata, table_value
from assets.lib.config import FEATURES, MODELS as CONFIG
from assets.lib.partitions import daily_asset
from crm_platform.ml import NotEnoughData, churn, clv, leads, nbo, serving
from crm_platform.ml.training import training_sample
from crm_platform.ml.registry import training_fingerprint
from crm_platform.ml.report import card_page, card_plots, metrics_frame
from crm_platform.core.plots import histogram_plot
from crm_platform.contracts.schemas import ChurnScores, ClvScores, LeadScores, NextBestOffer
from resources.models import ModelStore
from resources.warehouse import read_only



def card_metadata(card: dict) -> dict:
    """The model card as metadata: metrics of every candidate (a table the UI shows whole),
    calibration and decile plots (also on the card's page, ``model_card_page``), top predictors,
    sizes and cutoffs."""
    meta = {
        "model_version": card.get("version", ""), "model": card["model"], "data_hash": card["data_hash"],
        "main_metric": f"{card['main_metric']}: challenger {card['challenger_metric']:.4f}, baseline "
                       f"({card['baseline']}) {card['baseline_metric']:.4f}"
                       + (f", champion {card['champion_metric']:.4f}" if card.get("champion_metric") is not None else ""),
        "metrics": table_value(metrics_frame(card)),
        "train_cutoffs": dg.MetadataValue.json(card["train_cutoffs"]), "test_cutoff": card["test_cutoff"],
        "train_examples": dg.MetadataValue.int(card["train_examples"]),
        "test_examples": dg.MetadataValue.int(card["test_examples"]),
        "top_predictors": dg.MetadataValue.md(markdown_table(pd.DataFrame(card["importance"]), 10, 60)
                                              if card["importance"] else "none: the served model reads no features"),
        "features": dg.MetadataValue.json(card["features"]),
    }
    if card.get("tier"):
        meta["tier"] = card["tier"]
    if card.get("notes"):
        meta["notes"] = dg.MetadataValue.md("\n".join(f"- {n}" for n in card["notes"]))
    if card.get("definition"):
        meta["definition"] = dg.MetadataValue.json(card["definition"])
    if card.get("compared"):
        meta["compared_with_rules"] = dg.MetadataValue.md(markdown_table(pd.DataFrame(card["compared"]), 10))
    if card.get("left_out_features"):
        meta["left_out_features"] = dg.MetadataValue.json(card["left_out_features"])
    if card.get("failed_candidates"):
        meta["failed_candidates"] = dg.MetadataValue.md("\n".join(
            f"- {name}: {error}" for name, error in card["failed_candidates"].items()))
    if "training_sample" in card:
        meta["training_sample"] = dg.MetadataValue.json(card["training_sample"])
    plots = card_plots(card)
    for title, png in plots.items():
        meta[title.replace(" ", "_")] = image(png, title)
    if "deciles" in card:
        meta["deciles"] = dg.MetadataValue.md(markdown_table(pd.DataFrame(card["deciles"]), 10))
    if "value_deciles" in card:
        meta["value_deciles"] = dg.MetadataValue.md(markdown_table(pd.DataFrame(card["value_deciles"]), 10))
    return meta


def unchanged(registry, task: str, same: str, champion: str | None):
    """A retraining on exactly the data and configuration of ``same``: no new version, the gate's
    decision on ``same`` stands (passed if it is the champion)."""
    status = (f"unchanged: the training data and configuration are those of {same} (fingerprint "
              f"{registry.card(task, same)['training_fingerprint']}); nothing new to learn, no new version")
    registry.record_attempt(task, same, status)
    yield dg.MaterializeResult(metadata={"status": status, **card_metadata(registry.card(task, same)),
                                         "model_card_page": dg.MetadataValue.path(str(registry.report_path(task, same))),
                                         "champion_before": champion or "none"})
    yield dg.AssetCheckResult(
        check_name="quality_gate", passed=same == champion, severity=dg.AssetCheckSeverity.WARN,
        description=f"{status}; {same} is the champion" if same == champion else
        f"{status}; the gate refused {same} before and the champion stays ({champion or 'none'})")


def model_asset(task: ModuleType, description: str):
    key = keys.model(task.TASK)

    @policy.asset(key=key, group_name="ml", kinds={"scikit-learn", "python"},
                  deps=[*keys.TIMELINE_DEPS, keys.FEATURES], description=description,
                  check_specs=[dg.AssetCheckSpec("quality_gate", asset=key, blocking=True, description=(
                      "Promotes the challenger to champion only if its main metric beats the naive baseline "
                      f"by {CONFIG.gate_margin} and is at most {CONFIG.gate_tolerance} below the champion's on the "
                      "same test examples; otherwise the champion stays and this check fails (as a warning while "
                      "there is no champion: the data does not support a better model yet)."))])
    def train(context: dg.AssetExecutionContext, warehouse: DuckDBResource, models: ModelStore):
        registry = models.registry()
        current = registry.champion(task.TASK)
        champion = registry.load(task.TASK, current) if current else None
        with read_only(warehouse) as con:
            try:
                sample = training_sample(con, CONFIG)
                model, card = task.train(con, CONFIG, FEATURES, champion, events=sample.events)
                card["training_sample"] = sample.describe()
            except NotEnoughData as e:
                registry.record_attempt(task.TASK, None, f"not enough data: {e}")
                context.log.warning(f"{task.TASK}: not enough data: {e}")
                yield dg.MaterializeResult(metadata={"status": f"not enough data: {e}",
                                                     "champion": current or "none"})
                yield dg.AssetCheckResult(check_name="quality_gate", passed=False,
                                          severity=dg.AssetCheckSeverity.WARN,
                                          description=f"nothing to promote, the champion stays ({current or 'none'}): "
                                                      f"not enough data: {e}")
                return
        card["training_fingerprint"] = training_fingerprint(card["data_hash"], CONFIG, FEATURES)
        same = registry.same_training(task.TASK, card["training_fingerprint"])
        if same:        # the same data and configuration as a registered version: nothing new was learnt
            yield from unchanged(registry, task.TASK, same, current)
            return
        version = registry.register(task.TASK, model, card)
        registry.record_attempt(task.TASK, version, "trained")
        card = registry.card(task.TASK, version)
        page = registry.write_report(task.TASK, version, card_page(card, card_plots(card)))
        yield dg.MaterializeResult(metadata={"status": "trained", **card_metadata(card),
                                             "model_card_page": dg.MetadataValue.path(str(page)),
                                             "champion_before": current or "none"})
        with warehouse.get_connection() as con:
            decision = serving.promote(con, registry, task, version, card, current, CONFIG,
                                       f"dagster run {context.run_id}")
        # refused with a champion serving: the retraining made nothing better, which the team must
        # see (and the champion's scores stay). Refused with none: the data does not support a model
        # better than the naive baseline yet - a state to report, like too little data
        yield dg.AssetCheckResult(
            check_name="quality_gate", passed=decision.passed,
            severity=dg.AssetCheckSeverity.ERROR if current else dg.AssetCheckSeverity.WARN,
            description=decision.summary() if current or decision.passed else
            f"not enough signal yet: {decision.summary()}; nothing is served until a model beats the baseline",
            metadata={"challenger": version, "champion": registry.champion(task.TASK) or "none",
                      "metric": decision.metric, "challenger_value": decision.challenger,
                      "baseline_value": decision.baseline,
                      "champion_value": decision.champion if decision.champion is not None else float("nan")})

    return train


def scores_asset(task: ModuleType, table: str, schema, description: str):
    key = keys.table(table)

    @daily_asset(key=key, group_name="ml", kinds={"duckdb", "scikit-learn"}, deps=[keys.FEATURES, keys.model(task.TASK)],
                 description=description,
                 check_specs=[partition_check_spec(schema, key),
                              dg.AssetCheckSpec("every_eligible_customer_scored", asset=key, blocking=True,
                                                description="Every customer the model is for has a score of this day."),
                              dg.AssetCheckSpec("drift", asset=key, description=(
                                  "Population stability index of the key features and of the scores between the "
                                  f"training data and the day; warns from PSI {CONFIG.drift_psi_warn}."))])
    def scores(context: dg.AssetExecutionContext, warehouse: DuckDBResource, models: ModelStore):
        registry = models.registry()
        version = registry.champion(task.TASK)
        days = context.partition_keys
        with warehouse.get_connection() as con:
            if version is None:
                attempt = registry.last_attempt(task.TASK) or {"status": "never trained"}
                why = f"no champion model for {task.TASK} yet ({attempt['status']}): nothing scored"
                context.log.warning(why)
                yield dg.MaterializeResult(metadata={"status": why})
                yield dg.AssetCheckResult(check_name="every_eligible_customer_scored", passed=False,
                                          severity=dg.AssetCheckSeverity.WARN, description=why)
                yield dg.AssetCheckResult(check_name=check_name(schema), passed=False,
                                          severity=dg.AssetCheckSeverity.WARN, description=why)
                yield dg.AssetCheckResult(check_name="drift", passed=True, description=why)
                return
            model, card = registry.load(task.TASK, version)
            scored = {day: serving.score_day(con, task, table, model, card, version, CONFIG, FEATURES,
                                             date.fromisoformat(day)) for day in days}
            counts = {day: s.customers for day, s in scored.items()}
            missing = {day: s.missing for day, s in scored.items()}
            check = partition_check(con, table, "snapshot_date", days, schema, key)
            meta = table_metadata(con, table, where=f"snapshot_date = DATE '{days[-1]}'")
        score_col, out = task.SCORE, scored[days[-1]].scores
        drift, shifted = serving.drift(card, scored[days[-1]], score_col, CONFIG.drift_psi_warn)
        yield dg.MaterializeResult(metadata={
            **meta, "model_version": version, "model": card["model"], "scored_per_day": dg.MetadataValue.json(counts),
            **({"risk_bands": dg.MetadataValue.json(out["risk_band"].value_counts().to_dict())} if "risk_band" in out else {}),
            "score_distribution": image(histogram_plot(out[score_col], f"{task.TASK}: {days[-1]}", score_col),
                                        "score distribution"),
            "psi": dg.MetadataValue.json(drift)})
        yield check
        gaps = {d: m for d, m in missing.items() if m}
        yield dg.AssetCheckResult(
            check_name="every_eligible_customer_scored", passed=not gaps and sum(counts.values()) > 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{sum(counts.values()):,} customers scored by {version}" if not gaps else
                         f"eligible customers without a score: {gaps}"))
        yield dg.AssetCheckResult(
            check_name="drift", passed=not shifted, severity=dg.AssetCheckSeverity.WARN,
            description=(f"PSI ≥ {CONFIG.drift_psi_warn} for: " + ", ".join(f"{k} {v}" for k, v in shifted.items())
                         + f". The day's customers differ from those {task.TASK} {version} was trained on: "
                         "look at the shifted features (a source change, a campaign, a season?); if the shift is "
                         "real, retrain (the drift_retraining sensor does when switched on, or run retrain_models) "
                         "and let the quality gate judge; until then the scores still come from the champion"
                         if shifted else f"all PSI below {CONFIG.drift_psi_warn} (max {max(drift.values()):.3f})"),
            metadata={"psi": dg.MetadataValue.json(drift)})

    return scores


def ml_assets() -> list:
    return [
        model_asset(churn, "Churn model: trains a recency rule, the count models' rules (BG/NBD and Pareto/NBD "
                    "1 − P(alive) and expected purchases), a logistic regression and a calibrated gradient-boosting "
                    "model on feature snapshots at rolling cutoffs, labelled 'no order in the horizon after the "
                    "cutoff' (the horizon from the shop's purchase cadence unless configured), measures them on a "
                    "later test cutoff and registers the best but the recency rule as challenger with its model "
                    "card; a candidate that fails is recorded there."),
        scores_asset(churn, "ml.churn_scores", ChurnScores,
                     "Churn probability and low/medium/high risk band of every customer with an order, from the "
                     "day's feature snapshot, scored by the champion churn model (its version on every row)."),
        model_asset(clv, "CLV model: with 365-day label windows in the history, a historic-value baseline, BG/NBD "
                    "and Pareto/NBD with Gamma-Gamma and a Poisson gradient-boosting model of the net value of the "
                    "next 12 months, measured on a later test cutoff; with a shorter history the count models "
                    "alone, chosen on a time split inside it. The best by MAE is the challenger, with an 80% "
                    "interval from its test residuals; the card says which tier and why."),
        scores_asset(clv, "ml.clv_scores", ClvScores,
                     "Per customer with an order: probability alive, expected purchases over the configured "
                     "horizons (clv_horizons_days), predicted 12-month net value with an 80% interval and the expected next-order "
                     "date, scored by the champion CLV model (its version on every row)."),
        model_asset(nbo, "Next-best-offer model: ranks the product categories a customer does not keep yet by the "
                    "chance they buy them next (popularity, co-purchase rate with their categories, web views, "
                    "customer features), measured by hit-rate@3 on a later test cutoff against ranking by "
                    "popularity."),
        scores_asset(nbo, "ml.next_best_offer", NextBestOffer,
                     "The top three categories to offer each customer with an order, never one they returned "
                     "something from in the last 180 days, ranked by the champion next-best-offer model."),
        model_asset(leads, "Lead-scoring model: a logistic regression on the lead's source, deal value and age and "
                    "its contact's engagement, trained on monthly cutoffs and measured on six later ones against "
                    "the conversion rate of the lead's source channel."),
        scores_asset(leads, "ml.lead_scores", LeadScores,
                     "Conversion probability of every sales lead open on the day, with the three features that "
                     "raise it most, scored by the champion lead-scoring model."),
    ]
