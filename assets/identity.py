"""Identity resolution: match, cluster, keep ids stable, measure how good it is.

Thin over ``crm_platform.identity``; the match spec (YAML) decides what is compared and how.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.metadata import markdown_table, table_metadata, table_spec
from crm_platform.core import settings
from crm_platform.core.privacy import identifier_hash
from crm_platform.core import audit
from crm_platform.identity import evaluate, guards, resolve, review
from resources.identity import IdentityResolution
from resources.warehouse import heavy

GROUP = "identity"
K = keys.IDENTITY


def _spec(key: dg.AssetKey, description: str, deps) -> dg.AssetSpec:
    return table_spec(key, description, deps, GROUP, policy.HEAVY_KINDS)


class MatchConfig(dg.Config):
    full_rematch: bool = False     # train the weights afresh and re-match every contact


def _prior_metadata(rep) -> dict:
    """How EM estimated the match rate (full matches; a daily match keeps the last model's)."""
    if rep.prior is None:
        return {}
    fit = rep.prior
    out = {"match_rate_method": fit.method, "match_rate_em_iterations": fit.iterations,
           "match_rate_em_converged": fit.converged, "expected_true_pairs": round(fit.expected_matches, 1),
           "expected_duplicate_share": round(min(fit.expected_matches / max(rep.records, 1), 1.0), 4)}
    for name, cx in rep.contexts.items():
        out[f"context_{name}"] = dg.MetadataValue.json({"pairs": cx.pairs, "match_share": round(cx.probability, 4),
                                                        "em_iterations": cx.iterations})
    return out


@policy.multi_asset(
    specs=[
        _spec(K["candidate_pairs"], "Record pairs proposed by the match spec's blocking rules, each once, "
              "with the first rule that proposed it. Never a cross product: oversized blocks are skipped "
              "and reported.",
              # the match spec reads the shop account a support requester's tickets name
              [keys.CONTACTS, keys.SUPPORT_TICKETS]),
        _spec(K["match_weights"], "The Fellegi-Sunter model: m and u probability and match weight (bits) "
              "of every comparison level; u from random pairs, m by EM per training blocking rule.",
              [K["candidate_pairs"]]),
        _spec(K["pair_scores"], "Every candidate pair with its comparison vector, per-field weights, "
              "total weight, match probability and decision (must_link, deterministic, link, review, "
              "no_link, cannot_link).", [K["match_weights"]]),
    ],
)
def match_contacts(config: MatchConfig, warehouse: DuckDBResource, identity: IdentityResolution):
    """Block, compare and score staging.contacts; reviewer decisions join as labels. Contacts new
    or delivered again since the last run are matched against all, under the last model; a changed
    spec or reviewer decisions, a model older than a week, many changed contacts or the launchpad's
    ``full_rematch`` re-match everyone (resolve.match)."""
    decisions, bad_rows = review.load_decisions(identity.review_dir)
    with warehouse.get_connection() as con:
        spec = identity.spec(con)
        with heavy(warehouse, con) as engine:
            rep = resolve.match(engine, spec, decisions, incremental=not config.full_rematch)
        salt = settings.Paths(Path(identity.home)).hash_salt()
        audit.record_many(con, [
            {"action": "review_decision", "actor": "reviewer (review/decisions.csv)",
             # the pair by a salted hash: the audit log names no record of a person
             "subject": "pair " + identifier_hash("review_pair", "|".join(sorted((d.left_id, d.right_id))), salt)[:24],
             "outcome": "match" if d.label == 1 else "no_match", "details": {"applied_as": "must_link" if d.label == 1
                                                                              else "cannot_link"}}
            for d in decisions.itertuples(index=False)])
        weights = con.sql("SELECT context, comparison, level, round(m_probability, 4) AS m, "
                          "round(u_probability, 6) AS u, round(weight_bits, 2) AS weight_bits FROM identity.match_weights "
                          "ORDER BY context, comparison, gamma DESC").df()
        meta = {k: table_metadata(con, ".".join(K[k].path)) for k in ("candidate_pairs", "match_weights", "pair_scores")}
    rejected = pd.concat([bad_rows.assign(left_id_given="", right_id_given=""),
                          (rep.rejected_labels if rep.rejected_labels is not None else pd.DataFrame())])
    yield dg.MaterializeResult(asset_key=K["candidate_pairs"], metadata={
        **meta["candidate_pairs"], "pairs_by_blocking_rule": dg.MetadataValue.json(rep.pairs_by_rule),
        "skipped_oversized_blocks": dg.MetadataValue.json(rep.skipped_blocks),
        "records": rep.records, "seconds": dg.MetadataValue.json(rep.seconds),
        "match_mode": rep.mode, "match_mode_reason": rep.reason,
        "records_matched_this_run": rep.records_matched, "records_removed_this_run": rep.records_removed})
    yield dg.MaterializeResult(asset_key=K["match_weights"], metadata={
        **meta["match_weights"], "weights": dg.MetadataValue.md(markdown_table(weights, 60)),
        "em_sessions": dg.MetadataValue.md(markdown_table(pd.DataFrame(rep.sessions), 20, 80)),
        "prior_match_probability": float(rep.prior_match_probability), "model": rep.model,
        **_prior_metadata(rep),
        "spec": str(spec.path.name if spec.path else "derived from the data (crm-platform match-spec prints it)"),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in rep.notes) or "the data trained every comparison")})
    yield dg.MaterializeResult(asset_key=K["pair_scores"], metadata={
        **meta["pair_scores"], "decisions": dg.MetadataValue.json(rep.decisions), "model": rep.model,
        "review_labels": dg.MetadataValue.json(rep.labels),
        "review_rows_not_used": dg.MetadataValue.md(markdown_table(rejected, 20, 60)),
        "review_rows_not_used_count": len(rejected)})


@policy.multi_asset(
    specs=[
        _spec(K["crosswalk"], "Every staged contact record mapped to exactly one customer_id. Ids are "
              "stable across runs; merges keep the surviving id.", [K["pair_scores"]]),
        _spec(K["links"], "Every link the clustering considered, strongest first, with its per-field "
              "weights, total weight and outcome (accepted, or refused by which guard).", [K["pair_scores"]]),
        _spec(K["review_queue"], "Uncertain pairs of different customers, side by side, also exported to "
              "review/queue.csv; decisions in review/decisions.csv apply on the next run.", [K["pair_scores"]]),
        _spec(K["id_changes"], "History of customer id merges, splits and moves (old id, new id, kind, "
              "evidence, time) so downstream tools can follow.", [K["pair_scores"]]),
    ],
    check_specs=[
        dg.AssetCheckSpec("every_contact_mapped_once", asset=K["crosswalk"], blocking=True,
                          description="Each staged contact has exactly one customer_id and nothing else is mapped."),
        dg.AssetCheckSpec("guard_max_cluster_size", asset=K["crosswalk"], blocking=True,
                          description="No customer holds more records than the spec's max_cluster_size."),
        dg.AssetCheckSpec("guard_conflicting_ids", asset=K["crosswalk"], blocking=True,
                          description="No customer holds two different values of a declared strong identifier (national id, carried shop number)."),
        dg.AssetCheckSpec("guard_cannot_link", asset=K["crosswalk"], blocking=True,
                          description="No customer holds a pair a cannot-link rule of the spec or a reviewer keeps apart."),
    ],
)
def resolve_customers(warehouse: DuckDBResource, identity: IdentityResolution):
    """Cluster accepted links with over-merge guards and map clusters onto stable customer ids;
    daily, only the link components that new, changed or removed contacts touch (resolve.resolve)."""
    with warehouse.get_connection() as con:
        spec = identity.spec(con)
        with heavy(warehouse, con) as engine:
            rep = resolve.resolve(engine, spec, incremental=True)
        queue = con.sql("SELECT * FROM identity.review_queue").df()
        vetoing, id_notes = guards.vetoing_ids(con, spec)
        review.export_queue(queue, identity.review_dir)
        meta = {k: table_metadata(con, ".".join(K[k].path)) for k in ("crosswalk", "links", "review_queue", "id_changes")}
        checks = {"every_contact_mapped_once": guards.unmapped_contacts(con),
                  "guard_max_cluster_size": guards.oversized_clusters(con, spec),
                  "guard_conflicting_ids": guards.conflicting_ids(con, spec),
                  "guard_cannot_link": guards.cannot_link_violations(con)}
    sizes = pd.DataFrame(list(rep.cluster_sizes.items()), columns=["records_per_customer", "customers"])
    yield dg.MaterializeResult(asset_key=K["crosswalk"], metadata={
        **meta["crosswalk"], "customers": rep.customers, "records": rep.records,
        "merge_rate": round(1 - rep.customers / rep.records, 4) if rep.records else 0.0,
        "cluster_sizes": dg.MetadataValue.md(markdown_table(sizes, 30)),
        "identifiers_that_veto": dg.MetadataValue.json(vetoing),
        "identifier_notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in id_notes) or "every declared identifier vetoes"),
        "ids_minted": rep.minted, "id_changes": dg.MetadataValue.json(rep.id_changes),
        "resolve_mode": rep.mode, "resolve_mode_reason": rep.reason, "records_resolved_this_run": rep.records_resolved,
        "records_in_guarded_components": dg.MetadataValue.int(rep.guarded_records)})
    yield dg.MaterializeResult(asset_key=K["links"], metadata={
        **meta["links"], "accepted": rep.links_accepted,
        "refused_by_guard": dg.MetadataValue.json(rep.refused)})
    yield dg.MaterializeResult(asset_key=K["review_queue"], metadata={
        **meta["review_queue"], "pairs_to_review": rep.review_queue,
        "export": dg.MetadataValue.path(str(identity.review_dir / review.QUEUE_FILE))})
    yield dg.MaterializeResult(asset_key=K["id_changes"], metadata={
        **meta["id_changes"], "changes_this_run": dg.MetadataValue.json(rep.id_changes)})
    # no record at all: staging.contacts passed its check empty, so no source declares contacts
    for name, (n, rows) in checks.items():
        yield dg.AssetCheckResult(asset_key=K["crosswalk"], check_name=name, passed=n == 0,
                                  metadata={"violations": int(n), "examples": dg.MetadataValue.md(markdown_table(rows, 20))},
                                  description=f"{n} violations" if n else f"holds for {rep.records} records" if rep.records
                                  else "no contact record to resolve (absent: no source declares contacts)")


@policy.asset(
    key=K["resolution_quality"], deps=[K["crosswalk"], K["candidate_pairs"], K["review_queue"]],
    group_name=GROUP, kinds={"duckdb", "sql"},
)
def resolution_quality(warehouse: DuckDBResource, identity: IdentityResolution) -> dg.MaterializeResult:
    """How good the resolution is. With the generator's truth: pairwise and B-cubed precision,
    recall and F1 and blocking recall. Without truth: cluster sizes, merge rate, review queue."""
    clusters = "SELECT contact_key AS record_id, customer_id AS cluster_id FROM identity.crosswalk"
    with warehouse.get_connection() as con:
        desc = evaluate.without_truth(con, clusters, "SELECT * FROM identity.review_queue")
        measured = "description"
        metrics = {k: v for k, v in desc.items() if k != "cluster_size_distribution"}
        # against truth only where there is something to measure (no contact record: nothing resolved)
        if identity.truth_file.exists() and desc.get("records"):
            truth = pd.read_csv(identity.truth_file, dtype=str, keep_default_na=False)
            systems = con.sql("SELECT DISTINCT dataset, source_system FROM identity.crosswalk").df()
            truth = truth.merge(systems, on="dataset")
            truth = truth.assign(record_id=truth.source_system + ":" + truth.source_record_id,
                                 entity_id=truth.person_id)
            metrics.update(evaluate.with_truth(con, clusters, truth,
                                               "SELECT left_id, right_id FROM identity.candidate_pairs"))
            measured = "generator truth"
        rows = pd.DataFrame({"metric": list(metrics), "value": [float(v) for v in metrics.values()]})
        rows["measured_against"] = measured
        con.register("_q", rows)
        con.execute("CREATE OR REPLACE TABLE identity.resolution_quality AS SELECT *, now()::TIMESTAMP AS measured_at FROM _q")
        con.unregister("_q")
    meta = {k: (dg.MetadataValue.float(float(v)) if isinstance(v, float) else int(v)) for k, v in metrics.items()}
    meta["measured_against"] = measured
    meta["cluster_size_distribution"] = dg.MetadataValue.json(
        {str(k): v for k, v in desc["cluster_size_distribution"].items()})
    return dg.MaterializeResult(metadata=meta)


def identity_assets() -> list:
    return [match_contacts, resolve_customers, resolution_quality]

