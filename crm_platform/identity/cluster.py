"""Clustering of accepted links into persons, with over-merge guards.

Links are applied strongest first (review must-links, then deterministic rules, then by match
probability) with a union-find. A union that would

* grow a cluster beyond ``max_cluster_size``,
* put two different values of a conflicting identifier (a national id, a shop customer number
  carried into another system) into one cluster,
* put two different values of a field that needs direct evidence (a birth date) into one cluster
  other than through a link between two records that hold them (the model judged those two
  together: a typo); joined through a record without one, the values stay apart, or
* join two records a cannot-link rule or a reviewer keeps apart, or
* join, through other records, two records the model scored as clearly two people,

is refused, and the refusal is recorded as the link's outcome, so every decision can be explained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ACCEPTED = "accepted"


def strongest_first(t: str = "") -> str:
    """The SQL order of links the clustering applies them in (module doc), of the columns
    ``decision`` and ``match_probability`` of table alias ``t``."""
    p = f"{t}." if t else ""
    return (f"CASE {p}decision WHEN 'must_link' THEN 0 WHEN 'deterministic' THEN 1 ELSE 2 END, "
            f"{p}match_probability DESC")
# below this many links the plain union-find is quick enough
FAST_PATH_LINKS = 5_000


@dataclass
class ClusterResult:
    labels: np.ndarray           # cluster label per record (index of its root record)
    outcomes: list[str]          # per link, in input order
    refused: dict[str, int]


def cluster(n: int, left: np.ndarray, right: np.ndarray, forced: np.ndarray,
            strong: dict[str, np.ndarray], cannot: list[tuple[int, int]],
            max_size: int, direct: dict[str, np.ndarray] | None = None,
            unlike: tuple[np.ndarray, np.ndarray] | None = None) -> ClusterResult:
    """Union ``n`` records along links given in priority order.

    ``left``/``right`` are record indices; ``forced`` marks reviewer must-links, which are applied
    even against a guard (the blocking guard checks then show the conflict). ``strong`` maps an
    identifier name to one value per record (None when unknown); ``direct`` the same for fields
    whose different values join only through a link between two records holding them.
    ``unlike`` holds pairs scored clearly apart: no union may put them into one cluster (only the
    pairs whose records links connect at all are kept, so millions of scored pairs cost little).

    Fast path: links fall into connected components that never interact. A component whose whole
    record set breaks no guard (size, conflicting identifiers, a cannot-link pair inside) accepts
    every link in any order, so only the other components go through the ordered union-find; the
    outcomes are the same as running it on everything."""
    left, right, forced = np.asarray(left, np.int64), np.asarray(right, np.int64), np.asarray(forced, bool)
    direct = direct or {}
    _, comp = connected_components(coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n)), directed=False)
    unlike_pairs: list[tuple[int, int]] = []
    if unlike is not None and len(unlike[0]):
        ua, ub = np.asarray(unlike[0], np.int64), np.asarray(unlike[1], np.int64)
        near = comp[ua] == comp[ub]
        unlike_pairs = list(zip(ua[near].tolist(), ub[near].tolist()))
    if len(left) < FAST_PATH_LINKS:
        return _union_find(n, left, right, forced, strong, cannot, max_size, direct, unlike_pairs)
    sizes = np.bincount(comp, minlength=n)
    dirty = sizes > max_size
    for values in [*strong.values(), *direct.values()]:
        v = np.asarray(values, dtype=object)
        have = np.flatnonzero(np.array([x is not None for x in v], dtype=bool))
        if len(have):
            dup = (pd.DataFrame({"c": comp[have], "v": v[have].astype(str)}).groupby("c")["v"].nunique())
            dirty[dup.index[dup.to_numpy() > 1].to_numpy()] = True
    for pairs in (cannot, unlike_pairs):
        if pairs:
            ca, cb = np.array(pairs, dtype=np.int64).T
            same = comp[ca] == comp[cb]
            dirty[comp[ca[same]]] = True
    slow = dirty[comp[left]]
    res = _union_find(n, left[slow], right[slow], forced[slow], strong, cannot, max_size, direct, unlike_pairs)
    outcomes = np.full(len(left), ACCEPTED, dtype=object)
    outcomes[slow] = res.outcomes
    # clean components: labelled by their first record; the rest by the union-find's roots
    first = np.full(n, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n))
    in_slow = np.zeros(n, bool)
    in_slow[left[slow]] = in_slow[right[slow]] = True
    labels = np.where(dirty[comp] & in_slow, res.labels, first[comp])
    return ClusterResult(labels, outcomes.tolist(), res.refused)


def _union_find(n: int, left: np.ndarray, right: np.ndarray, forced: np.ndarray,
                strong: dict[str, np.ndarray], cannot: list[tuple[int, int]],
                max_size: int, direct: dict[str, np.ndarray] | None = None,
                unlike: list[tuple[int, int]] = ()) -> ClusterResult:
    parent = list(range(n))
    size = [1] * n
    members: dict[int, list[int]] = {}
    # per identifier: root -> the value its cluster holds (records without one are absent)
    ids: dict[str, dict[int, object]] = {}
    for k, values in strong.items():
        values = np.asarray(values, dtype=object)
        have = np.flatnonzero(np.array([v is not None for v in values], dtype=bool))
        ids[k] = dict(zip(have.tolist(), values[have].tolist()))
    # per direct-evidence field: the record's value, and root -> the values its cluster holds
    own = {k: np.asarray(v, dtype=object) for k, v in (direct or {}).items()}
    sets: dict[str, dict[int, set]] = {k: {i: {x} for i, x in enumerate(v.tolist()) if x is not None}
                                       for k, v in own.items()}
    apart: dict[int, set[int]] = {}
    for a, b in cannot:
        apart.setdefault(a, set()).add(b)
        apart.setdefault(b, set()).add(a)
    guarded = set(apart)            # roots of clusters holding a record with cannot-links
    distinct: dict[int, set[int]] = {}
    for a, b in unlike:
        distinct.setdefault(a, set()).add(b)
        distinct.setdefault(b, set()).add(a)
    judged = set(distinct)          # roots of clusters holding a record scored clearly apart from another

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def mem(root: int) -> list[int]:
        return members.get(root, [root])

    outcomes: list[str] = []
    refused: dict[str, int] = {}
    for a, b, force in zip(left.tolist(), right.tolist(), forced.tolist()):
        ra, rb = find(a), find(b)
        if ra == rb:
            outcomes.append(ACCEPTED)
            continue
        reason = None
        if not force:
            if size[ra] + size[rb] > max_size:
                reason = "max_cluster_size"
            else:
                for k, held in ids.items():
                    va, vb = held.get(ra), held.get(rb)
                    if va is not None and vb is not None and va != vb:
                        reason = "one_record_per_source" if k.startswith("record_of_") else f"conflicting_{k}"
                        break
            if reason is None:
                for k, held in sets.items():
                    sa, sb = held.get(ra), held.get(rb)
                    # two values meet only where the link's own two records hold them
                    if sa and sb and not (sa & sb) and (own[k][a] is None or own[k][b] is None):
                        reason = f"conflicting_{k}"
                        break
            if reason is None and ra in guarded and rb in guarded:
                small, other = (ra, rb) if size[ra] <= size[rb] else (rb, ra)
                if any(find(x) == other for m in mem(small) for x in apart.get(m, ())):
                    reason = "cannot_link"
            if reason is None and ra in judged and rb in judged and (a not in distinct or b not in distinct[a]):
                small, other = (ra, rb) if size[ra] <= size[rb] else (rb, ra)
                if any(find(x) == other for m in mem(small) for x in distinct.get(m, ())):
                    reason = "clear_non_match_inside"
        if reason:
            outcomes.append(f"refused: {reason}")
            refused[reason] = refused.get(reason, 0) + 1
            continue
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        size[ra] += size[rb]
        members[ra] = mem(ra) + mem(rb)
        members.pop(rb, None)
        if rb in guarded:
            guarded.add(ra)
        if rb in judged:
            judged.add(ra)
        for held in sets.values():
            sb = held.pop(rb, None)
            if sb:
                held[ra] = held.get(ra, set()) | sb
        for held in ids.values():
            vb = held.pop(rb, None)
            if vb is not None and held.get(ra) is None:
                held[ra] = vb          # a forced merge keeps the first value; the guard check reports it
        outcomes.append(ACCEPTED)
    labels = np.array([find(i) for i in range(n)], dtype=np.int64)
    return ClusterResult(labels, outcomes, refused)
