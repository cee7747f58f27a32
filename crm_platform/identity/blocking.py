"""Blocking: the records prepared for matching (the spec's derived columns, term frequencies) and
the candidate pairs the blocking rules propose (see crm_platform.identity.engine)."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
from crm_platform.identity.spec import MatchSpec


def rel(out: str, name: str) -> str:
    return f"{out}.{name}"


def prepared(con: duckdb.DuckDBPyConnection, spec: MatchSpec, source_sql: str) -> None:
    """The temporary ``prepared``: the input rows with the spec's derived columns."""
    for name, path in spec.lookups.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE lookup_{name} AS "
                    f"SELECT * FROM read_csv(?, header=true, all_varchar=true)", [str(path)])
    derived = "".join(f", {expr} AS {name}" for name, expr in spec.derive.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE prepared AS SELECT *{derived} FROM ({source_sql}) s")


def with_tf(spec: MatchSpec, population: str) -> str:
    """``prepared`` with the share of ``population`` records holding each value, for
    term-frequency adjusted weights (joins of small value tables are far cheaper than window
    partitions over the wide records)."""
    tf = [c for c in spec.comparisons if c.tf_column]
    cols = "".join(f", t{i}.tf AS {c.tf}" for i, c in enumerate(tf))
    joins = " ".join(
        f"LEFT JOIN (SELECT {c.tf_column} AS v, count(*) / sum(count(*)) OVER () AS tf FROM {population} "
        f"WHERE {c.tf_column} IS NOT NULL GROUP BY 1) t{i} ON t{i}.v = p.{c.tf_column}" for i, c in enumerate(tf))
    return f"SELECT p.*{cols} FROM prepared p {joins}"


def prepare(con: duckdb.DuckDBPyConnection, spec: MatchSpec, source_sql: str, out: str) -> int:
    """Create ``out.records``: the input rows with the spec's derived columns."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {out}")
    prepared(con, spec, source_sql)
    con.execute(f"CREATE OR REPLACE TABLE {rel(out, 'records')} AS {with_tf(spec, 'prepared')} "
                f"ORDER BY p.{spec.unique_id}")
    con.execute("DROP TABLE prepared")
    dup = con.execute(f"SELECT count(*) - count(DISTINCT {spec.unique_id}), count(*) FILTER "
                      f"(WHERE {spec.unique_id} IS NULL) FROM {rel(out, 'records')}").fetchall()[0]
    if dup[0] or dup[1]:
        raise ValueError(f"{spec.name}: unique id '{spec.unique_id}' has {dup[0]} repeated and "
                         f"{dup[1]} missing values; the engine needs one id per record")
    return con.execute(f"SELECT count(*) FROM {rel(out, 'records')}").fetchall()[0][0]


def block(con, spec: MatchSpec, out: str, extra_pairs: list[tuple[str, str]] | None = None,
          new_only: bool = False) -> tuple[dict, dict]:
    """Candidate pairs from the blocking rules, each proposed once, never a cross product, into
    ``out.candidate_pairs``. With ``new_only``: into the temporary ``_new_pairs``, only the pairs
    with a record of ``_delta`` (block sizes still counted over all records), and reviewed
    ``extra_pairs`` only where they name one.

    Returns pairs per rule (newly proposed by it) and skipped oversized blocks per rule."""
    recs, uid, src = rel(out, "records"), spec.unique_id, spec.source_column
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
    # a CASE, not a list index: lists count from 1 in DuckDB and from 0 in Spark
    rule_name = "CASE min(rule_no) " + " ".join(f"WHEN {i} THEN '{n}'" for i, n in enumerate(names)) + " END"
    into = "TEMP TABLE _new_pairs" if new_only else f"TABLE {rel(out, 'candidate_pairs')}"
    extra_new = "WHERE e.left_id IN (SELECT id FROM _delta) OR e.right_id IN (SELECT id FROM _delta)" \
        if new_only else ""
    con.execute(f"""CREATE OR REPLACE {into} AS
        SELECT left_id, right_id, {rule_name} AS blocking_rule,
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
    recs, uid = rel(out, "records"), spec.unique_id
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
