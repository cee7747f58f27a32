"""Fellegi-Sunter weights: u from random pairs, m by EM over the distinct comparison patterns, the
match prior, per-context fits and the supervised classifier when clerical labels exist."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
import numpy as np
import pandas as pd
from crm_platform.identity.spec import MatchSpec
from crm_platform.identity.blocking import rel
from crm_platform.core.dialect import stable_hash


def pattern_counts(con, spec: MatchSpec, rel: str, extra: str = "", keys: list[str] | None = None) -> pd.DataFrame:
    g = ", ".join(keys or spec.gammas)
    return con.execute(f"SELECT {g}{extra}, count(*) AS n FROM {rel} GROUP BY ALL ORDER BY ALL").df()


def estimate_u(con, spec: MatchSpec, out: str) -> dict[str, np.ndarray]:
    """u probabilities from random record pairs (almost all non-matches), as Splink does. The
    sample is drawn by a seeded hash of the record id, so a rerun gets the same model."""
    recs = rel(out, "records")
    if not spec.comparisons:
        return {}
    side = max(50, int(math.sqrt(2 * spec.u_sample_pairs)))
    gammas = ", ".join(c.case_sql() for c in spec.comparisons)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _u AS
        WITH s AS (SELECT * FROM {recs} ORDER BY {stable_hash(f"{spec.unique_id} || ':{spec.seed}'")}, {spec.unique_id}
                   LIMIT {side})
        SELECT {gammas} FROM s l JOIN s r ON {spec.pair_filter()}""")
    counts = pattern_counts(con, spec, "_u")
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
    recs = rel(out, "records")
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


def weights_frame(spec: MatchSpec, m: dict, u: dict, contexts: dict | None = None) -> pd.DataFrame:
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


def u_top(weights: pd.DataFrame, comp) -> float:
    w = weights[(weights.comparison == comp.name) & (weights.gamma == len(comp.levels)) & (weights.context == "")]
    return float(w["u_probability"].iloc[0])


def score_patterns(spec: MatchSpec, patterns: pd.DataFrame, weights: pd.DataFrame, lam: float) -> pd.DataFrame:
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
