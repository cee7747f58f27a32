"""Identity resolution: quality against truth, stable ids, incremental arrival, review decisions,
guards, the supervised classifier, survivorship and provenance."""

import dataclasses
import json
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from crm_platform.identity import engine, evaluate, guards, ids, resolve, review
from crm_platform.golden import survivorship as golden
from crm_platform.identity.cluster import cluster
from crm_platform.identity.spec import MatchSpecError, load_spec, parse_spec
import yaml

from tests.conftest import generator_spec
from crm_platform.identity.compare import compare
from crm_platform.identity.blocking import block, prepare

SPEC = generator_spec()
CLUSTERS = "SELECT contact_key AS record_id, customer_id AS cluster_id FROM identity.crosswalk"


def _truth(world, con) -> pd.DataFrame:
    t = pd.read_csv(world / "truth/contact_records.csv", dtype=str, keep_default_na=False)
    systems = con.sql("SELECT DISTINCT dataset, source_system FROM staging.contacts").df()
    t = t.merge(systems, on="dataset")
    return t.assign(record_id=t.source_system + ":" + t.source_record_id, entity_id=t.person_id)


def _run(con, spec=SPEC, decisions=None):
    rep = resolve.match(con, spec, decisions)
    return rep, resolve.resolve(con, spec)


def _copy(src, tmp_path, name="w.duckdb"):
    dst = tmp_path / name
    shutil.copy(src, dst)
    return duckdb.connect(str(dst))


@pytest.fixture(scope="module")
def resolved(loaded_world, tmp_path_factory):
    con = _copy(loaded_world, tmp_path_factory.mktemp("resolved"))
    rep, res = _run(con)
    golden.build(con, golden.load_rules())
    yield con, rep, res
    con.close()


def _crosswalk(con) -> dict:
    return dict(con.execute("SELECT contact_key, customer_id FROM identity.crosswalk").fetchall())


# --- quality ------------------------------------------------------------------------------------

def test_quality_against_truth_beats_exact_matching(resolved, world):
    con, rep, res = resolved
    truth = _truth(world, con)
    m = evaluate.with_truth(con, CLUSTERS, truth, "SELECT left_id, right_id FROM identity.candidate_pairs")
    assert m["records_without_truth"] == 0 and m["records"] == res.records
    assert m["bcubed_precision"] > 0.985 and m["bcubed_recall"] > 0.93 and m["bcubed_f1"] > 0.96
    assert m["pairwise_precision"] > 0.95
    assert m["blocking_recall"] > 0.75
    # exact e-mail matching, the naive baseline, finds far fewer of the true pairs
    exact = "SELECT contact_key AS record_id, coalesce(email_std, contact_key) AS cluster_id FROM staging.contacts"
    naive = evaluate.with_truth(con, exact, truth)
    assert m["pairwise_recall"] > naive["pairwise_recall"] + 0.2


def test_blocking_never_forms_a_cross_product(resolved):
    con, rep, res = resolved
    n = rep.records
    assert rep.candidate_pairs < n * 20            # a cross product would be n * (n - 1) / 2
    assert set(rep.pairs_by_rule) <= {r.name for r in SPEC.blocking}


def test_every_contact_mapped_once_and_guards_hold(resolved):
    con, _, _ = resolved
    assert guards.unmapped_contacts(con)[0] == 0
    assert guards.oversized_clusters(con, SPEC)[0] == 0
    assert guards.conflicting_ids(con, SPEC)[0] == 0
    assert guards.cannot_link_violations(con)[0] == 0


def test_household_members_and_twins_stay_apart(resolved, world):
    con, _, _ = resolved
    persons = pd.read_csv(world / "truth/persons.csv", dtype=str, keep_default_na=False)
    truth = _truth(world, con).merge(persons[["person_id", "household_id", "twin_group"]], on="person_id")
    con.register("_t", truth)
    mixed = con.execute("""SELECT count(*) FROM (SELECT x.customer_id FROM identity.crosswalk x
        JOIN _t ON _t.record_id = x.contact_key GROUP BY 1, _t.household_id
        HAVING count(DISTINCT _t.person_id) > 1)""").fetchall()[0][0]
    households = con.execute("SELECT count(*) FROM (SELECT household_id FROM _t GROUP BY 1 "
                             "HAVING count(DISTINCT person_id) > 1)").fetchall()[0][0]
    assert households > 20                       # the world has households to protect
    assert mixed <= households * 0.01


# --- stable ids -----------------------------------------------------------------------------------

def test_rerun_without_new_data_changes_no_id(loaded_world, tmp_path):
    con = _copy(loaded_world, tmp_path)
    _run(con)
    before = _crosswalk(con)
    _, res = _run(con)
    assert _crosswalk(con) == before
    assert res.id_changes == {} and res.minted == 0
    assert con.execute("SELECT count(*) FROM identity.id_changes").fetchall()[0][0] == 0


def test_new_records_join_existing_customers(loaded_world, world, tmp_path):
    """The newsletter export arrives later: its duplicates join the customers already known."""
    con = _copy(loaded_world, tmp_path)
    con.execute("CREATE TABLE staging.all_contacts AS SELECT * FROM staging.contacts")
    con.execute("DELETE FROM staging.contacts WHERE dataset = 'newsletter_subscribers'")
    _run(con)
    first = _crosswalk(con)
    con.execute("CREATE OR REPLACE TABLE staging.contacts AS SELECT * FROM staging.all_contacts")
    _, res = _run(con)
    second = _crosswalk(con)
    truth = _truth(world, con).set_index("record_id")["entity_id"]
    known = {}                                   # true person -> customer ids before the arrival
    for key, cid in first.items():
        known.setdefault(truth[key], set()).add(cid)
    arrived = [(k, cid) for k, cid in second.items() if k not in first and truth[k] in known]
    assert len(arrived) > 100
    old_ids = set(first.values())
    joined = [(k, cid) for k, cid in arrived if cid in old_ids]
    right = sum(cid in known[truth[k]] for k, cid in joined)
    assert right / len(joined) > 0.98                 # a record that joins, joins the right person
    assert len(joined) / len(arrived) > 0.8           # and most duplicates are recognised
    # records already resolved keep their id unless a logged change moved them
    changes = con.execute("SELECT old_customer_id, kind FROM identity.id_changes").df()
    moved = [k for k, cid in first.items() if second[k] != cid]
    assert set(first[k] for k in moved) <= set(changes.old_customer_id)
    assert len(moved) < 0.05 * len(first)
    registry = con.execute("SELECT customer_id, status, retired_into FROM identity.id_registry").df()
    assert set(registry[registry.status == "active"].customer_id) == set(second.values())
    retired = registry[registry.status == "retired"]
    assert set(retired.customer_id) == set(first.values()) - set(second.values())
    merged = changes.merge(retired, left_on="old_customer_id", right_on="customer_id")
    assert (merged.retired_into.notna()).all()


def _assign(clusters: pd.DataFrame, previous: pd.DataFrame, last_minted: int, links: pd.DataFrame | None = None):
    con = duckdb.connect()
    con.register("_c", clusters)
    con.register("_p", previous.astype(str))
    con.register("_l", links if links is not None else
                 pd.DataFrame({"left_id": [], "right_id": [], "decision": [], "match_probability": []}).astype(
                     {"left_id": str, "right_id": str, "decision": str, "match_probability": float}))
    changes = ids.assign(con, "_c", "(SELECT * FROM _p)", last_minted, "_l")
    return con.execute("SELECT record_id, customer_id FROM _assigned ORDER BY record_id").df(), changes


def test_merge_keeps_surviving_id_and_split_mints_a_new_one():
    prev = pd.DataFrame({"record_id": ["a", "b", "c", "d", "e"],
                         "customer_id": ["C000000001", "C000000001", "C000000002", "C000000003", "C000000003"]})
    # a, b, c merge into one cluster; d and e split apart
    new = pd.DataFrame({"record_id": ["a", "b", "c", "d", "e"], "label": [0, 0, 0, 3, 4]})
    links = pd.DataFrame({"left_id": ["a", "b"], "right_id": ["c", "c"], "decision": ["link", "deterministic"],
                          "match_probability": [0.97, 1.0]})
    xw, changes = _assign(new, prev, last_minted=3, links=links)
    got = dict(zip(xw.record_id, xw.customer_id))
    assert got["a"] == got["b"] == got["c"] == "C000000001"          # the bigger id survives
    assert {got["d"], got["e"]} == {"C000000003", "C000000004"}       # one keeps it, one is new
    kinds = {(r.old_customer_id, r.new_customer_id): r.kind for r in changes.itertuples()}
    assert kinds == {("C000000002", "C000000001"): "merge", ("C000000003", "C000000004"): "split"}
    # the merge names its record and the strongest link that carried it
    merge = json.loads(changes.set_index("kind").loc["merge", "evidence"])
    assert merge == {"records": ["c"], "links": ["deterministic with b (p=1.0)"]}
    # minting continues after the last id ever minted, even one retired since
    xw2, _ = _assign(pd.DataFrame({"record_id": ["z"], "label": [0]}), prev.iloc[:0], last_minted=9)
    assert xw2.customer_id.tolist() == ["C000000010"]


def test_ties_go_to_the_oldest_id_and_to_the_cluster_whose_first_record_sorts_first():
    prev = pd.DataFrame({"record_id": ["a", "b", "c", "d", "e", "f", "g", "x", "y"],
                         "customer_id": ["C000000007"] * 2 + ["C000000002"] * 2 + ["C000000005"] * 3 + ["C000000003"] * 2})
    # C7 and C2 meet with two records each: the cluster keeps C2, the older; C5 loses e; C3 falls
    # apart one to one: it stays with x, whose cluster's first record sorts before y's
    new = pd.DataFrame({"record_id": ["a", "b", "c", "d", "e", "f", "g", "x", "y"],
                        "label": [4, 4, 4, 4, 1, 2, 2, 5, 6]})
    xw, changes = _assign(new, prev, last_minted=7)
    got = dict(zip(xw.record_id, xw.customer_id))
    assert got == {"a": "C000000002", "b": "C000000002", "c": "C000000002", "d": "C000000002",
                   "e": "C000000008", "f": "C000000005", "g": "C000000005", "x": "C000000003", "y": "C000000009"}
    assert changes[["old_customer_id", "new_customer_id", "kind", "records"]].values.tolist() == [
        ["C000000003", "C000000009", "split", 1], ["C000000005", "C000000008", "split", 1],
        ["C000000007", "C000000002", "merge", 2]]


# --- review decisions --------------------------------------------------------------------------

def test_review_decisions_are_honoured(loaded_world, tmp_path):
    con = _copy(loaded_world, tmp_path)
    _run(con)
    linked = con.execute("""SELECT l.left_id, l.right_id FROM identity.links l
        WHERE l.outcome = 'accepted' AND l.decision = 'link' ORDER BY l.left_id LIMIT 1""").fetchall()[0]
    apart = con.execute("""SELECT s.left_id, s.right_id FROM identity.pair_scores s
        JOIN identity.crosswalk a ON a.contact_key = s.left_id JOIN identity.crosswalk b ON b.contact_key = s.right_id
        WHERE a.customer_id <> b.customer_id AND a.cluster_size = 1 AND b.cluster_size = 1
        ORDER BY s.match_probability DESC LIMIT 1""").fetchall()[0]
    review_dir = tmp_path / "review"
    review_dir.mkdir()
    (review_dir / "decisions.csv").write_text(
        "left_id,right_id,decision\n"
        f"{linked[1]},{linked[0]},no_match\n"        # either order is accepted
        f"{apart[0]},{apart[1]},match\n"
        "shop:NOPE,shop:NADA,match\n"
        f"{apart[0]},{apart[1]},perhaps\n")
    decisions, bad = review.load_decisions(review_dir)
    assert bad.reason.str.contains("not match or no_match").sum() == 1
    rep, res = _run(con, decisions=decisions)
    assert rep.rejected_labels.reason.tolist() == ["unknown record id"]
    xw = _crosswalk(con)
    assert xw[linked[0]] != xw[linked[1]]
    assert xw[apart[0]] == xw[apart[1]]
    assert guards.cannot_link_violations(con)[0] == 0


def test_labels_train_recordlinkage_classifier(loaded_world, world, tmp_path):
    con = _copy(loaded_world, tmp_path)
    resolve.match(con, SPEC)
    truth = _truth(world, con).set_index("record_id")["entity_id"]
    pairs = con.execute("SELECT left_id, right_id FROM identity.pair_scores ORDER BY hash(left_id || right_id) LIMIT 400").df()
    pairs["label"] = (pairs.left_id.map(truth) == pairs.right_id.map(truth)).astype(int)
    assert pairs.label.sum() >= SPEC.min_labels_per_class and (1 - pairs.label).sum() >= SPEC.min_labels_per_class
    rep = resolve.match(con, SPEC, pairs)
    assert rep.model == "recordlinkage_logistic_regression" and rep.labels["used"]
    resolve.resolve(con, SPEC)
    m = evaluate.with_truth(con, CLUSTERS, _truth(world, con))
    assert m["bcubed_f1"] > 0.95


# --- guards -----------------------------------------------------------------------------------

def test_clustering_guards_refuse_and_explain():
    strong = {"birth_date": np.array(["1980-01-01", "1980-01-01", "1975-05-05", None, None, None], dtype=object)}
    left, right = np.array([0, 1, 3, 4, 3]), np.array([1, 2, 4, 5, 5])
    res = cluster(6, left, right, np.zeros(5, bool), strong, cannot=[(3, 5)], max_size=10)
    assert res.outcomes[1] == "refused: conflicting_birth_date"       # 2 has another birth date
    assert res.outcomes[3] == "refused: cannot_link"                  # 5 must stay apart from 3
    assert res.labels[0] == res.labels[1] != res.labels[2]
    small = cluster(4, np.array([0, 1, 2]), np.array([1, 2, 3]), np.zeros(3, bool), {}, [], max_size=2)
    assert small.refused == {"max_cluster_size": 1}
    forced = cluster(3, np.array([0]), np.array([2]), np.array([True]), strong, [], 10)
    assert forced.outcomes == ["accepted"]                            # a reviewer's must-link wins


def test_guard_checks_fire_on_crafted_violations(loaded_world, tmp_path):
    con = _copy(loaded_world, tmp_path)
    _run(con)
    # two different carried shop numbers (a declared strong identifier) put into one customer
    a, b = con.execute("""SELECT a.contact_key, b.contact_key FROM identity.records a JOIN identity.records b
        ON a.shop_customer_no <> b.shop_customer_no AND a.contact_key < b.contact_key LIMIT 1""").fetchall()[0]
    con.execute("UPDATE identity.crosswalk SET customer_id = (SELECT customer_id FROM identity.crosswalk "
                "WHERE contact_key = ?) WHERE contact_key = ?", [a, b])
    assert guards.conflicting_ids(con, SPEC)[0] == 1
    # a pair a reviewer keeps apart, put into one customer
    h = con.execute("""SELECT s.left_id, s.right_id FROM identity.pair_scores s
        JOIN identity.crosswalk l ON l.contact_key = s.left_id JOIN identity.crosswalk r ON r.contact_key = s.right_id
        WHERE l.customer_id <> r.customer_id AND s.left_id NOT IN (?, ?) AND s.right_id NOT IN (?, ?) LIMIT 1""",
                    [a, b, a, b]).fetchall()[0]
    con.execute("UPDATE identity.pair_scores SET decision = 'cannot_link' WHERE left_id = ? AND right_id = ?", list(h))
    con.execute("UPDATE identity.crosswalk SET customer_id = (SELECT customer_id FROM identity.crosswalk "
                "WHERE contact_key = ?) WHERE contact_key = ?", [h[0], h[1]])
    n, rows = guards.cannot_link_violations(con)
    assert n >= 1 and "reviewer: no match" in set(rows.rule)
    tight = dataclasses.replace(SPEC, guards=dataclasses.replace(SPEC.guards, max_cluster_size=1))
    assert guards.oversized_clusters(con, tight)[0] > 0
    con.execute("DELETE FROM identity.crosswalk WHERE contact_key = ?", [a])
    assert guards.unmapped_contacts(con)[0] == 1


# --- golden records ---------------------------------------------------------------------------

def test_every_golden_field_has_provenance_from_its_own_customer(resolved):
    con, _, _ = resolved
    fields = [o for fr in golden.load_rules() for o in fr.outputs]
    assert guards.missing_provenance(con, fields)[0] == 0
    wrong = con.execute("""SELECT count(*) FROM core.customer_field_provenance p
        JOIN identity.crosswalk x ON x.contact_key = p.source_contact_key
        WHERE x.customer_id <> p.customer_id""").fetchall()[0][0]
    assert wrong == 0
    n = con.execute("SELECT count(*) FROM core.customers").fetchall()[0][0]
    assert n == con.execute("SELECT count(DISTINCT customer_id) FROM identity.crosswalk").fetchall()[0][0]


def test_survivorship_rules(resolved):
    con, _, _ = resolved
    # consent: any "no" wins
    mixed = con.execute("""SELECT x.customer_id, bool_and(c.consent_email) FROM identity.crosswalk x
        JOIN staging.contacts c USING (contact_key) WHERE c.consent_email IS NOT NULL
        GROUP BY 1 HAVING count(DISTINCT c.consent_email) = 2""").fetchall()
    assert mixed
    golden_consent = dict(con.execute("SELECT customer_id, consent_email FROM core.customers").fetchall())
    assert all(golden_consent[cid] is False for cid, _ in mixed)
    # surname: the most recently updated record wins (a new name after marriage)
    latest = con.execute("""SELECT customer_id, arg_max(last_name, (coalesce(updated_at, created_at), -trust_rank))
        FROM identity.crosswalk JOIN staging.contacts USING (contact_key) WHERE last_name IS NOT NULL
        GROUP BY 1""").fetchall()
    got = dict(con.execute("SELECT customer_id, last_name FROM core.customers").fetchall())
    agree = sum(got[cid] == name for cid, name in latest)
    assert agree / len(latest) > 0.99
    # the address comes whole from one record
    split = con.execute("""SELECT count(*) FROM core.customers g JOIN core.customer_field_provenance s
        ON s.customer_id = g.customer_id AND s.field = 'street' JOIN core.customer_field_provenance p
        ON p.customer_id = g.customer_id AND p.field = 'postcode' WHERE s.source_contact_key <> p.source_contact_key""").fetchall()[0][0]
    assert split == 0


# --- the spec -----------------------------------------------------------------------------------

def _raw_spec():
    from crm_platform.identity import derive
    from crm_platform.identity.spec import PACKAGE_CONFIG, _resolve_lookups

    return _resolve_lookups(derive.derive(derive.for_columns(derive.MATCH_COLUMNS)), PACKAGE_CONFIG)


@pytest.mark.parametrize("change, message", [
    (lambda r: r["comparisons"][0]["levels"][0].update(kind="soundex"), "unknown level kind 'soundex'"),
    (lambda r: r.update(training_rules=["nope"]), "training_rules name unknown blocking rules"),
    (lambda r: r.update(thresholds={"link": 0.2, "review": 0.5}), "thresholds need"),
    (lambda r: r["blocking"]["rules"][0].update(keys=[]), "has no keys"),
    (lambda r: r.update(link_type="sometimes"), "link_type must be"),
])
def test_bad_spec_is_refused_with_the_place_named(change, message):
    raw = _raw_spec()
    change(raw)
    with pytest.raises(MatchSpecError, match=message):
        parse_spec(raw)


def test_engine_refuses_repeated_ids(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('a', 'x'), ('a', 'y')) v(contact_key, dataset)")
    with pytest.raises(ValueError, match="repeated"):
        prepare(con, dataclasses.replace(SPEC, derive={}, lookups={}, comparisons=()), "SELECT * FROM t", "o")


def test_review_queue_export_is_spreadsheet_safe(tmp_path):
    path = review.export_queue(pd.DataFrame({"left_first_name": ["=HYPERLINK(\"x\")", "Anna"]}), tmp_path)
    text = path.read_text()
    assert "'=HYPERLINK" in text and "\nAnna" in text


def test_recordlinkage_compare_backend_gives_the_same_vectors(loaded_world, tmp_path):
    """The spec's comparisons run as custom recordlinkage Compare features agree with the SQL."""
    con = _copy(loaded_world, tmp_path)
    prepare(con, SPEC, resolve.SOURCE_SQL, "identity")
    block(con, SPEC, "identity")
    compare(con, SPEC, "identity")
    con.execute("CREATE TABLE sql_vectors AS SELECT * FROM identity.comparisons")
    from crm_platform.identity import rl_compare
    rl_compare.compare(con, dataclasses.replace(SPEC, compare_backend="recordlinkage"), "identity")
    n = con.execute("SELECT count(*) FROM identity.comparisons").fetchall()[0][0]
    assert n == con.execute("SELECT count(*) FROM sql_vectors").fetchall()[0][0] > 1000
    differ = con.execute("SELECT count(*) FROM (SELECT * FROM sql_vectors EXCEPT ALL "
                         "SELECT * FROM identity.comparisons)").fetchall()[0][0]
    assert differ == 0
    assert con.execute("SELECT count(*) FROM identity.comparisons WHERE gamma_first_name = 4").fetchall()[0][0] > 0


def test_explain_says_why_field_by_field(resolved):
    con, _, _ = resolved
    a, b = con.execute("SELECT left_id, right_id FROM identity.links WHERE outcome = 'accepted' "
                       "AND decision = 'link' ORDER BY left_id LIMIT 1").fetchall()[0]
    lines = resolve.explain(con, b, a)                       # either order
    text = "\n".join(lines)
    assert "decision link" in text and "clustering: accepted" in text
    assert sum(line.strip().split()[0] in {c.name for c in SPEC.comparisons} for line in lines) == len(SPEC.comparisons)
    far = con.execute("""SELECT a.contact_key, b.contact_key FROM (SELECT contact_key FROM identity.records
        ORDER BY 1 LIMIT 30) a, (SELECT contact_key FROM identity.records ORDER BY 1 DESC LIMIT 30) b
        WHERE NOT EXISTS (SELECT 1 FROM identity.pair_scores s WHERE s.left_id = a.contact_key
                          AND s.right_id = b.contact_key) LIMIT 1""").fetchall()[0]
    assert "never compared" in resolve.explain(con, *far)[-1]


def test_fast_clustering_path_gives_the_ordered_union_find_result():
    """Components that break no guard skip the ordered union-find; the outcome of every link and
    the partition of the records must be exactly those of running it on everything."""
    from crm_platform.identity import cluster as cl

    rng = np.random.default_rng(3)
    n, m = 6000, 9000
    left, right = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = left != right
    left, right = left[keep], right[keep]
    forced = rng.random(len(left)) < 0.01
    birth = np.array([None if rng.random() < 0.7 else str(rng.integers(0, 40)) for _ in range(n)], dtype=object)
    cannot = [tuple(p) for p in rng.integers(0, n, (300, 2)).tolist() if p[0] != p[1]]
    fast = cl.cluster(n, left, right, forced, {"birth_date": birth}, cannot, 8)
    slow = cl._union_find(n, left, right, forced, {"birth_date": birth}, cannot, 8)
    assert len(left) >= cl.FAST_PATH_LINKS
    assert fast.outcomes == slow.outcomes and fast.refused == slow.refused
    assert sum(o != cl.ACCEPTED for o in fast.outcomes) > 50          # the guards had work to do
    partition = lambda labels: sorted(map(tuple, pd.Series(range(n)).groupby(labels).apply(list)))  # noqa: E731
    assert partition(fast.labels) == partition(slow.labels)


def test_link_components_in_sql_are_the_graphs_components():
    """The link graph's components computed in SQL (the form Spark runs too) label every node by
    the smallest node of its component, as scipy finds them, and a long chain of shuffled ids
    settles in a number of rounds that grows with the log of its length, not with the length."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    from crm_platform.identity.graph import connected_components

    rng = np.random.default_rng(5)
    n, chain = 30_000, 20_000
    ids_ = rng.permutation(n)
    a = np.r_[ids_[:chain - 1], rng.integers(0, n, 3000)]
    b = np.r_[ids_[1:chain], rng.integers(0, n, 3000)]
    con = duckdb.connect()
    con.register("e", pd.DataFrame({"a": a, "b": b}))
    con.execute(f"CREATE TABLE nodes AS SELECT range AS node FROM range({n})")
    rounds = connected_components(con, "SELECT node FROM nodes", "SELECT a, b FROM e", "_cc")
    got = con.execute("SELECT component FROM _cc ORDER BY node").df()["component"].to_numpy()
    k, comp = scipy_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    smallest = np.full(k, n)
    np.minimum.at(smallest, comp, np.arange(n))
    assert (got == smallest[comp]).all()
    assert len(set(got)) == k < n - chain                      # the chain is one component
    assert rounds <= 12


def test_resolution_gives_the_union_find_over_every_record(resolved):
    """Only components that break a guard reach the ordered union-find; every written link
    outcome and the crosswalk's partition are those of running it over every record and link."""
    from crm_platform.identity import cluster as cl

    con = resolved[0]
    vetoing, _ = guards.vetoing_ids(con, SPEC)
    cols = [*vetoing, *SPEC.guards.direct_evidence_for]
    uid = SPEC.unique_id
    recs = con.execute(f"SELECT {uid} AS contact_key, CAST({SPEC.source_column} AS VARCHAR) AS src, "
                       f"{', '.join(f'CAST({c} AS VARCHAR) AS {c}' for c in cols)} "
                       "FROM identity.records ORDER BY 1").df()
    pos = pd.Series(np.arange(len(recs)), index=recs.contact_key)
    links = con.execute("SELECT left_id, right_id, decision, outcome FROM identity.links ORDER BY "
                        "CASE decision WHEN 'must_link' THEN 0 WHEN 'deterministic' THEN 1 ELSE 2 END, "
                        "match_probability DESC, left_id, right_id").df()
    pairs = lambda where: [(pos[x], pos[y]) for x, y in con.execute(  # noqa: E731
        f"SELECT left_id, right_id FROM identity.pair_scores WHERE {where}").fetchall()]
    value = lambda c: recs[c].where(recs[c].notna(), None).to_numpy(dtype=object)  # noqa: E731
    strong = {c: value(c) for c in vetoing}
    if SPEC.guards.one_record_per_source:
        for source in recs.src.unique():
            strong[f"record_of_{source}"] = np.where(recs.src == source, recs.contact_key, None)
    unlike = np.array(pairs(f"decision = 'no_link' AND match_probability < {resolve.CLEAR_NON_MATCH}")).reshape(-1, 2)
    _, comp = cl.connected_components(cl.coo_matrix((np.ones(len(links)), (pos[links.left_id], pos[links.right_id])),
                                                    shape=(len(recs), len(recs))), directed=False)
    unlike = [(x, y) for x, y in unlike.tolist() if comp[x] == comp[y]]
    whole = cl._union_find(len(recs), pos[links.left_id].to_numpy(), pos[links.right_id].to_numpy(),
                           (links.decision == "must_link").to_numpy(), strong, pairs("decision = 'cannot_link'"),
                           SPEC.guards.max_cluster_size, {c: value(c) for c in SPEC.guards.direct_evidence_for}, unlike)
    assert links.outcome.tolist() == whole.outcomes
    assert sum(o != cl.ACCEPTED for o in whole.outcomes) > 0          # the guards had work to do
    x = _crosswalk(con)
    partition = lambda labels: sorted(map(tuple, pd.Series(recs.contact_key).groupby(labels).apply(sorted)))  # noqa: E731
    assert partition(whole.labels) == partition(recs.contact_key.map(x).to_numpy())


def test_blocking_ceiling_joins_compared_true_pairs_transitively():
    """a1-a2 and a2-a3 were compared, a1-a3 was not but a perfect classifier joins it through a2;
    the b pair was never compared; b1-a1 was compared but is false."""
    con = duckdb.connect()
    truth = pd.DataFrame({"record_id": ["a1", "a2", "a3", "b1", "b2"], "entity_id": ["A", "A", "A", "B", "B"]})
    con.execute("CREATE TABLE c AS SELECT * FROM (VALUES ('a1', 1), ('a2', 1), ('a3', 2), ('b1', 3), ('b2', 4)) "
                "t(record_id, cluster_id)")
    con.execute("CREATE TABLE p AS SELECT * FROM (VALUES ('a2', 'a1'), ('a2', 'a3'), ('b1', 'a1')) t(left_id, right_id)")
    m = evaluate.with_truth(con, "SELECT * FROM c", truth, "SELECT * FROM p")
    assert (m["true_pairs"], m["true_pairs_not_compared"], m["blocking_recall"]) == (4, 2, 0.5)
    assert m["blocking_recall_connected"] == 0.75                 # a1-a3 through a2
    assert m["best_possible_bcubed_recall"] == 0.8                # (3 * 1 + 1/2 + 1/2) / 5
    assert m["bcubed_recall"] < m["best_possible_bcubed_recall"]


def test_the_spec_fingerprint_is_what_it_asks_not_where_it_is_read_from(tmp_path):
    """A match re-matches everyone when the spec changed: the same spec in another checkout has the
    same fingerprint, a changed nickname list another one."""
    from crm_platform.identity.spec import PACKAGE_CONFIG

    raw = _raw_spec()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(PACKAGE_CONFIG / "nicknames.csv", tmp_path / folder / "nicknames.csv")
        (tmp_path / folder / "spec.yaml").write_text(yaml.safe_dump({**raw, "lookups": {"nicknames": "nicknames.csv"}}))
    here, there = load_spec(tmp_path / "a" / "spec.yaml"), load_spec(tmp_path / "b" / "spec.yaml")
    assert here.path != there.path and engine.spec_fingerprint(here) == engine.spec_fingerprint(there)
    nicknames = there.lookups["nicknames"]
    nicknames.write_text(nicknames.read_text() + "johannes,jo\n")
    assert engine.spec_fingerprint(load_spec(there.path)) != engine.spec_fingerprint(here)
