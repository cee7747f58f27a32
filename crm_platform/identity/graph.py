"""Connected components of a graph held in tables, in SQL that DuckDB and Spark both run.

Every node starts with its own id as its label; labels only fall and always name a node of the
same component, at most the node itself, so they form trees whose roots label themselves. Each
round (after Shiloach and Vishkin) every node takes the smallest label among its neighbours
(propagation), every root takes the smallest label any node of its tree found (hooking: trees
that touch merge, so the trees of a component at least halve per round), and labels jump to
their root until every tree is a star (shortcutting: each jump halves a tree's depth). At the
fixed point each component is one star whose root is its smallest node. Rounds grow with the log
of a component's size, not with its length.
"""

from __future__ import annotations

# each round at least halves the trees of a component: more means the tables are not a graph
MAX_ROUNDS = 64


def connected_components(con, nodes: str, edges: str, out: str) -> int:
    """Temporary table ``out`` (node, component): every node of query ``nodes`` (one integer
    column ``node``) with the smallest node of its component over the edges of query ``edges``
    (integer columns ``a``, ``b``, nodes of ``nodes``; either direction). Returns the rounds."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _graph_edges AS SELECT a, b FROM ({edges}) e "
                f"UNION ALL SELECT b, a FROM ({edges}) e")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT node, node AS component FROM ({nodes}) n")
    rounds = 0
    # every tree is a star here: done when no edge joins two of them
    while con.execute(f"SELECT count(*) FROM _graph_edges e JOIN {out} x ON x.node = e.a "
                      f"JOIN {out} y ON y.node = e.b WHERE x.component <> y.component").fetchall()[0][0]:
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise RuntimeError(f"connected components did not settle within {MAX_ROUNDS} rounds")
        # propagation: the smallest label among a node's neighbours; hooking: a root takes the
        # smallest label its tree's nodes found
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {out} AS
            WITH seen AS (
                SELECT x.node, x.component, least(x.component, coalesce(n.m, x.component)) AS m FROM {out} x
                LEFT JOIN (SELECT e.a AS node, min(y.component) AS m FROM _graph_edges e
                           JOIN {out} y ON y.node = e.b GROUP BY e.a) n ON n.node = x.node)
            SELECT s.node, least(s.m, coalesce(h.m, s.m)) AS component FROM seen s
            LEFT JOIN (SELECT component AS node, min(m) AS m FROM seen GROUP BY component) h ON h.node = s.node""")
        # shortcutting: labels jump to their label's label until every tree is a star
        while con.execute(f"SELECT count(*) FROM {out} x JOIN {out} j ON j.node = x.component "
                          "WHERE j.component <> x.component").fetchall()[0][0]:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT x.node, j.component "
                        f"FROM {out} x JOIN {out} j ON j.node = x.component")
    con.execute("DROP TABLE _graph_edges")
    return rounds
