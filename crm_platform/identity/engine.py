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
import math
import re
import time
from dataclasses import dataclass, field, replace

import duckdb
import numpy as np
import pandas as pd

from crm_platform.buildstate import fingerprint
from crm_platform.identity.spec import MatchSpec
from crm_platform.warehouse import columns, table_exists

DECISIONS = ("must_link", "deterministic", "link", "review", "no_link", "cannot_link")


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


def _rel(out: str, name: str) -> str:
    return f"{out}.{name}"


def _prepared(con: duckdb.DuckDBPyConnection, spec: MatchSpec, source_sql: str) -> None:
    """The temporary ``_prepared``: the input rows with the spec's derived columns."""
    for name, path in spec.lookups.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE lookup_{name} AS "
                    f"SELECT * FROM read_csv(?, header=true, all_varchar=true)", [str(path)])
    derived = "".join(f", {expr} AS {name}" for name, expr in spec.derive.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE _prepared AS SELECT *{derived} FROM ({source_sql}) s")


def _with_tf(spec: MatchSpec, population: str) -> str:
    """``_prepared`` with the share of ``population`` records holding each value, for
    term-frequency adjusted weights (joins of small value tables are far cheaper than window
    partitions over the wide records)."""
    tf = [c for c in spec.comparisons if c.tf_column]
    cols = "".join(f", t{i}.tf AS {c.tf}" for i, c in enumerate(tf))
    joins = " ".join(
        f"LEFT JOIN (SELECT {c.tf_column} AS v, count(*) / sum(count(*)) OVER () AS tf FROM {population} "
        f"WHERE {c.tf_column} IS NOT NULL GROUP BY 1) t{i} ON t{i}.v = p.{c.tf_column}" for i, c in enumerate(tf))
    return f"SELECT p.*{cols} FROM _prepared p {joins}"


def prepare(con: duckdb.DuckDBPyConnection, spec: MatchSpec, source_sql: str, out: str) -> int:
    """Create ``out.records``: the input rows with the spec's derived columns."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {out}")
    _prepared(con, spec, source_sql)
    con.execute(f"CREATE OR REPLACE TABLE {_rel(out, 'records')} AS {_with_tf(spec, '_prepared')} "
                f"ORDER BY p.{spec.unique_id}")
    con.execute("DROP TABLE _prepared")
    dup = con.execute(f"SELECT count(*) - count(DISTINCT {spec.unique_id}), count(*) FILTER "
                      f"(WHERE {spec.unique_id} IS NULL) FROM {_rel(out, 'records')}").fetchall()[0]
    if dup[0] or dup[1]:
        raise ValueError(f"{spec.name}: unique id '{spec.unique_id}' has {dup[0]} repeated and "
                         f"{dup[1]} missing values; the engine needs one id per record")
    return con.execute(f"SELECT count(*) FROM {_rel(out, 'records')}").fetchall()[0][0]


def block(con, spec: MatchSpec, out: str, extra_pairs: list[tuple[str, str]] | None = None,
          new_only: bool = False) -> tuple[dict, dict]:
    """Candidate pairs from the blocking rules, each proposed once, never a cross product, into
    ``out.candidate_pairs``. With ``new_only``: into the temporary ``_new_pairs``, only the pairs
    with a record of ``_delta`` (block sizes still counted over all records), and reviewed
    ``extra_pairs`` only where they name one.

    Returns pairs per rule (newly proposed by it) and skipped oversized blocks per rule."""
    recs, uid, src = _rel(out, "records"), spec.unique_id, spec.source_column
    is_new = "id IN (SELECT id FROM _delta)" if new_only else "false"
    parts, skipped = [], {}
    for i, rule in enumerate(spec.blocking):
        keys = [f"{k} AS k{j}" for j, k in enumerate(rule.keys)]
        part = ", ".join(f"k{j}" for j in range(len(rule.keys)))
        nn = " AND ".join(f"({k}) IS NOT NULL" for k in rule.keys)
        # block sizes by GROUP BY and a join: far cheaper than a window partition over the records
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _blk AS
            WITH k AS (SELECT {uid} AS id, {src} AS src, {', '.join(keys)}, {is_new} AS new FROM {recs} WHERE {nn})
            SELECT k.*, s.n FROM k JOIN (SELECT {part}, count(*) AS n FROM k GROUP BY ALL) s USING ({part})""")
        limit = rule.max_block_size or spec.max_block_size
        sk = con.execute(f"SELECT count(*), count(DISTINCT ({part})) FROM _blk WHERE n > ? "
                         f"{'AND new' if new_only else ''}", [limit]).fetchall()[0]
        if sk[0]:
            skipped[rule.name] = {"records": sk[0], "blocks": sk[1]}
        on = " AND ".join(f"l.k{j} = r.k{j}" for j in range(len(rule.keys)))
        filt = spec.pair_filter(uid="id", src="src")
        if new_only:
            # a new record on either side (the pair filter orders the two)
            con.execute(f"CREATE OR REPLACE TEMP TABLE _bn AS SELECT * FROM _blk WHERE new AND n <= {limit}")
            pairs = f"""SELECT l.id AS left_id, r.id AS right_id, {i}::SMALLINT AS rule_no
                FROM _bn l JOIN _blk r ON {on} AND {filt} WHERE r.n <= {limit}
                UNION ALL
                SELECT l.id, r.id, {i}::SMALLINT FROM _blk l JOIN _bn r ON {on} AND {filt}
                WHERE l.n <= {limit} AND NOT l.new"""
        else:
            pairs = f"""SELECT l.id AS left_id, r.id AS right_id, {i}::SMALLINT AS rule_no
                FROM _blk l JOIN _blk r ON {on} AND {filt}
                WHERE l.n <= {limit} AND r.n <= {limit}"""
        con.execute(f"CREATE OR REPLACE TEMP TABLE _p{i} AS {pairs}")
        parts.append(f"SELECT * FROM _p{i}")
    con.execute("CREATE OR REPLACE TEMP TABLE _extra (left_id VARCHAR, right_id VARCHAR)")
    if extra_pairs:
        con.executemany("INSERT INTO _extra VALUES (?, ?)", [list(p) for p in extra_pairs])
    names = [r.name for r in spec.blocking] + ["review_decision"]
    into = "TEMP TABLE _new_pairs" if new_only else f"TABLE {_rel(out, 'candidate_pairs')}"
    extra_new = "WHERE e.left_id IN (SELECT id FROM _delta) OR e.right_id IN (SELECT id FROM _delta)" \
        if new_only else ""
    con.execute(f"""CREATE OR REPLACE {into} AS
        SELECT left_id, right_id, ({names!r})[min(rule_no) + 1] AS blocking_rule,
               bit_or(1::BIGINT << rule_no) AS rule_mask, now()::TIMESTAMP AS _built_at FROM (
            {' UNION ALL '.join(parts) or "SELECT NULL::VARCHAR AS left_id, NULL::VARCHAR AS right_id, 0::SMALLINT AS rule_no WHERE false"}
            UNION ALL SELECT e.left_id, e.right_id, {len(spec.blocking)}::SMALLINT FROM _extra e
              JOIN {recs} a ON a.{uid} = e.left_id JOIN {recs} b ON b.{uid} = e.right_id {extra_new})
        GROUP BY left_id, right_id""")
    for t in [f"_p{i}" for i in range(len(spec.blocking))] + ["_blk", "_bn"]:
        con.execute(f"DROP TABLE IF EXISTS {t}")
    by_rule = dict(con.execute(f"SELECT blocking_rule, count(*) FROM {into.split()[-1]} "
                               "GROUP BY 1 ORDER BY 2 DESC").fetchall())
    return by_rule, skipped


def orient(con, spec: MatchSpec, out: str, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Put labelled pairs in the engine's pair order; pairs naming unknown records or a pair the
    link type never compares come back separately with the reason."""
    if pairs is None or not len(pairs):
        return pd.DataFrame(columns=["left_id", "right_id", "label"]), pd.DataFrame(columns=["left_id", "right_id", "reason"])
    recs, uid = _rel(out, "records"), spec.unique_id
    con.register("_pairs_in", pairs[["left_id", "right_id", "label"]])
    fwd, rev = spec.pair_filter("a", "b"), spec.pair_filter("b", "a")
    df = con.execute(f"""SELECT p.left_id AS in_left, p.right_id AS in_right, p.label,
            a.{uid} IS NOT NULL AS left_known, b.{uid} IS NOT NULL AS right_known,
            CASE WHEN {fwd} THEN a.{uid} WHEN {rev} THEN b.{uid} END AS left_id,
            CASE WHEN {fwd} THEN b.{uid} WHEN {rev} THEN a.{uid} END AS right_id
        FROM _pairs_in p LEFT JOIN {recs} a ON a.{uid} = p.left_id LEFT JOIN {recs} b ON b.{uid} = p.right_id""").df()
    con.unregister("_pairs_in")
    reason = np.where(~df.left_known | ~df.right_known, "unknown record id",
                      np.where(df.left_id.isna(), "pair not compared under this link type", ""))
    bad = df[reason != ""].assign(reason=reason[reason != ""])
    ok = df[reason == ""].drop_duplicates(["left_id", "right_id"], keep="last")
    return (ok[["left_id", "right_id", "label"]].reset_index(drop=True),
            bad.rename(columns={"in_left": "left_id_given", "in_right": "right_id_given"})
            [["left_id_given", "right_id_given", "reason"]].reset_index(drop=True))


def rule_case(rules, label: str | None = None) -> str:
    """The name of the first rule that holds for a pair (NULL when none), optionally aliased."""
    sql = ("CASE " + " ".join(f"WHEN {r.sql} THEN '{r.name}'" for r in rules) + " END") if rules else "NULL::VARCHAR"
    return sql + (f" AS {label}" if label else "")


def compare(con, spec: MatchSpec, out: str, pairs: str | None = None, into: str | None = None) -> None:
    """The comparison vector of every candidate pair (of ``pairs``), computed in SQL."""
    recs, uid = _rel(out, "records"), spec.unique_id
    gammas = "".join(f"{c.case_sql()}, " for c in spec.comparisons)
    con.execute(f"""CREATE OR REPLACE TABLE {into or _rel(out, 'comparisons')} AS
        SELECT p.left_id, p.right_id, p.blocking_rule, p.rule_mask, {gammas}
               {''.join(f"greatest(l.{c.tf}, r.{c.tf}) AS {c.tf}, " for c in spec.comparisons if c.tf_column)}
               {rule_case(spec.deterministic, 'deterministic_rule')},
               {rule_case(spec.guards.cannot_link, 'cannot_link_rule')},
               coalesce({rule_case(spec.contexts)}, '') AS context
        FROM {pairs or _rel(out, 'candidate_pairs')} p
        JOIN {recs} l ON l.{uid} = p.left_id JOIN {recs} r ON r.{uid} = p.right_id""")


def _pattern_counts(con, spec: MatchSpec, rel: str, extra: str = "", keys: list[str] | None = None) -> pd.DataFrame:
    g = ", ".join(keys or spec.gammas)
    return con.execute(f"SELECT {g}{extra}, count(*) AS n FROM {rel} GROUP BY ALL ORDER BY ALL").df()


def estimate_u(con, spec: MatchSpec, out: str) -> dict[str, np.ndarray]:
    """u probabilities from random record pairs (almost all non-matches), as Splink does. The
    sample is drawn by a seeded hash of the record id, so a rerun gets the same model."""
    recs = _rel(out, "records")
    if not spec.comparisons:
        return {}
    side = max(50, int(math.sqrt(2 * spec.u_sample_pairs)))
    gammas = ", ".join(c.case_sql() for c in spec.comparisons)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _u AS
        WITH s AS (SELECT * FROM {recs} ORDER BY hash({spec.unique_id}, {spec.seed}) LIMIT {side})
        SELECT {gammas} FROM s l JOIN s r ON {spec.pair_filter()}""")
    counts = _pattern_counts(con, spec, "_u")
    con.execute("DROP TABLE _u")
    u = {}
    for c in spec.comparisons:
        k = len(c.levels) + 1
        g = counts[c.gamma].to_numpy()
        tally = np.bincount(g[g >= 0], weights=counts["n"].to_numpy()[g >= 0], minlength=k)
        u[c.name] = (tally + 0.5) / (tally.sum() + 0.5 * k)       # no level has u = 0
    return u


def starting_m(comp) -> np.ndarray:
    """EM's start for a comparison's m probabilities: the mass on the strong levels (agreement is
    evidence of a match). A comparison the data gives nothing to learn from keeps it, as in Splink."""
    k = len(comp.levels) + 1
    start = np.array([0.05] + [2.0 ** i for i in range(1, k)])
    return start / start.sum()


def _log_likelihoods(comps, G: dict, m: dict, u: dict) -> tuple[np.ndarray, np.ndarray]:
    """Log P(pattern | match) and log P(pattern | non-match) of each pattern row under m and u,
    summed over ``comps`` (a null level, gamma -1, is no evidence). ``G``: comparison -> gammas."""
    n = len(next(iter(G.values()))) if G else 0
    log_m, log_u = np.zeros(n), np.zeros(n)
    for c in comps:
        g = G[c.name]
        ok = g >= 0
        gi = np.where(ok, g, 0)
        log_m += np.where(ok, np.log(m[c.name][gi]), 0.0)
        log_u += np.where(ok, np.log(u[c.name][gi]), 0.0)
    return log_m, log_u


def _posterior(lam: float, log_m: np.ndarray, log_u: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(np.clip(math.log(1 - lam) + log_u - math.log(lam) - log_m, -700, 700)))


def em_session(spec: MatchSpec, patterns: pd.DataFrame, u: dict[str, np.ndarray], train: list,
               tol: float = 1e-6) -> tuple[dict[str, np.ndarray], float, int]:
    """Fellegi-Sunter EM, u held fixed, over the pairs of one blocking rule.

    Only the comparisons in ``train`` take part: the fields a rule blocks on agree in all of its
    pairs, so they carry no information there (Splink trains the same way)."""
    n = patterns["n"].to_numpy(float)
    G = {c.name: patterns[c.gamma].to_numpy() for c in train}
    m = {c.name: starting_m(c) for c in train}
    lam, it = 0.3, 0
    for it in range(1, spec.em_max_iterations + 1):
        p = _posterior(lam, *_log_likelihoods(train, G, m, u))
        w = n * p
        new_lam = min(max(w.sum() / n.sum(), 1e-9), 1 - 1e-9)
        delta = abs(new_lam - lam)
        for c in train:
            g = G[c.name]
            k = len(c.levels) + 1
            tally = np.bincount(g[g >= 0], weights=w[g >= 0], minlength=k)
            new = (tally + 1e-6) / (tally.sum() + 1e-6 * k)
            delta = max(delta, float(np.abs(new - m[c.name]).max()))
            m[c.name] = new
        lam = new_lam
        if delta < tol:
            break
    return m, lam, it


def _involved(comp, keys: tuple[str, ...], spec: MatchSpec) -> bool:
    """Does a blocking rule's key touch the column a comparison compares? Only the comparison's
    own columns count, not every column a level reads: a first-name comparison with a
    swapped-with-surname level still learns from pairs blocked on the surname."""
    tokens = set()
    for c in (*comp.columns, *([comp.tf_column] if comp.tf_column else [])):
        tokens |= set(re.findall(r"[a-z_][a-z0-9_]*", spec.derive.get(c, c))) | {c}
    for k in keys:
        words = set(re.findall(r"[a-z_][a-z0-9_]*", k))
        # a derived key counts through the columns its expression reads
        for w in list(words):
            if w in spec.derive:
                words |= set(re.findall(r"[a-z_][a-z0-9_]*", spec.derive[w]))
        if words & tokens:
            return True
    return False


MIN_SESSION_PAIRS = 50


def train_m(spec: MatchSpec, patterns: pd.DataFrame, u: dict) -> tuple[dict, list[dict], list[str]]:
    """m probabilities: one EM session per training blocking rule (all rules unless the spec names
    them), averaged per comparison weighted by each session's expected matches. Rules whose pairs are mostly look-alike non-matches, such as
    household members sharing an address, teach EM the wrong thing and are left out by the spec.

    A comparison no session could train (one system without duplicates, no candidate pair at all)
    keeps its starting m probabilities (``starting_m``); the notes returned say which and why."""
    sums = {c.name: np.zeros(len(c.levels) + 1) for c in spec.comparisons}
    seen = {c.name: 0 for c in spec.comparisons}
    sessions = []
    rules = [(i, r) for i, r in enumerate(spec.blocking) if not spec.training_rules or r.name in spec.training_rules]
    # sessions of fewer than MIN_SESSION_PAIRS pairs are noisy: they only teach a comparison that no
    # larger session could (a small customer base)
    for min_pairs in (MIN_SESSION_PAIRS, 1):
        for i, rule in rules:
            sub = patterns[(patterns["rule_mask"].to_numpy() >> i) & 1 == 1]
            train = [c for c in spec.comparisons if not _involved(c, rule.keys, spec)
                     and (min_pairs == MIN_SESSION_PAIRS or not seen[c.name])]
            if sub["n"].sum() < min_pairs or not train:
                continue
            sub = sub.groupby(spec.gammas, as_index=False)["n"].sum()
            m, lam, it = em_session(spec, sub, u, train)
            matches = lam * float(sub["n"].sum())          # a session counts by its expected matches
            for c in train:
                sums[c.name] += matches * m[c.name]
                seen[c.name] += matches
            sessions.append({"blocking_rule": rule.name, "pairs": int(sub["n"].sum()), "iterations": it,
                             "match_share": round(lam, 4), "trained": [c.name for c in train]})
        if all(seen.values()):
            break
    untrained = [k for k, v in seen.items() if not v]
    notes = []
    if untrained:
        free = [r.name for _, r in rules if any(not _involved(c, r.keys, spec) for c in spec.comparisons
                                                if c.name in untrained)]
        why = (f"the blocking rules that leave them free ({', '.join(free)}) proposed no pair"
               if free else "no blocking rule leaves them free to train")
        notes.append(f"not enough data to learn comparisons {', '.join(untrained)}: {why}; their m "
                     "probabilities are EM's starting values (agreement counts as evidence of a match)")
    start = {c.name: starting_m(c) for c in spec.comparisons}
    return {k: sums[k] / seen[k] if seen[k] else start[k] for k in sums}, sessions, notes


def comparable_pairs(con, spec: MatchSpec, out: str) -> float:
    """How many record pairs the link type allows: every pair a record could be part of."""
    recs = _rel(out, "records")
    if spec.link_type == "link_only":
        sizes = [r[0] for r in con.execute(f"SELECT count(*) FROM {recs} GROUP BY {spec.source_column}").fetchall()]
        return float(sum(a * b for i, a in enumerate(sizes) for b in sizes[i + 1:]))
    n = con.execute(f"SELECT count(*) FROM {recs}").fetchall()[0][0]
    return n * (n - 1) / 2


@dataclass
class PriorFit:
    """The match rate lambda of all comparable pairs, estimated by EM."""
    probability: float
    expected_matches: float
    iterations: int
    converged: bool
    method: str = "em"


def estimate_prior(spec: MatchSpec, patterns: pd.DataFrame, m: dict, u: dict, total_pairs: float,
                   max_iterations: int = 500, tol: float = 1e-7) -> PriorFit:
    """EM for lambda, the probability that two comparable records match, with m and u as trained.

    The pairs blocking did not propose are taken as non-matches (blocking's assumption), so over
    all ``total_pairs`` the E step gives each candidate pattern its posterior and every other pair
    zero, and the M step sets lambda to the expected matches over all pairs:
    ``lambda = sum_k n_k p_k(lambda) / total_pairs``. The fixed point is unique (the right side
    over lambda falls as lambda grows) and EM climbs to it from any start. No deterministic rule
    or assumed recall is involved (the Fellegi-Sunter literature and Splink's EM estimate the
    match rate the same way)."""
    if spec.prior_match_probability:
        p = float(spec.prior_match_probability)
        return PriorFit(p, p * total_pairs, 0, True, "fixed by the spec")
    n = patterns["n"].to_numpy(float)
    if not len(n) or total_pairs < 1:
        return PriorFit(min(1.0 / max(total_pairs, 2.0), 0.5), 0.0, 0, True, "no candidate pair")
    log_m, log_u = _log_likelihoods(spec.comparisons, {c.name: patterns[c.gamma].to_numpy() for c in spec.comparisons},
                                    m, u)
    bf = np.exp(np.clip(log_m - log_u, -700, 700))
    lam, it, converged = min(n.sum() / total_pairs, 0.5), 0, False
    for it in range(1, max_iterations + 1):
        odds = lam / (1 - lam)
        new = float((n * (odds * bf / (1 + odds * bf))).sum() / total_pairs)
        new = min(max(new, 1e-12), 0.5)
        if abs(new - lam) <= tol * max(lam, 1e-12):
            lam, converged = new, True
            break
        lam = new
    return PriorFit(lam, lam * total_pairs, it, converged)


@dataclass
class ContextFit:
    """A context's own model: m and u of the comparisons it scores, and its match rate, by EM."""
    m: dict
    u: dict
    probability: float
    pairs: int
    iterations: int


# pseudo-pairs that pull a context's m and u towards the main model's: a context holding few
# non-matches (a list without households) learns little about them
CONTEXT_PSEUDO_PAIRS = 5.0


def fit_contexts(spec: MatchSpec, patterns: pd.DataFrame, m: dict, u: dict, tol: float = 1e-6) -> dict:
    """EM over the candidate pairs of each context, m, u and the match rate all free, started
    from the main model (a pair in the context is more likely a match than a random pair: start
    at one half)."""
    fits = {}
    for cx in spec.contexts:
        sub = patterns[patterns["context"] == cx.name]
        if not len(sub):
            continue
        comps = [spec.comparison(n) for n in cx.comparisons]
        n = sub["n"].to_numpy(float)
        G = {c.name: sub[c.gamma].to_numpy() for c in comps}
        mm = {c.name: m[c.name].copy() for c in comps}
        uu = {c.name: u[c.name].copy() for c in comps}
        lam, it = 0.5, 0
        for it in range(1, spec.em_max_iterations + 1):
            p = _posterior(lam, *_log_likelihoods(comps, G, mm, uu))
            new_lam = min(max(float((n * p).sum() / n.sum()), 1e-6), 1 - 1e-6)
            delta = abs(new_lam - lam)
            for c in comps:
                g, k = G[c.name], len(c.levels) + 1
                for par, w, base in ((mm, n * p, m), (uu, n * (1 - p), u)):
                    tally = np.bincount(g[g >= 0], weights=w[g >= 0], minlength=k) + CONTEXT_PSEUDO_PAIRS * base[c.name]
                    new = tally / tally.sum()
                    delta = max(delta, float(np.abs(new - par[c.name]).max()))
                    par[c.name] = new
            lam = new_lam
            if delta < tol:
                break
        fits[cx.name] = ContextFit(mm, uu, lam, int(n.sum()), it)
    return fits


def _weights_frame(spec: MatchSpec, m: dict, u: dict, contexts: dict | None = None) -> pd.DataFrame:
    """m, u and weight of every level: the main model's rows (``context`` '') and each context
    model's rows for the comparisons it scores (with the context's own match rate)."""
    rows = []
    models = [("", None, m, u, [c.name for c in spec.comparisons])]
    for cx in spec.contexts:
        fit = (contexts or {}).get(cx.name)
        if fit is not None:
            models.append((cx.name, fit.probability, fit.m, fit.u, list(cx.comparisons)))
    for context, lam, mm, uu, names in models:
        for c in spec.comparisons:
            if c.name not in names:
                continue
            labels = c.labels()
            for g in range(len(c.levels), -1, -1):
                rows.append({"comparison": c.name, "gamma": g, "level": labels[g],
                             "m_probability": float(mm[c.name][g]), "u_probability": float(uu[c.name][g]),
                             "weight_bits": float(np.log2(mm[c.name][g] / uu[c.name][g])),
                             "context": context, "context_match_probability": lam})
            rows.append({"comparison": c.name, "gamma": -1, "level": "null", "m_probability": None,
                         "u_probability": None, "weight_bits": 0.0, "context": context,
                         "context_match_probability": lam})
    return pd.DataFrame(rows, columns=["comparison", "gamma", "level", "m_probability", "u_probability",
                                       "weight_bits", "context", "context_match_probability"])


def _u_top(weights: pd.DataFrame, comp) -> float:
    w = weights[(weights.comparison == comp.name) & (weights.gamma == len(comp.levels)) & (weights.context == "")]
    return float(w["u_probability"].iloc[0])


def _score_patterns(spec: MatchSpec, patterns: pd.DataFrame, weights: pd.DataFrame, lam: float) -> pd.DataFrame:
    """Weights and probability of each pattern: the main model's, or for a pattern in a context
    its context model's (the fields the context shares weigh nothing there)."""
    out = patterns.copy()
    ctx = out["context"].to_numpy() if "context" in out else np.full(len(out), "")
    main = weights[weights.context == ""]
    total = np.full(len(out), math.log2(lam / (1 - lam)))
    for c in spec.comparisons:
        lut = main[main.comparison == c.name].set_index("gamma")["weight_bits"]
        out[f"w_{c.name}"] = out[c.gamma].map(lut).astype(float)
    for cx in spec.contexts:
        rows = weights[weights.context == cx.name]
        here = ctx == cx.name
        if not len(rows) or not here.any():
            continue
        lam_c = float(rows["context_match_probability"].iloc[0])
        total[here] = math.log2(lam_c / (1 - lam_c))
        for c in spec.comparisons:
            lut = rows[rows.comparison == c.name].set_index("gamma")["weight_bits"]
            col = out[f"w_{c.name}"].to_numpy(float).copy()
            col[here] = out.loc[here, c.gamma].map(lut).astype(float).fillna(0.0).to_numpy() if len(lut) else 0.0
            out[f"w_{c.name}"] = col
    for c in spec.comparisons:
        total += out[f"w_{c.name}"].to_numpy()
    out["total_weight"] = total
    out["fs_probability"] = 1.0 / (1.0 + np.power(2.0, -np.clip(total, -1000, 1000)))
    out["match_probability"] = out["fs_probability"]
    return out


def supervised(spec: MatchSpec, patterns: pd.DataFrame, labelled: pd.DataFrame) -> tuple[np.ndarray, dict] | None:
    """With enough clerical labels of both classes, train recordlinkage's logistic-regression
    classifier on the one-hot comparison levels and score every pattern with it."""
    import recordlinkage as rl

    counts = labelled["label"].value_counts().to_dict()
    info = {"labels_match": int(counts.get(1, 0)), "labels_no_match": int(counts.get(0, 0))}
    if min(info.values()) < spec.min_labels_per_class:
        info["used"] = False
        return None, info
    cats = {c.gamma: list(range(-1, len(c.levels) + 1)) for c in spec.comparisons}

    def onehot(df: pd.DataFrame) -> pd.DataFrame:
        cols = {}
        for g, values in cats.items():
            for v in values:
                cols[f"{g}={v}"] = (df[g].to_numpy() == v).astype(float)
        return pd.DataFrame(cols, index=df.index)

    X = onehot(labelled)
    X.index = pd.MultiIndex.from_arrays([labelled["left_id"], labelled["right_id"]])
    y = X.index[labelled["label"].to_numpy() == 1]
    clf = rl.LogisticRegressionClassifier()
    clf.fit(X, y)
    proba = clf.kernel.predict_proba(onehot(patterns).to_numpy())[:, list(clf.kernel.classes_).index(1)]
    train_pred = clf.kernel.predict(X.to_numpy())
    info.update(used=True, training_accuracy=round(float((train_pred == labelled["label"].to_numpy()).mean()), 4))
    return proba, info


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
    masked = _pattern_counts(con, spec, _rel(out, "comparisons"), ", rule_mask", spec.pattern_keys)
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
    weights = _weights_frame(spec, m, u, rep.contexts)
    pats = _score_patterns(spec, patterns, weights, lam)
    rep.patterns, rep.prior_match_probability = len(pats), lam
    rep.seconds["em"] = round(time.perf_counter() - t, 2)
    _decisions_table(con, decisions)
    if decisions is not None and len(decisions):
        g = ", ".join(f"c.{x}" for x in spec.gammas)
        labelled = con.execute(f"SELECT d.left_id, d.right_id, d.label, {g} FROM _decisions d "
                               f"JOIN {_rel(out, 'comparisons')} c USING (left_id, right_id)").df()
        proba, rep.labels = supervised(spec, pats, labelled)
        if proba is not None:
            pats["match_probability"] = proba
            rep.model = "recordlinkage_logistic_regression"
    con.register("_pats_df", pats)
    con.execute(f"CREATE OR REPLACE TABLE {_rel(out, 'patterns')} AS SELECT * FROM _pats_df")
    con.unregister("_pats_df")
    con.register("_w_df", weights)
    con.execute(f"CREATE OR REPLACE TABLE {_rel(out, 'match_weights')} AS SELECT *, ? AS prior_match_probability, "
                f"? AS model, ? AS spec_hash, ? AS decisions_hash, ? AS source_generation, "
                f"now()::TIMESTAMP AS trained_at FROM _w_df",
                [lam, rep.model, spec_fingerprint(spec), decisions_fingerprint(decisions), generation])
    con.unregister("_w_df")
    con.execute(f"CREATE OR REPLACE TABLE {_rel(out, 'pair_scores')} AS "
                f"{_pair_scores_sql(spec, out, _rel(out, 'comparisons'), weights, rep.model)}")
    con.execute(f"DROP TABLE {_rel(out, 'comparisons')}")
    rep.decisions = dict(con.execute(f"SELECT decision, count(*) FROM {_rel(out, 'pair_scores')} "
                                     "GROUP BY 1 ORDER BY 1").fetchall())
    return rep


def _pair_scores_sql(spec: MatchSpec, out: str, comparisons: str, weights: pd.DataFrame, model: str) -> str:
    """Per-field weights, total weight, probability and decision of the compared pairs, from the
    scored patterns and the reviewers' ``_decisions``."""
    # a common value agreeing (Mueller, Berlin) is weaker evidence than a rare one: the strongest
    # level's u is replaced by the frequency of the value itself (Splink's term frequencies)
    adj = {c.name: (f"CASE WHEN c.{c.gamma} = {len(c.levels)} AND c.context = '' THEN log2({_u_top(weights, c)} / "
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
            FROM {comparisons} c JOIN {_rel(out, 'patterns')} p USING ({using})
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
    uid, recs = spec.unique_id, _rel(out, "records")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _delta AS SELECT s.{uid} AS id FROM ({source_sql}) s
        LEFT JOIN {recs} r ON r.{uid} = s.{uid}
        WHERE r.{uid} IS NULL OR s._loaded_at IS DISTINCT FROM r._loaded_at
           OR s._source_file IS DISTINCT FROM r._source_file OR s._source_line IS DISTINCT FROM r._source_line""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _gone AS SELECT r.{uid} AS id FROM {recs} r
        ANTI JOIN ({source_sql}) s ON s.{uid} = r.{uid}""")
    return con.execute(f"SELECT (SELECT count(*) FROM _delta), (SELECT count(*) FROM _gone), "
                       f"(SELECT count(*) FROM ({source_sql}))").fetchall()[0]


def _why_full(con, spec: MatchSpec, out: str, decisions: pd.DataFrame | None, generation: str) -> str | None:
    if not all(table_exists(con, _rel(out, t)) for t in ("records", "candidate_pairs", "patterns",
                                                          "match_weights", "pair_scores")):
        return "no earlier run"
    if spec.compare_backend != "duckdb":
        return "the recordlinkage comparison backend runs in full"
    cols = set(columns(con, _rel(out, 'match_weights')))
    if not {"spec_hash", "decisions_hash", "model", "trained_at", "source_generation", "context"} <= cols:
        return "the model does not say what it was trained under"
    cols = set(columns(con, _rel(out, 'pair_scores')))
    if "_built_at" not in cols:
        return "the pairs do not say when they were built"
    cols = set(columns(con, _rel(out, 'records')))
    if not {"_loaded_at", "_source_file", "_source_line"} <= cols:
        return "the records carry no lineage to tell new ones by"
    held = con.execute(f"SELECT any_value(spec_hash), any_value(decisions_hash), any_value(source_generation) "
                       f"FROM {_rel(out, 'match_weights')}").fetchall()[0]
    if held[0] != spec_fingerprint(spec):
        return "the match spec changed"
    if held[1] != decisions_fingerprint(decisions):
        return "reviewer decisions changed"
    if held[2] != generation:
        return "the input was rebuilt in full since the last full match"
    old = con.execute(f"SELECT max(trained_at) < now()::TIMESTAMP - INTERVAL {MAX_MODEL_AGE_DAYS} DAY "
                      f"FROM {_rel(out, 'match_weights')}").fetchall()[0][0]
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
    w = con.execute(f"SELECT * FROM {_rel(out, 'match_weights')}").df()
    weights, lam, model = w.drop(columns=["prior_match_probability", "model", "spec_hash", "decisions_hash",
                                          "source_generation", "trained_at"]), \
        float(w.prior_match_probability.iloc[0]), str(w.model.iloc[0])
    rep = EngineReport(mode="incremental", model=model, prior_match_probability=lam,
                       reason=f"{delta} new or changed and {gone} removed of {total} records")
    con.execute("BEGIN TRANSACTION")
    try:
        reason = _match_delta(con, spec, source_sql, out, decisions, weights, lam, model, rep, t0)
    except Exception:
        con.execute("ROLLBACK")
        raise
    if reason:                                  # nothing was changed
        con.execute("ROLLBACK")
        return None, reason
    con.execute("COMMIT")
    for t in ("_new_pairs", "_new_comparisons", "_stale", "_delta", "_gone"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    rep.records, rep.records_matched, rep.records_removed = total, delta, gone
    return rep, rep.reason


def _match_delta(con, spec: MatchSpec, source_sql: str, out: str, decisions: pd.DataFrame, weights: pd.DataFrame,
                 lam: float, model: str, rep: EngineReport, t0: float) -> str | None:
    """The body of ``run_incremental``, inside its transaction; returns why a full run is needed
    instead (the caller rolls back) or None."""
    uid, recs = spec.unique_id, _rel(out, "records")
    con.execute("CREATE OR REPLACE TEMP TABLE _stale AS SELECT id FROM _delta UNION SELECT id FROM _gone")
    for t in ("pair_scores", "candidate_pairs"):
        con.execute(f"DELETE FROM {_rel(out, t)} WHERE left_id IN (SELECT id FROM _stale) "
                    "OR right_id IN (SELECT id FROM _stale)")
    con.execute(f"DELETE FROM {recs} WHERE {uid} IN (SELECT id FROM _stale)")
    _prepared(con, spec, f"SELECT s.* FROM ({source_sql}) s SEMI JOIN _delta d ON d.id = s.{uid}")
    tf = ", ".join(sorted({c.tf_column for c in spec.comparisons if c.tf_column}))
    population = f"(SELECT {tf} FROM {recs} UNION ALL SELECT {tf} FROM _prepared)" if tf else ""
    con.execute(f"INSERT INTO {recs} BY NAME {_with_tf(spec, population)}")
    con.execute("DROP TABLE _prepared")
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
    unseen = con.execute(f"SELECT {gcols}, count(*) AS n FROM _new_comparisons ANTI JOIN {_rel(out, 'patterns')} "
                         f"USING ({gcols}) GROUP BY ALL").df()
    if len(unseen):
        if model != "fellegi_sunter_em":
            return f"{len(unseen)} comparison vectors the supervised model never scored"
        pats = _score_patterns(spec, unseen, weights, lam)
        con.register("_pats_df", pats)
        con.execute(f"INSERT INTO {_rel(out, 'patterns')} BY NAME SELECT * FROM _pats_df")
        con.unregister("_pats_df")
    con.execute(f"INSERT INTO {_rel(out, 'pair_scores')} BY NAME "
                f"{_pair_scores_sql(spec, out, '_new_comparisons', weights, model)}")
    con.execute(f"INSERT INTO {_rel(out, 'candidate_pairs')} BY NAME SELECT * FROM _new_pairs")
    rep.candidate_pairs = con.execute(f"SELECT count(*) FROM {_rel(out, 'candidate_pairs')}").fetchall()[0][0]
    rep.patterns = con.execute(f"SELECT count(*) FROM {_rel(out, 'patterns')}").fetchall()[0][0]
    rep.decisions = dict(con.execute(f"SELECT decision, count(*) FROM {_rel(out, 'pair_scores')} "
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
        from crm_platform.identity import rl_compare
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
