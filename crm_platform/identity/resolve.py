"""Identity resolution of the staged contacts: engine, clustering with guards, stable ids.

``match(con, spec, decisions)`` runs the engine over ``staging.contacts`` into the ``identity``
schema. ``resolve(con, spec)`` clusters the accepted links and maps the clusters onto stable
customer ids, writing in one transaction:

``identity.links``         every link the clustering considered, its weights and its outcome
``identity.review_queue``  uncertain pairs not yet decided, side by side for a reviewer
``identity.crosswalk``     every staged contact record -> exactly one customer_id
``identity.id_changes``    history of merges, splits and moves (old id, new id, kind, evidence)
``identity.id_registry``   every customer id ever minted, active or retired

Both run incrementally when asked (the daily run): ``match`` then compares only contacts new or
delivered again (``engine.run_incremental``), and ``resolve`` re-clusters only the records of the
link components such contacts touch - grown from them along every link-or-stronger pair and every
earlier customer's records until closed - and leaves every other customer as it was. Components
never interact in the clustering and every id a component held stays inside it, so the result is
the one a full resolution of the same pair scores gives (a test holds them equal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from crm_platform.staging import tables as staging
from crm_platform.identity import engine, guards, ids
from crm_platform.identity.graph import connected_components
from crm_platform.identity.cluster import ACCEPTED, cluster, strongest_first
from crm_platform.identity.spec import MatchSpec
from crm_platform.core.warehouse import columns, table_exists, transaction

SCHEMA = "identity"
SOURCE_SQL = "SELECT * FROM staging.contacts"
REVIEW_FIELDS = ("dataset", "first_name", "last_name", "birth_date", "email", "phone", "street",
                 "postcode", "city")


@dataclass
class ResolveReport:
    records: int = 0
    customers: int = 0
    links_considered: int = 0
    links_accepted: int = 0
    refused: dict = field(default_factory=dict)
    review_queue: int = 0
    id_changes: dict = field(default_factory=dict)
    minted: int = 0
    cluster_sizes: dict = field(default_factory=dict)
    mode: str = "full"             # or "incremental"
    reason: str = ""
    records_resolved: int = 0      # records re-clustered this run
    guarded_records: int = 0       # of them, in components that break a guard: the union-find's
    guarded_links: int = 0
    union_find_seconds: float = 0.0


def match(con, spec: MatchSpec, decisions: pd.DataFrame | None = None,
          incremental: bool = False) -> engine.EngineReport:
    """Block, compare and score the staged contacts under ``spec`` into the identity schema; with
    ``incremental``, only contacts new or delivered again since the last match, against all of
    them, under the last model (``engine.run_incremental``), when that is possible."""
    # a full rebuild of staging.contacts (new standardization, say) keeps load times: it needs a full match
    return engine.run(con, spec, SOURCE_SQL, SCHEMA, decisions, incremental=incremental,
                      generation=staging.generation(con, "contacts"))


@dataclass
class Clustering:
    """What ``cluster_scored`` found; the clusters and link outcomes themselves are tables."""
    records: int
    links_considered: int
    links_accepted: int
    refused: dict[str, int]
    guarded_records: int = 0       # in components that break a guard, clustered by the union-find
    guarded_links: int = 0
    union_find_seconds: float = 0.0    # collecting them, the union-find and writing its result back


def cluster_scored(con, spec: MatchSpec, schema: str, subset: str | None = None) -> Clustering:
    """Cluster the scored pairs of ``schema`` (of the records whose ids are in table ``subset``)
    under the spec's guards into temporary tables ``_clusters`` (record_id, label: the position
    of a record of its cluster) and ``_link_outcomes`` (left_id, right_id, outcome of every link
    considered).

    The link graph's components and the guards each one breaks are found in SQL on the engine
    (``graph.connected_components``); a component that breaks none accepts every link and keeps
    its smallest record as its label, so only the records and pairs of the others reach the
    ordered union-find (``cluster.cluster``) here, and only their labels and outcomes go back."""
    uid, src = spec.unique_id, spec.source_column
    vetoing, _ = guards.vetoing_ids(con, spec, schema)
    fields = [*vetoing, *spec.guards.direct_evidence_for]
    # integer positions in SQL: mapping millions of string ids in pandas costs seconds
    con.execute(f"CREATE OR REPLACE TEMP TABLE _idx AS SELECT {uid} AS record_id, "
                f"(row_number() OVER (ORDER BY {uid}) - 1)::BIGINT AS i FROM {schema}.records"
                + (f" WHERE {uid} IN (SELECT id FROM {subset})" if subset else ""))

    def pairs(where: str, cols: str = "a.i AS li, b.i AS ri", join: str = "") -> str:
        return (f"SELECT {cols} FROM {schema}.pair_scores s JOIN _idx a ON a.record_id = s.left_id "
                f"JOIN _idx b ON b.record_id = s.right_id{join} WHERE {where}")

    linked, cannot_sql = f"s.decision IN {LINKED}", "s.decision = 'cannot_link'"
    # pairs the model itself judged clearly apart: a chain through a third record (one without a
    # name, sharing an address) must not join them either
    unlike_sql = f"s.decision = 'no_link' AND s.match_probability < {CLEAR_NON_MATCH}"
    connected_components(con, "SELECT i AS node FROM _idx", pairs(linked, "a.i AS a, b.i AS b"), "_cc")
    rec = f"_cc x JOIN _idx d ON d.i = x.node JOIN {schema}.records r ON r.{uid} = d.record_id"
    # one pass over the records: too large, or two values of an identifier or a direct-evidence field
    broken = [f"SELECT x.component FROM {rec} GROUP BY x.component HAVING "
              + " OR ".join([f"count(*) > {int(spec.guards.max_cluster_size)}",
                             *(f"count(DISTINCT CAST(r.{c} AS VARCHAR)) > 1" for c in fields)])]
    if spec.guards.one_record_per_source:
        # each record is its own identifier within its source: two from one source conflict
        broken.append(f"SELECT x.component FROM {rec} WHERE r.{src} IS NOT NULL "
                      f"GROUP BY x.component, CAST(r.{src} AS VARCHAR) HAVING count(*) > 1")
    broken += [f"SELECT x.component FROM ({pairs(w)}) p JOIN _cc x ON x.node = p.li JOIN _cc y ON y.node = p.ri "
               "WHERE x.component = y.component" for w in (cannot_sql, unlike_sql)]
    con.execute("CREATE OR REPLACE TEMP TABLE _slow AS SELECT x.node AS i, "
                "(row_number() OVER (ORDER BY x.node) - 1)::BIGINT AS j FROM _cc x "
                f"SEMI JOIN ({' UNION '.join(broken)}) d ON d.component = x.component")
    strong_cols = "".join(f", CAST(r.{c} AS VARCHAR) AS {c}" for c in fields)
    started = time.perf_counter()
    slow = con.execute(f"SELECT s.i, d.record_id, CAST(r.{src} AS VARCHAR) AS _source{strong_cols} FROM _slow s "
                       f"JOIN _idx d ON d.i = s.i JOIN {schema}.records r ON r.{uid} = d.record_id ORDER BY s.j").df()
    # only the pairs inside the components the union-find sees, in its own positions
    inside = " JOIN _slow la ON la.i = a.i JOIN _slow lb ON lb.i = b.i"
    hard = con.execute(pairs(linked, "s.left_id, s.right_id, s.decision, la.j AS lj, lb.j AS rj", inside)
                       + f" ORDER BY {strongest_first('s')}, s.left_id, s.right_id").df()
    cannot, unlike = (con.execute(pairs(w, "la.j AS li, lb.j AS ri", inside)).df() for w in (cannot_sql, unlike_sql))

    strong = {c: slow[c].where(slow[c].notna(), None).to_numpy(dtype=object) for c in vetoing}
    direct = {c: slow[c].where(slow[c].notna(), None).to_numpy(dtype=object) for c in spec.guards.direct_evidence_for}
    if spec.guards.one_record_per_source:
        for source in slow["_source"].unique():
            strong[f"record_of_{source}"] = np.where(slow["_source"] == source, slow["record_id"], None)
    res = cluster(len(slow), hard.lj.to_numpy(np.int64), hard.rj.to_numpy(np.int64),
                  (hard.decision == "must_link").to_numpy(), strong,
                  list(zip(cannot.li.tolist(), cannot.ri.tolist())), spec.guards.max_cluster_size, direct,
                  (unlike.li.to_numpy(np.int64), unlike.ri.to_numpy(np.int64)))
    # the union-find's roots, in the engine's positions, and the links it refused
    positions = slow["i"].to_numpy(np.int64)
    con.register("_relabel", pd.DataFrame({"i": positions, "label": positions[res.labels]}, dtype="int64"))
    refused = [o != ACCEPTED for o in res.outcomes]
    con.register("_refusals", pd.DataFrame({"left_id": hard.left_id[refused].astype(str),
                                            "right_id": hard.right_id[refused].astype(str),
                                            "outcome": pd.Series(res.outcomes, dtype=object)[refused].astype(str)}))
    con.execute("CREATE OR REPLACE TEMP TABLE _clusters AS SELECT d.record_id, coalesce(l.label, x.component) AS label "
                "FROM _cc x JOIN _idx d ON d.i = x.node LEFT JOIN _relabel l ON l.i = x.node")
    con.execute("CREATE OR REPLACE TEMP TABLE _link_outcomes AS "
                + pairs(linked, f"s.left_id, s.right_id, coalesce(f.outcome, '{ACCEPTED}') AS outcome",
                        " LEFT JOIN _refusals f ON f.left_id = s.left_id AND f.right_id = s.right_id"))
    for t in ("_relabel", "_refusals"):
        con.unregister(t)
    seconds = time.perf_counter() - started
    for t in ("_slow", "_cc", "_idx"):
        con.execute(f"DROP TABLE {t}")
    records, considered, accepted = con.execute(
        f"SELECT (SELECT count(*) FROM _clusters), count(*), count(CASE WHEN outcome = '{ACCEPTED}' THEN 1 END) "
        "FROM _link_outcomes").fetchall()[0]
    return Clustering(int(records), int(considered), int(accepted), res.refused, len(slow), len(hard), round(seconds, 2))


# A scored pair below this match probability is clearly two people: the clustering never joins
# them through other records (about 10 bits of evidence against)
CLEAR_NON_MATCH = 0.001
# A daily resolution re-clusters at most this share of the records; above it, all of them.
MAX_INCREMENTAL_SHARE = 0.2
LINKED = "('must_link', 'deterministic', 'link')"


def _why_full(con, spec: MatchSpec) -> str | None:
    if not (table_exists(con, f"{SCHEMA}.crosswalk") and table_exists(con, f"{SCHEMA}.links")):
        return "no earlier resolution"
    cols = set(columns(con, f"{SCHEMA}.records"))
    if "_loaded_at" not in cols:
        return "the records carry no lineage to tell new ones by"
    cols = set(columns(con, f"{SCHEMA}.match_weights"))
    if "trained_at" not in cols:
        return "the match model does not say when it was trained"
    retrained = con.execute(f"SELECT (SELECT max(trained_at) FROM {SCHEMA}.match_weights) > "
                            f"(SELECT max(resolved_at) FROM {SCHEMA}.crosswalk)").fetchall()[0][0]
    if retrained is not False:
        return "the match model was trained after the last resolution: every pair may have moved"
    return None


def _touched(con, spec: MatchSpec) -> tuple[int, int]:
    """Temporary ``_touched``: the ids of every record in a link component holding a record
    loaded after the last resolution, new to it or gone from the records - grown along pairs of
    link strength or more and along earlier customers until closed. Returns its size (records
    still present) and the number of records."""
    uid, x = spec.unique_id, f"{SCHEMA}.crosswalk"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _touched AS
        SELECT {uid} AS id FROM {SCHEMA}.records WHERE _loaded_at > (SELECT max(resolved_at) FROM {x})
        UNION SELECT r.{uid} FROM {SCHEMA}.records r ANTI JOIN {x} c ON c.{uid} = r.{uid}
        UNION SELECT c.{uid} FROM {x} c ANTI JOIN {SCHEMA}.records r ON r.{uid} = c.{uid}""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _edges_all AS
        SELECT left_id AS a, right_id AS b FROM {SCHEMA}.pair_scores WHERE decision IN {LINKED}
        UNION ALL SELECT right_id, left_id FROM {SCHEMA}.pair_scores WHERE decision IN {LINKED}""")
    con.execute("CREATE OR REPLACE TEMP TABLE _front AS SELECT id FROM _touched")
    while con.execute("SELECT count(*) FROM _front").fetchall()[0][0]:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _front AS
            SELECT e.b AS id FROM _edges_all e SEMI JOIN _front f ON f.id = e.a
            UNION SELECT m.{uid} FROM {x} m WHERE m.customer_id IN
                (SELECT c.customer_id FROM {x} c SEMI JOIN _front f ON f.id = c.{uid})
            EXCEPT SELECT id FROM _touched""")
        con.execute("INSERT INTO _touched SELECT id FROM _front")
    con.execute("DROP TABLE _edges_all")
    con.execute("DROP TABLE _front")
    return con.execute(f"SELECT (SELECT count(*) FROM _touched SEMI JOIN {SCHEMA}.records r ON r.{uid} = _touched.id), "
                       f"(SELECT count(*) FROM {SCHEMA}.records)").fetchall()[0]


def resolve(con, spec: MatchSpec, now: datetime | None = None, incremental: bool = False) -> ResolveReport:
    """Cluster the scored pairs and write crosswalk, id changes, links and review queue; with
    ``incremental``, only the components new, changed or removed records touch (module doc)."""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    uid = spec.unique_id
    mode, reason = "full", "full resolution asked for"
    if incremental:
        reason = _why_full(con, spec)
        if reason is None:
            touched, total = _touched(con, spec)
            if touched > MAX_INCREMENTAL_SHARE * max(total, 1):
                reason = f"{touched} of {total} records touched (more than {MAX_INCREMENTAL_SHARE:.0%})"
            else:
                mode, reason = "incremental", f"{touched} of {total} records in components with new, changed or removed records"
    subset = "_touched" if mode == "incremental" else None
    found = cluster_scored(con, spec, SCHEMA, subset)
    previous = "(SELECT record_id, CAST(NULL AS VARCHAR) AS customer_id FROM _clusters WHERE 1 = 0)"
    last = 0
    if table_exists(con, f"{SCHEMA}.crosswalk"):
        previous = (f"(SELECT {uid} AS record_id, customer_id FROM {SCHEMA}.crosswalk"
                    + (f" WHERE {uid} IN (SELECT id FROM {subset})" if subset else "") + ")")
        last = ids.last_minted(pd.Series(con.execute(f"SELECT max(customer_id) FROM {SCHEMA}.crosswalk").fetchall()[0]))
    if table_exists(con, f"{SCHEMA}.id_registry"):      # ids are zero-padded: the text max is the last
        last = max(last, ids.last_minted(pd.Series(con.execute(f"SELECT max(customer_id) FROM {SCHEMA}.id_registry").fetchall()[0])))
    if table_exists(con, f"{SCHEMA}.id_watermark"):     # ids of erased customers are gone but not free
        last = max(last, ids.last_minted(pd.Series(con.execute(f"SELECT max(last_minted) FROM {SCHEMA}.id_watermark").fetchall()[0])))
    accepted = (f"(SELECT s.left_id, s.right_id, s.decision, s.match_probability FROM {SCHEMA}.pair_scores s "
                f"JOIN _link_outcomes o ON o.left_id = s.left_id AND o.right_id = s.right_id WHERE o.outcome = '{ACCEPTED}')")
    changes = ids.assign(con, "_clusters", previous, last, accepted)
    customers, minted = con.execute("SELECT count(DISTINCT customer_id), count(DISTINCT CASE WHEN minted THEN customer_id END) "
                                    "FROM _assigned").fetchall()[0]
    rep = ResolveReport(records=found.records, customers=int(customers), links_considered=found.links_considered,
                        links_accepted=found.links_accepted, refused=found.refused, mode=mode, reason=reason,
                        records_resolved=found.records, minted=int(minted), guarded_records=found.guarded_records,
                        guarded_links=found.guarded_links, union_find_seconds=found.union_find_seconds)
    rep.id_changes = changes["kind"].value_counts().to_dict() if len(changes) else {}

    try:
        with transaction(con):
            _write(con, spec, changes, now, subset)
    finally:
        for t in ("_touched", "_assigned", "_clusters", "_link_outcomes"):
            con.execute(f"DROP TABLE IF EXISTS {t}")
    if subset:
        rep.records, rep.customers = con.execute(f"SELECT count(*), count(DISTINCT customer_id) "
                                                 f"FROM {SCHEMA}.crosswalk").fetchall()[0]
    rep.review_queue = con.execute(f"SELECT count(*) FROM {SCHEMA}.review_queue").fetchall()[0][0]
    sizes = con.execute(f"SELECT cluster_size, count(DISTINCT customer_id) FROM {SCHEMA}.crosswalk "
                        "GROUP BY 1 ORDER BY 1").fetchall()
    rep.cluster_sizes = {int(k): int(v) for k, v in sizes}
    return rep


def _write(con, spec: MatchSpec, changes: pd.DataFrame, now: datetime, subset: str | None = None) -> None:
    """Write the resolution held in ``_link_outcomes`` and ``_assigned``; with ``subset``, replace
    only the links and crosswalk rows of the records whose ids it holds (every link and every
    record of their customers lies inside)."""
    uid = spec.unique_id

    def replace(table: str, select: str, params=(), rows_of: str = "") -> None:
        if subset:
            con.execute(f"DELETE FROM {SCHEMA}.{table} WHERE {rows_of}")
            con.execute(f"INSERT INTO {SCHEMA}.{table} BY NAME {select}", list(params))
        else:
            con.execute(f"CREATE OR REPLACE TABLE {SCHEMA}.{table} AS {select}", list(params))

    replace("links", f"""SELECT s.* EXCLUDE (review_label, _built_at), e.outcome, now()::TIMESTAMP AS _built_at
        FROM {SCHEMA}.pair_scores s JOIN _link_outcomes e ON e.left_id = s.left_id AND e.right_id = s.right_id
        ORDER BY s.match_probability DESC, s.left_id, s.right_id""",
            rows_of=f"left_id IN (SELECT id FROM {subset}) OR right_id IN (SELECT id FROM {subset})")
    # typed: with no contact at all (a marketing-spend export alone) the columns are empty
    replace("crosswalk", f"""SELECT CAST(x.record_id AS VARCHAR) AS {uid}, CAST(x.customer_id AS VARCHAR) AS customer_id,
               r.dataset, r.source_system, r.source_record_id,
               CAST(count(*) OVER (PARTITION BY x.customer_id) AS INTEGER) AS cluster_size,
               CAST(? AS TIMESTAMP) AS resolved_at
        FROM _assigned x JOIN {SCHEMA}.records r ON r.{uid} = x.record_id ORDER BY 2, 1""", [now],
            rows_of=f"{uid} IN (SELECT id FROM {subset})")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.id_changes (
        old_customer_id VARCHAR, new_customer_id VARCHAR, kind VARCHAR, records INTEGER,
        evidence VARCHAR, changed_at TIMESTAMP)""")
    if len(changes):
        con.register("_chg", changes)
        con.execute(f"INSERT INTO {SCHEMA}.id_changes SELECT old_customer_id, new_customer_id, kind, "
                    "records, evidence, ? FROM _chg", [now])
        con.unregister("_chg")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.id_registry (
        customer_id VARCHAR PRIMARY KEY, minted_at TIMESTAMP, status VARCHAR, retired_into VARCHAR,
        retired_at TIMESTAMP)""")
    con.execute(f"INSERT INTO {SCHEMA}.id_registry SELECT DISTINCT customer_id, CAST(? AS TIMESTAMP), 'active', "
                "CAST(NULL AS VARCHAR), CAST(NULL AS TIMESTAMP) FROM _assigned WHERE minted", [now])
    merges = changes[changes.kind == "merge"] if len(changes) else changes
    con.register("_into", pd.DataFrame({"customer_id": merges.old_customer_id if len(merges) else [],
                                        "into": merges.new_customer_id if len(merges) else []}, dtype=str))
    # joins rather than subqueries in SET / WHERE: the form every engine runs as hash joins
    con.execute(f"""UPDATE {SCHEMA}.id_registry g SET status = 'retired', retired_at = ?, retired_into = r.into
        FROM (SELECT a.customer_id, i.into FROM {SCHEMA}.id_registry a LEFT JOIN _into i USING (customer_id)
              WHERE a.status = 'active'
                AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.crosswalk x WHERE x.customer_id = a.customer_id)) r
        WHERE g.customer_id = r.customer_id""", [now])
    con.unregister("_into")
    fields = ", ".join(f"l.{f} AS left_{f}, r.{f} AS right_{f}" for f in REVIEW_FIELDS)
    con.execute(f"""CREATE OR REPLACE TABLE {SCHEMA}.review_queue AS
        SELECT s.left_id, s.right_id, round(s.match_probability, 4) AS match_probability,
               round(s.total_weight, 2) AS total_weight, {fields}, NULL::VARCHAR AS decision
        FROM {SCHEMA}.pair_scores s
        JOIN {SCHEMA}.records l ON l.{uid} = s.left_id JOIN {SCHEMA}.records r ON r.{uid} = s.right_id
        JOIN {SCHEMA}.crosswalk xl ON xl.{uid} = s.left_id JOIN {SCHEMA}.crosswalk xr ON xr.{uid} = s.right_id
        WHERE s.decision = 'review' AND xl.customer_id <> xr.customer_id
        ORDER BY s.match_probability DESC, s.left_id, s.right_id""")


def explain(con, left_id: str, right_id: str) -> list[str]:
    """Why two records are (not) the same customer, field by field, for a person asking."""
    row = con.execute(f"SELECT * FROM {SCHEMA}.pair_scores WHERE (left_id, right_id) IN ((?, ?), (?, ?))",
                      [left_id, right_id, right_id, left_id]).df()
    ids = con.execute(f"SELECT contact_key, customer_id FROM {SCHEMA}.crosswalk WHERE contact_key IN (?, ?)",
                      [left_id, right_id]).fetchall()
    lines = [f"{k}: customer {c}" for k, c in ids]
    if not len(row):
        return lines + ["this pair was never compared: no blocking rule put the two records together"]
    r = row.iloc[0]
    labels = {(c, int(g)): lv for c, g, lv in con.execute(
        f"SELECT comparison, gamma, level FROM {SCHEMA}.match_weights WHERE context = ''").fetchall()}
    comps = [c[len("gamma_"):] for c in row.columns if c.startswith("gamma_")]
    lines.append(f"proposed by blocking rule {r.blocking_rule}; decision {r.decision} "
                 f"(match probability {r.match_probability:.4f}, total weight {r.total_weight:+.2f} bits)")
    for c in comps:
        lines.append(f"  {c:<12} {labels.get((c, int(r['gamma_' + c])), '?'):<32} {r['w_' + c]:+7.2f} bits")
    for label in ("deterministic_rule", "cannot_link_rule"):
        if r[label] is not None and r[label] == r[label]:
            lines.append(f"  {label.replace('_', ' ')}: {r[label]}")
    link = con.execute(f"SELECT outcome FROM {SCHEMA}.links WHERE left_id = ? AND right_id = ?",
                       [r.left_id, r.right_id]).fetchall()
    if link:
        lines.append(f"  clustering: {link[0][0]}")
    return lines
