"""Stable customer ids across runs.

A new clustering is mapped onto the ids of the previous run:

* every previous id has a *home*: the new cluster holding most of its records (ties: the cluster
  whose smallest record id sorts first);
* a new cluster that is home to one previous id keeps it; home to several, it keeps the id with
  most records (ties: the oldest id) and the others are retired into it (``merge``);
* a new cluster that is home to none gets a newly minted id; records it took from previous ids
  are logged as ``split`` from those ids; records that move into a cluster that keeps another
  previous id are logged as ``move``.

Ids are never reused: the registry remembers every minted id, retired ones included. With no new
data the clustering is the same, so no id changes. The mapping is SQL on the warehouse engine
(DuckDB or Spark); only the changes, with their evidence, are collected.
"""

from __future__ import annotations

import json

import pandas as pd

from crm_platform.identity.cluster import strongest_first

PREFIX = "C"
WIDTH = 9


def format_id(number: int) -> str:
    return f"{PREFIX}{number:0{WIDTH}d}"


def id_number(customer_id: str) -> int:
    return int(customer_id[len(PREFIX):])


def _number(column: str) -> str:
    return f"CAST(substr({column}, {len(PREFIX) + 1}) AS BIGINT)"


def assign(con, clusters: str, previous: str, last_minted: int, links: str) -> pd.DataFrame:
    """Map the clusters of relation ``clusters`` (record_id, label) onto the ids of relation
    ``previous`` (record_id, customer_id of the last run) in the engine: temporary table
    ``_assigned`` (record_id, customer_id, minted: the id is new this run, old_id). ``links``:
    relation of the accepted links (left_id, right_id, decision, match_probability), to explain
    changes.

    Returns the id changes (old_customer_id, new_customer_id, kind, records, evidence): only they
    leave the engine."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _members AS
        SELECT c.record_id, p.customer_id AS old_id, min(c.record_id) OVER (PARTITION BY c.label) AS cluster_key
        FROM {clusters} c LEFT JOIN {previous} p ON p.record_id = c.record_id""")
    # every previous id's home, and whether it is the id its home keeps
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _homes AS
        WITH counts AS (SELECT old_id AS customer_id, cluster_key, count(*) AS n FROM _members
                        WHERE old_id IS NOT NULL GROUP BY old_id, cluster_key),
        ranked AS (SELECT customer_id, cluster_key, n,
                          row_number() OVER (PARTITION BY customer_id ORDER BY n DESC, cluster_key) AS r FROM counts)
        SELECT customer_id, cluster_key, row_number() OVER (PARTITION BY cluster_key
                   ORDER BY n DESC, {_number('customer_id')}, customer_id) = 1 AS keeps
        FROM ranked WHERE r = 1""")
    # clusters home to no previous id get new ids in the order of their first record
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _cluster_ids AS
        SELECT cluster_key, customer_id, false AS minted FROM _homes WHERE keeps
        UNION ALL
        SELECT k.cluster_key, '{PREFIX}' || lpad(CAST({int(last_minted)} + row_number() OVER (ORDER BY k.cluster_key)
                   AS VARCHAR), {WIDTH}, '0'), true
        FROM (SELECT DISTINCT cluster_key FROM _members) k
        ANTI JOIN (SELECT cluster_key FROM _homes WHERE keeps) h ON h.cluster_key = k.cluster_key""")
    con.execute("""CREATE OR REPLACE TEMP TABLE _assigned AS
        SELECT m.record_id, i.customer_id, i.minted, m.old_id FROM _members m JOIN _cluster_ids i USING (cluster_key)""")
    # a retired id whose home keeps another: merged into it; else a split to a new id or a move
    con.execute("""CREATE OR REPLACE TEMP TABLE _moved AS
        SELECT a.record_id, a.old_id AS old_customer_id, a.customer_id AS new_customer_id,
               CASE WHEN NOT h.keeps AND hi.customer_id = a.customer_id THEN 'merge'
                    WHEN a.minted THEN 'split' ELSE 'move' END AS kind
        FROM _assigned a JOIN _homes h ON h.customer_id = a.old_id JOIN _cluster_ids hi ON hi.cluster_key = h.cluster_key
        WHERE a.old_id <> a.customer_id""")
    changes = con.execute("""SELECT old_customer_id, new_customer_id, kind, count(*) AS records
        FROM _moved GROUP BY old_customer_id, new_customer_id, kind
        ORDER BY old_customer_id, new_customer_id""").df()
    cols = ["old_customer_id", "new_customer_id", "kind", "records", "evidence"]
    if len(changes):
        changes["evidence"] = _evidence(con, links, changes)
    for t in ("_members", "_homes", "_cluster_ids", "_moved"):
        con.execute(f"DROP TABLE {t}")
    return changes[cols] if len(changes) else pd.DataFrame(columns=cols)


def _evidence(con, links: str, changes: pd.DataFrame) -> list[str]:
    """Per change (of table ``_moved``), its first records and the strongest accepted link of
    each, as JSON."""
    strongest = f"""SELECT record_id, decision || ' with ' || other || ' (p=' ||
               CAST(round(match_probability, 4) AS VARCHAR) || ')' AS link FROM (
            SELECT record_id, other, decision, match_probability, row_number() OVER (PARTITION BY record_id
                ORDER BY {strongest_first()}, other) AS r
            FROM (SELECT left_id AS record_id, right_id AS other, decision, match_probability FROM {links}
                  UNION ALL SELECT right_id, left_id, decision, match_probability FROM {links}) b
            SEMI JOIN _moved m ON m.record_id = b.record_id) s
        WHERE r = 1"""
    shown = con.execute(f"""SELECT m.old_customer_id, m.new_customer_id, m.record_id, e.link FROM (
            SELECT *, row_number() OVER (PARTITION BY old_customer_id, new_customer_id ORDER BY record_id) AS r
            FROM _moved x) m
        LEFT JOIN ({strongest}) e ON e.record_id = m.record_id
        WHERE m.r <= {EVIDENCE_RECORDS} ORDER BY m.old_customer_id, m.new_customer_id, m.record_id""").df()
    evidence = {key: json.dumps({"records": g.record_id.tolist(), "links": g.link.dropna().tolist()})
                for key, g in shown.groupby(["old_customer_id", "new_customer_id"], sort=False)}
    return [evidence[(o, n)] for o, n in zip(changes.old_customer_id, changes.new_customer_id)]


# records (and their strongest links) named in an id change's evidence
EVIDENCE_RECORDS = 20


def last_minted(ids: pd.Series) -> int:
    nums = ids.dropna().map(id_number)
    return int(nums.max()) if len(nums) else 0
