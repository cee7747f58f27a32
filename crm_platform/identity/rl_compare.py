"""The comparison step through recordlinkage's Compare API (``compare_backend: recordlinkage``).

Each comparison of the match spec becomes a custom ``recordlinkage`` comparison feature whose
levels are the spec's own SQL conditions, evaluated on the record values recordlinkage pairs up,
so both backends give the same comparison vectors (a test holds them equal). Candidate pairs come
from the same SQL blocking and are compared in chunks, so memory stays bounded. The DuckDB
backend is the default: it compares inside the warehouse without moving records into pandas.
"""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pandas as pd
import recordlinkage as rl
from recordlinkage.base import BaseCompareFeature

from crm_platform.identity.spec import MatchSpec
from crm_platform.identity import compare as sql

_SIDE_COLUMN = re.compile(r"\b[lr]\.([a-z_][a-z0-9_]*)")


def referenced_columns(sql: str) -> list[str]:
    return sorted(set(_SIDE_COLUMN.findall(sql)))


class SpecFeature(BaseCompareFeature):
    """One spec comparison (or rule) as a recordlinkage feature: a SQL CASE over ``l`` and ``r``."""

    def __init__(self, expression: str, columns: list[str], label: str):
        super().__init__(columns, columns, label=label)
        self.expression, self.columns = expression, columns

    def _compute_vectorized(self, *args):
        n = len(self.columns)
        frame = pd.DataFrame({f"l_{c}": a.to_numpy() for c, a in zip(self.columns, args[:n])}
                             | {f"r_{c}": a.to_numpy() for c, a in zip(self.columns, args[n:])})
        frame["_row"] = np.arange(len(frame))
        left = ", ".join(f"{c} := l_{c}" for c in self.columns)
        right = ", ".join(f"{c} := r_{c}" for c in self.columns)
        con = duckdb.connect()
        try:
            con.register("pairs", frame)
            out = con.execute(f"SELECT {self.expression} AS v FROM (SELECT _row, struct_pack({left}) AS l, "
                              f"struct_pack({right}) AS r FROM pairs) ORDER BY _row").df()["v"]
        finally:
            con.close()
        return pd.Series(out.to_numpy(), index=args[0].index)


def _features(spec: MatchSpec) -> list[SpecFeature]:
    feats = [SpecFeature(c.case_sql(alias=False), referenced_columns(c.case_sql()), c.gamma)
             for c in spec.comparisons]
    for label, rules in (("deterministic_rule", spec.deterministic), ("cannot_link_rule", spec.guards.cannot_link),
                         ("context", spec.contexts)):
        if rules:
            case = sql.rule_case(rules)
            feats.append(SpecFeature(case, referenced_columns(case), label))
    return feats


def compare(con, spec: MatchSpec, out: str, chunk_pairs: int = 250_000) -> None:
    """Write ``out.comparisons`` like the SQL backend, computed by ``recordlinkage.Compare``."""
    feats = _features(spec)
    cols = sorted({c for f in feats for c in f.columns})
    tfs = [c.tf for c in spec.comparisons if c.tf_column]
    records = con.execute(f"SELECT {spec.unique_id}, {', '.join(cols + tfs)} FROM {out}.records").df() \
        .set_index(spec.unique_id)
    comparer = rl.Compare(features=feats)
    con.execute(f"DROP TABLE IF EXISTS {out}.comparisons")
    candidates = con.sql(f"SELECT left_id, right_id, blocking_rule, rule_mask FROM {out}.candidate_pairs "
                         "ORDER BY left_id, right_id").to_arrow_table()
    first = True
    for batch in candidates.to_batches(max_chunksize=chunk_pairs):
        pairs = batch.to_pandas()
        index = pd.MultiIndex.from_arrays([pairs.left_id, pairs.right_id])
        vectors = comparer.compute(index, records).reset_index(drop=True)
        chunk = pd.concat([pairs, vectors], axis=1)
        for c in spec.comparisons:
            chunk[c.gamma] = chunk[c.gamma].astype("int8")
        for tf in tfs:
            chunk[tf] = np.fmax(records[tf].reindex(pairs.left_id).to_numpy(),   # like SQL greatest()
                                   records[tf].reindex(pairs.right_id).to_numpy())
        for label in ("deterministic_rule", "cannot_link_rule"):
            if label not in chunk:
                chunk[label] = None
            chunk[label] = chunk[label].astype(object).where(chunk[label].notna(), None)
        chunk["context"] = chunk["context"].fillna("").astype(str) if "context" in chunk else ""
        order = ["left_id", "right_id", "blocking_rule", "rule_mask", *spec.gammas, *tfs,
                 "deterministic_rule", "cannot_link_rule", "context"]
        con.register("_chunk", chunk[order])
        if first:
            con.execute(f"CREATE TABLE {out}.comparisons AS SELECT * FROM _chunk")
            first = False
        else:
            con.execute(f"INSERT INTO {out}.comparisons SELECT * FROM _chunk")
        con.unregister("_chunk")
    if first:      # no candidate pairs at all: the same empty table the SQL backend writes
        sql.compare(con, spec, out)
