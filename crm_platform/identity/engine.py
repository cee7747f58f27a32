"""The match engine: blocking, comparison, Fellegi-Sunter weights by EM, scoring and decisions.

Everything set-based runs in DuckDB SQL generated from the match spec, so memory stays bounded
and both cores work; only the pattern table (one row per distinct comparison vector, a few
thousand rows whatever the data size) reaches Python, where the EM runs and where the supervised
classifier of ``recordlinkage`` is trained when clerical labels exist.

Tables written to the output schema ``out``:

``records``          the input with the spec's derived columns
``candidate_pairs``  left_id, right_id and the first blocking rule that proposed the pair
``comparisons``      the comparison vector (one gamma level per field) of every candidate pair,
                     plus the deterministic rule and the cannot-link rule that hold for it
``patterns``         each distinct vector with its count, per-field match weights, total weight
                     and match probability
``match_weights``    m and u probability and weight of every comparison level (the model)
``pair_scores``      comparisons with per-field weights, total weight, probability and decision
                     (the comparisons table is dropped once scored)
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace

import pandas as pd

from crm_platform.contracts.buildstate import fingerprint
from crm_platform.identity.spec import MatchSpec
from crm_platform.core.warehouse import columns, table_exists, transaction
from crm_platform.identity.weights import (PriorFit, pattern_counts, score_patterns, u_top, weights_frame,
                                          comparable_pairs, estimate_prior, estimate_u, fit_contexts, supervised, train_m)
from crm_platform.identity import rl_compare
from crm_platform.identity.compare import compare
from crm_platform.identity.blocking import prepared, rel, with_tf, block, orient, prepare


@dataclass
class EngineReport:
    records: int = 0
    candidate_pairs: int = 0
    pairs_by_rule: dict = field(default_factory=dict)
    skipped_blocks: dict = field(default_factory=dict)
    patterns: int = 0
    sessions: list = field(default_factory=list)
    prior_match_probability: float = 0.0
    model: str = "fellegi_sunter_em"
    labels: dict = field(default_factory=dict)
    decisions: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    rejected_labels: pd.DataFrame | None = None
    mode: str = "full"                # or "incremental"
    reason: str = ""                  # why this mode
    records_matched: int = 0          # records blocked and compared this run (all in a full run)
    records_removed: int = 0          # records gone from the input since the last run (incremental)
    notes: list = field(default_factory=list)   # what the data did not allow, in words (nothing to learn from)
    prior: "PriorFit | None" = None   # how the match rate was estimated (full runs)
    contexts: dict = field(default_factory=dict)   # context name -> its model (ContextFit)


def spec_fingerprint(spec: MatchSpec) -> str:
    """What the spec asks for: its settings and the contents of its lookup files, not where they
    are read from (with the paths in it, the same spec in another checkout re-matched all 1.4M
    records of the 1M-customer world and ended with 22 customers fewer)."""
    lookups = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in sorted(spec.lookups.items())}
    return fingerprint((replace(spec, lookups={}, path=None), lookups))


def decisions_fingerprint(decisions: pd.DataFrame | None) -> str:
    if decisions is None or not len(decisions):
        return fingerprint([])
    return fingerprint(sorted(decisions[["left_id", "right_id", "label"]].astype(str).itertuples(index=False, name=None)))


def _decisions_table(con, decisions: pd.DataFrame | None) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _decisions (left_id VARCHAR, right_id VARCHAR, label INTEGER)")
    if decisions is not None and len(decisions):
        con.register("_dec_df", decisions[["left_id", "right_id", "label"]])
        con.execute("INSERT INTO _decisions SELECT left_id, right_id, label FROM _dec_df")
        con.unregister("_dec_df")


def score(con, spec: MatchSpec, out: str, decisions: pd.DataFrame | None = None,
          generation: str = "") -> EngineReport:
    """EM weights, pattern scores and per-pair decisions; writes patterns, match_weights, scores."""
    rep = EngineReport()
    t = time.perf_counter()
    u = estimate_u(con, spec, out)
    masked = pattern_counts(con, spec, rel(out, "comparisons"), ", rule_mask", spec.pattern_keys)
    m, rep.sessions, rep.notes = train_m(spec, masked, u)
    if not len(masked):
        rep.notes.insert(0, "no candidate pairs: blocking found no two records sharing a key, so every record "
                            "stays a customer of its own")
    patterns = masked.groupby(spec.pattern_keys, as_index=False)["n"].sum()
    fit = estimate_prior(spec, patterns, m, u, comparable_pairs(con, spec, out))
    lam, rep.prior = fit.probability, fit
    if not fit.converged:
        rep.notes.append(f"the match rate did not converge in {fit.iterations} EM iterations; the last estimate is used")
    rep.contexts = fit_contexts(spec, patterns, m, u)
    weights = weights_frame(spec, m, u, rep.contexts)
    pats = score_patterns(spec, patterns, weights, lam)
    rep.patterns, rep.prior_match_probability = len(pats), lam
    rep.seconds["em"] = round(time.perf_counter() - t, 2)
    _decisions_table(con, decisions)
    if decisions is not None and len(decisions):
        g = ", ".join(f"c.{x}" for x in spec.gammas)
        labelled = con.execute(f"SELECT d.left_id, d.right_id, d.label, {g} FROM _decisions d "
                               f"JOIN {rel(out, 'comparisons')} c USING (left_id, right_id)").df()
        proba, rep.labels = supervised(spec, pats, labelled)
        if proba is not None:
            pats["match_probability"] = proba
            rep.model = "recordlinkage_logistic_regression"
    con.register("_pats_df", pats)
    con.execute(f"CREATE OR REPLACE TABLE {rel(out, 'patterns')} AS SELECT * FROM _pats_df")
    con.unregister("_pats_df")
    con.register("_w_df", weights)
    con.execute(f"CREATE OR REPLACE TABLE {rel(out, 'match_weights')} AS SELECT *, ? AS prior_match_probability, "
                f"? AS model, ? AS spec_hash, ? AS decisions_hash, ? AS source_generation, "
                f"now()::TIMESTAMP AS trained_at FROM _w_df",
                [lam, rep.model, spec_fingerprint(spec), decisions_fingerprint(decisions), generation])
    con.unregister("_w_df")
    con.execute(f"CREATE OR REPLACE TABLE {rel(out, 'pair_scores')} AS "
                f"{_pair_scores_sql(spec, out, rel(out, 'comparisons'), weights, rep.model)}")
    con.execute(f"DROP TABLE {rel(out, 'comparisons')}")
    rep.decisions = dict(con.execute(f"SELECT decision, count(*) FROM {rel(out, 'pair_scores')} "
                                     "GROUP BY 1 ORDER BY 1").fetchall())
    return rep


def _pair_scores_sql(spec: MatchSpec, out: str, comparisons: str, weights: pd.DataFrame, model: str) -> str:
    """Per-field weights, total weight, probability and decision of the compared pairs, from the
    scored patterns and the reviewers' ``_decisions``."""
    # a common value agreeing (Mueller, Berlin) is weaker evidence than a rare one: the strongest
    # level's u is replaced by the frequency of the value itself (Splink's term frequencies)
    adj = {c.name: (f"CASE WHEN c.{c.gamma} = {len(c.levels)} AND c.context = '' THEN log2({u_top(weights, c)} / "
                    f"greatest(c.{c.tf}, 1e-9)) ELSE 0 END") for c in spec.comparisons if c.tf_column}
    wcols = ", ".join(f"p.w_{c.name} + {adj[c.name]} AS w_{c.name}" if c.name in adj else f"p.w_{c.name}"
                      for c in spec.comparisons)
    total = "p.total_weight" + "".join(f" + {a}" for a in adj.values())
    prob_sql = "pattern_probability" if model != "fellegi_sunter_em" else \
        "1 / (1 + pow(2, -greatest(least(total_weight, 1000), -1000)))"
    using = ", ".join(spec.pattern_keys)
    return f"""
        WITH s AS (
            SELECT c.* EXCLUDE ({', '.join(c.tf for c in spec.comparisons if c.tf_column) or 'rule_mask'}),
                   {wcols + ', ' if wcols else ''}{total} AS total_weight, p.match_probability AS pattern_probability,
                   d.label AS review_label
            FROM {comparisons} c JOIN {rel(out, 'patterns')} p USING ({using})
            LEFT JOIN _decisions d USING (left_id, right_id))
        SELECT s.* EXCLUDE (pattern_probability), {prob_sql} AS match_probability, now()::TIMESTAMP AS _built_at,
          CASE WHEN review_label = 1 THEN 'must_link'
               WHEN review_label = 0 THEN 'cannot_link'
               WHEN cannot_link_rule IS NOT NULL THEN 'cannot_link'
               WHEN deterministic_rule IS NOT NULL THEN 'deterministic'
               WHEN {prob_sql} >= {spec.link_threshold} THEN 'link'
               WHEN {prob_sql} >= {spec.review_threshold} THEN 'review'
               ELSE 'no_link' END AS decision
        FROM s"""


def run(con, spec: MatchSpec, source_sql: str, out: str,
        decisions: pd.DataFrame | None = None, incremental: bool = False, generation: str = "") -> EngineReport:
    """Prepare, block, compare and score ``source_sql`` under ``spec`` into schema ``out``; with
    ``incremental``, only what changed since the last run when that is possible (see
    ``run_incremental``). ``generation`` names the build of the input (a full rebuild of it, with
    the same load times, changes it)."""
    reason = "full run asked for"
    if incremental:
        rep, reason = run_incremental(con, spec, source_sql, out, decisions, generation)
        if rep is not None:
            return rep
    rep = _run_full(con, spec, source_sql, out, decisions, generation)
    rep.reason = reason
    return rep


# An incremental run re-matches at most this share of the records; above it, a full run (fresh
# weights and term frequencies) costs little more.
MAX_INCREMENTAL_SHARE = 0.2
# A model older than this is trained afresh: the weights follow the data week by week.
MAX_MODEL_AGE_DAYS = 7


def _changed_ids(con, spec: MatchSpec, source_sql: str, out: str) -> tuple[int, int, int]:
    """Temporary ``_delta`` (input records new or delivered again since the last run) and
    ``_gone`` (records no longer in the input); returns their sizes and the input size."""
    uid, recs = spec.unique_id, rel(out, "records")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _delta AS SELECT s.{uid} AS id FROM ({source_sql}) s
        LEFT JOIN {recs} r ON r.{uid} = s.{uid}
        WHERE r.{uid} IS NULL OR s._loaded_at IS DISTINCT FROM r._loaded_at
           OR s._source_file IS DISTINCT FROM r._source_file OR s._source_line IS DISTINCT FROM r._source_line""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _gone AS SELECT r.{uid} AS id FROM {recs} r
        ANTI JOIN ({source_sql}) s ON s.{uid} = r.{uid}""")
    return con.execute(f"SELECT (SELECT count(*) FROM _delta), (SELECT count(*) FROM _gone), "
                       f"(SELECT count(*) FROM ({source_sql}))").fetchall()[0]


def _why_full(con, spec: MatchSpec, out: str, decisions: pd.DataFrame | None, generation: str) -> str | None:
    if not all(table_exists(con, rel(out, t)) for t in ("records", "candidate_pairs", "patterns",
                                                          "match_weights", "pair_scores")):
        return "no earlier run"
    if spec.compare_backend != "duckdb":
        return "the recordlinkage comparison backend runs in full"
    cols = set(columns(con, rel(out, 'match_weights')))
    if not {"spec_hash", "decisions_hash", "model", "trained_at", "source_generation", "context"} <= cols:
        return "the model does not say what it was trained under"
    cols = set(columns(con, rel(out, 'pair_scores')))
    if "_built_at" not in cols:
        return "the pairs do not say when they were built"
    cols = set(columns(con, rel(out, 'records')))
    if not {"_loaded_at", "_source_file", "_source_line"} <= cols:
        return "the records carry no lineage to tell new ones by"
    held = con.execute(f"SELECT any_value(spec_hash), any_value(decisions_hash), any_value(source_generation) "
                       f"FROM {rel(out, 'match_weights')}").fetchall()[0]
    if held[0] != spec_fingerprint(spec):
        return "the match spec changed"
    if held[1] != decisions_fingerprint(decisions):
        return "reviewer decisions changed"
    if held[2] != generation:
        return "the input was rebuilt in full since the last full match"
    old = con.execute(f"SELECT max(trained_at) < now()::TIMESTAMP - INTERVAL {MAX_MODEL_AGE_DAYS} DAY "
                      f"FROM {rel(out, 'match_weights')}").fetchall()[0][0]
    if old:
        return f"the model is older than {MAX_MODEL_AGE_DAYS} days: the weights are trained afresh"
    return None


def run_incremental(con, spec: MatchSpec, source_sql: str, out: str, decisions: pd.DataFrame | None = None,
                    generation: str = "") -> tuple[EngineReport | None, str]:
    """Match only the records that are new or were delivered again since the last run, against
    every record, under the last run's model (weights, prior, term frequencies of the records
    already matched): their old pairs are dropped, they are blocked against all records (block
    sizes over all records), and the new pairs are compared, scored and appended.

    Returns (None, reason) when a full run is needed instead: no earlier run, another spec or
    other reviewer decisions, the recordlinkage backend, a supervised model meeting a comparison
    vector it never scored, or more than MAX_INCREMENTAL_SHARE of the records changed."""
    reason = _why_full(con, spec, out, decisions, generation)
    if reason:
        return None, reason
    t0 = time.perf_counter()
    delta, gone, total = _changed_ids(con, spec, source_sql, out)
    if delta > MAX_INCREMENTAL_SHARE * max(total, 1):
        return None, f"{delta} of {total} records changed (more than {MAX_INCREMENTAL_SHARE:.0%})"
    w = con.execute(f"SELECT * FROM {rel(out, 'match_weights')}").df()
    weights, lam, model = w.drop(columns=["prior_match_probability", "model", "spec_hash", "decisions_hash",
                                          "source_generation", "trained_at"]), \
        float(w.prior_match_probability.iloc[0]), str(w.model.iloc[0])
    rep = EngineReport(mode="incremental", model=model, prior_match_probability=lam,
                       reason=f"{delta} new or changed and {gone} removed of {total} records")
    try:
        with transaction(con):
            reason = _match_delta(con, spec, source_sql, out, decisions, weights, lam, model, rep, t0)
            if reason:
                raise _FullRunNeeded(reason)
    except _FullRunNeeded as e:                  # rolled back: nothing was changed
        return None, str(e)
    for t in ("_new_pairs", "_new_comparisons", "_stale", "_delta", "_gone"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    rep.records, rep.records_matched, rep.records_removed = total, delta, gone
    return rep, rep.reason


class _FullRunNeeded(Exception):
    """Why the delta cannot be matched on its own; raised inside the transaction to roll it back."""


def _match_delta(con, spec: MatchSpec, source_sql: str, out: str, decisions: pd.DataFrame, weights: pd.DataFrame,
                 lam: float, model: str, rep: EngineReport, t0: float) -> str | None:
    """The body of ``run_incremental``, inside its transaction; returns why a full run is needed
    instead (the caller rolls back) or None."""
    uid, recs = spec.unique_id, rel(out, "records")
    con.execute("CREATE OR REPLACE TEMP TABLE _stale AS SELECT id FROM _delta UNION SELECT id FROM _gone")
    for t in ("pair_scores", "candidate_pairs"):
        con.execute(f"DELETE FROM {rel(out, t)} WHERE left_id IN (SELECT id FROM _stale) "
                    "OR right_id IN (SELECT id FROM _stale)")
    con.execute(f"DELETE FROM {recs} WHERE {uid} IN (SELECT id FROM _stale)")
    prepared(con, spec, f"SELECT s.* FROM ({source_sql}) s SEMI JOIN _delta d ON d.id = s.{uid}")
    tf = ", ".join(sorted({c.tf_column for c in spec.comparisons if c.tf_column}))
    population = f"(SELECT {tf} FROM {recs} UNION ALL SELECT {tf} FROM prepared)" if tf else ""
    con.execute(f"INSERT INTO {recs} BY NAME {with_tf(spec, population)}")
    con.execute("DROP TABLE prepared")
    decisions, rep.rejected_labels = orient(con, spec, out, decisions)
    _decisions_table(con, decisions)
    t1 = time.perf_counter()
    extra = [(a, b) for a, b in decisions[["left_id", "right_id"]].itertuples(index=False, name=None)] \
        if len(decisions) else []
    rep.pairs_by_rule, rep.skipped_blocks = block(con, spec, out, extra, new_only=True)
    t2 = time.perf_counter()
    compare(con, spec, out, pairs="_new_pairs", into="_new_comparisons")
    t3 = time.perf_counter()
    gcols = ", ".join(spec.pattern_keys)
    unseen = con.execute(f"SELECT {gcols}, count(*) AS n FROM _new_comparisons ANTI JOIN {rel(out, 'patterns')} "
                         f"USING ({gcols}) GROUP BY ALL").df()
    if len(unseen):
        if model != "fellegi_sunter_em":
            return f"{len(unseen)} comparison vectors the supervised model never scored"
        pats = score_patterns(spec, unseen, weights, lam)
        con.register("_pats_df", pats)
        con.execute(f"INSERT INTO {rel(out, 'patterns')} BY NAME SELECT * FROM _pats_df")
        con.unregister("_pats_df")
    con.execute(f"INSERT INTO {rel(out, 'pair_scores')} BY NAME "
                f"{_pair_scores_sql(spec, out, '_new_comparisons', weights, model)}")
    con.execute(f"INSERT INTO {rel(out, 'candidate_pairs')} BY NAME SELECT * FROM _new_pairs")
    rep.candidate_pairs = con.execute(f"SELECT count(*) FROM {rel(out, 'candidate_pairs')}").fetchall()[0][0]
    rep.patterns = con.execute(f"SELECT count(*) FROM {rel(out, 'patterns')}").fetchall()[0][0]
    rep.decisions = dict(con.execute(f"SELECT decision, count(*) FROM {rel(out, 'pair_scores')} "
                                     "GROUP BY 1 ORDER BY 1").fetchall())
    rep.seconds.update(prepare=round(t1 - t0, 2), blocking=round(t2 - t1, 2), compare=round(t3 - t2, 2),
                       score=round(time.perf_counter() - t3, 2))
    return None


def _run_full(con, spec: MatchSpec, source_sql: str, out: str,
              decisions: pd.DataFrame | None = None, generation: str = "") -> EngineReport:
    t0 = time.perf_counter()
    n = prepare(con, spec, source_sql, out)
    decisions, rejected = orient(con, spec, out, decisions)
    t1 = time.perf_counter()
    extra = list(decisions[["left_id", "right_id"]].itertuples(index=False, name=None)) \
        if decisions is not None and len(decisions) else None
    by_rule, skipped = block(con, spec, out, extra)
    t2 = time.perf_counter()
    if spec.compare_backend == "recordlinkage":
        rl_compare.compare(con, spec, out)
    else:
        compare(con, spec, out)
    t3 = time.perf_counter()
    rep = score(con, spec, out, decisions, generation)
    rep.records, rep.pairs_by_rule, rep.skipped_blocks = n, by_rule, skipped
    rep.records_matched = n
    rep.candidate_pairs = sum(by_rule.values())
    rep.rejected_labels = rejected
    rep.seconds.update(prepare=round(t1 - t0, 2), blocking=round(t2 - t1, 2), compare=round(t3 - t2, 2),
                       score=round(time.perf_counter() - t3, 2))
    return rep
