"""Quality of a resolution: against truth when it exists, descriptive when it does not.

With truth (record id -> true entity id): pairwise precision, recall and F1 over all record pairs
placed together, cluster-level B-cubed precision, recall and F1, and blocking recall (the share of
true pairs that reached comparison), also counted transitively (the share of true pairs joined by a
chain of compared true pairs, i.e. that a perfect classifier could put in one cluster). Without truth: cluster size distribution, merge rate and the
review-queue size. All of it is set work in DuckDB.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from crm_platform.identity.cluster import cluster


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def with_truth(con, clusters_sql: str, truth: pd.DataFrame, candidate_pairs_sql: str | None = None) -> dict:
    """``clusters_sql`` yields (record_id, cluster_id); ``truth`` has record_id, entity_id;
    ``candidate_pairs_sql`` yields (left_id, right_id)."""
    con.register("_truth", truth[["record_id", "entity_id"]])
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _ev AS
        SELECT c.record_id, c.cluster_id, t.entity_id FROM ({clusters_sql}) c JOIN _truth t USING (record_id)""")
    missing = con.execute(f"SELECT count(*) FROM ({clusters_sql}) c ANTI JOIN _truth t USING (record_id)").fetchall()[0][0]
    r = con.execute("""
        WITH both_ AS (SELECT cluster_id, entity_id, count(*) AS n FROM _ev GROUP BY ALL),
             c AS (SELECT cluster_id, count(*) AS n FROM _ev GROUP BY ALL),
             t AS (SELECT entity_id, count(*) AS n FROM _ev GROUP BY ALL)
        SELECT (SELECT sum(n * (n - 1) / 2) FROM both_) AS tp,
               (SELECT sum(n * (n - 1) / 2) FROM c) AS predicted,
               (SELECT sum(n * (n - 1) / 2) FROM t) AS actual,
               (SELECT sum(b.n * b.n / c.n) FROM both_ b JOIN c USING (cluster_id)) AS b3_p_sum,
               (SELECT sum(b.n * b.n / t.n) FROM both_ b JOIN t USING (entity_id)) AS b3_r_sum,
               (SELECT count(*) FROM _ev) AS records,
               (SELECT count(*) FROM c) AS clusters, (SELECT count(*) FROM t) AS entities""").fetchall()[0]
    tp, pred, actual, bp, br, n, clusters, entities = [float(x or 0) for x in r]
    p = tp / pred if pred else 1.0
    rc = tp / actual if actual else 1.0
    b3p, b3r = bp / n if n else 0.0, br / n if n else 0.0
    out = {"records": int(n), "records_without_truth": int(missing), "clusters": int(clusters),
           "true_entities": int(entities), "true_pairs": int(actual), "predicted_pairs": int(pred),
           "true_positive_pairs": int(tp),
           "pairwise_precision": round(p, 5), "pairwise_recall": round(rc, 5), "pairwise_f1": round(_f1(p, rc), 5),
           "bcubed_precision": round(b3p, 5), "bcubed_recall": round(b3r, 5), "bcubed_f1": round(_f1(b3p, b3r), 5)}
    if candidate_pairs_sql:
        hit = con.execute(f"""
            WITH tp AS (SELECT a.record_id AS x, b.record_id AS y FROM _ev a JOIN _ev b
                        ON a.entity_id = b.entity_id AND a.record_id < b.record_id),
                 cp AS (SELECT least(left_id, right_id) AS x, greatest(left_id, right_id) AS y
                        FROM ({candidate_pairs_sql}))
            SELECT count(*) FILTER (WHERE cp.x IS NOT NULL), count(*)
            FROM tp LEFT JOIN (SELECT DISTINCT x, y FROM cp) cp USING (x, y)""").fetchall()[0]
        out["blocking_recall"] = round(hit[0] / hit[1], 5) if hit[1] else 1.0
        out["true_pairs_not_compared"] = int(hit[1] - hit[0])
        ceiling, connected = _ceiling(con, candidate_pairs_sql)
        out["blocking_recall_connected"] = round(connected / hit[1], 5) if hit[1] else 1.0
        out["best_possible_bcubed_recall"] = ceiling
    con.execute("DROP TABLE _ev")
    con.unregister("_truth")
    return out


def without_truth(con, clusters_sql: str, review_queue_sql: str | None = None) -> dict:
    n, clusters, biggest = con.execute(
        f"SELECT count(*), count(DISTINCT cluster_id), max(s) FROM (SELECT cluster_id, count(*) OVER "
        f"(PARTITION BY cluster_id) AS s FROM ({clusters_sql}))").fetchall()[0]
    sizes = con.execute(f"SELECT s, count(*) FROM (SELECT cluster_id, count(*) AS s FROM ({clusters_sql}) "
                        "GROUP BY 1) GROUP BY 1 ORDER BY 1").fetchall()
    out = {"records": int(n), "clusters": int(clusters), "largest_cluster": int(biggest or 0),
           "merge_rate": round(1 - clusters / n, 5) if n else 0.0,
           "cluster_size_distribution": {int(k): int(v) for k, v in sizes}}
    if review_queue_sql:
        out["review_queue"] = int(con.execute(f"SELECT count(*) FROM ({review_queue_sql})").fetchall()[0][0])
    return out


def _ceiling(con, candidate_pairs_sql: str) -> tuple[float, int]:
    """B-cubed recall of a perfect classifier: true candidate pairs, joined transitively. What
    blocking leaves reachable; no scoring can do better. Also the number of true pairs so joined
    (directly compared or through a chain of true compared pairs). Records are numbered and
    counted in DuckDB; only the union-find runs in Python."""
    con.execute("CREATE OR REPLACE TEMP TABLE _evi AS SELECT row_number() OVER (ORDER BY record_id) - 1 AS i, "
                "record_id, entity_id FROM _ev")
    n = con.execute("SELECT count(*) FROM _evi").fetchall()[0][0]
    e = con.execute(f"""SELECT a.i AS l, b.i AS r FROM ({candidate_pairs_sql}) c
        JOIN _evi a ON a.record_id = c.left_id JOIN _evi b ON b.record_id = c.right_id
        WHERE a.entity_id = b.entity_id""").fetchnumpy()
    res = cluster(n, e["l"].astype(np.int64), e["r"].astype(np.int64), np.zeros(len(e["l"]), bool), {}, [],
                  max_size=n + 1)
    con.register("_ceil", pa.table({"i": np.arange(n, dtype=np.int64), "cluster_id": res.labels}))
    recall, connected = con.execute("""
        WITH j AS (SELECT e.entity_id, c.cluster_id FROM _evi e JOIN _ceil c USING (i)),
             both_ AS (SELECT cluster_id, entity_id, count(*) AS n FROM j GROUP BY ALL),
             sizes AS (SELECT entity_id, count(*) AS n FROM j GROUP BY ALL)
        SELECT sum(b.n * b.n / s.n), sum(b.n * (b.n - 1) // 2)
        FROM both_ b JOIN sizes s USING (entity_id)""").fetchall()[0]
    con.unregister("_ceil")
    con.execute("DROP TABLE _evi")
    return (round(float(recall) / n, 5) if n else 0.0), int(connected or 0)
