"""Behaviour clusters: k chosen by silhouette finds planted groups, labels say what sets a
cluster apart, small bases are not clustered but say so."""

from datetime import date

import duckdb
import numpy as np
import pandas as pd

from crm_platform.marts import behaviour_clusters as clusters
from crm_platform.contracts.schemas import BehaviourClusterProfiles, BehaviourClusters


def _snapshot(groups: int = 4, per: int = 300, seed: int = 1) -> pd.DataFrame:
    """Planted behaviours: big recent spenders, lapsed small buyers, heavy returners, newsletter
    readers who never buy (first ``groups`` of them)."""
    rng = np.random.default_rng(seed)
    kinds = [dict(recency_days=10, frequency_365d=12, monetary_365d=3000, return_rate=0.05, email_open_rate_90d=0.2),
             dict(recency_days=300, frequency_365d=1, monetary_365d=40, return_rate=0.05, email_open_rate_90d=0.1),
             dict(recency_days=60, frequency_365d=4, monetary_365d=400, return_rate=0.8, email_open_rate_90d=0.1),
             dict(recency_days=None, frequency_365d=0, monetary_365d=0, return_rate=None, email_open_rate_90d=0.9)]
    rows = []
    for g in range(groups):
        for i in range(per):
            r = {c: 0.0 for c in clusters.FEATURES}
            for c, v in kinds[g].items():
                r[c] = None if v is None else v * rng.uniform(0.85, 1.15)
            r["avg_order_value"] = (r["monetary_365d"] / r["frequency_365d"]) if r["frequency_365d"] else None
            r["customer_id"] = f"C{g}{i:08d}"
            r["truth"] = g
            rows.append(r)
    return pd.DataFrame(rows)


def test_planted_groups_are_found_and_labelled():
    snap = _snapshot()
    res = clusters.cluster_customers(snap, clusters.ClusterConfig(k_min=2, k_max=6))
    assert res.k == 4 and res.silhouettes[4] == max(res.silhouettes.values())
    joined = snap[["customer_id", "truth"]].merge(res.assignments, on="customer_id")
    assert (joined.groupby("truth")["cluster"].nunique() == 1).all()      # each group one cluster
    assert joined.groupby("cluster")["truth"].nunique().max() == 1        # and each cluster one group
    label = joined.groupby("truth")["cluster_label"].first()
    assert "heavy returners" in label[2] and "newsletter readers" in label[3]
    assert res.profiles.customers.sum() == len(snap) and res.profiles.cluster_label.nunique() == 4


def test_too_few_customers_are_not_clustered(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE SCHEMA features")
    snap = _snapshot(groups=2, per=40).drop(columns="truth").assign(snapshot_date=pd.Timestamp("2026-03-31"))
    con.register("_s", snap)
    con.execute("CREATE TABLE features.customer_features AS SELECT * REPLACE (snapshot_date::DATE AS snapshot_date) FROM _s")
    res = clusters.build_day(con, date(2026, 3, 31))
    assert res.k is None and "too few to cluster" in res.note
    out = con.sql("SELECT * FROM marts.behaviour_clusters").df()
    assert len(out) == 80 and out.cluster.isna().all()
    BehaviourClusters.validate(out)


def test_a_day_is_written_with_its_profiles():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA features")
    snap = _snapshot().drop(columns="truth").assign(snapshot_date=pd.Timestamp("2026-03-31"))
    con.register("_s", snap)
    con.execute("CREATE TABLE features.customer_features AS SELECT * REPLACE (snapshot_date::DATE AS snapshot_date) FROM _s")
    clusters.build_day(con, date(2026, 3, 31), clusters.ClusterConfig(k_min=2, k_max=6))
    clusters.build_day(con, date(2026, 3, 31), clusters.ClusterConfig(k_min=2, k_max=6))   # replaces the day
    b = con.sql("SELECT * FROM marts.behaviour_clusters").df()
    p = con.sql("SELECT * FROM marts.behaviour_cluster_profiles").df()
    assert len(b) == 1200 and len(p) == 4
    BehaviourClusters.validate(b)
    BehaviourClusterProfiles.validate(p)


def test_lookalikes_rank_the_seeds_twins_first():
    """Seed: big spenders. Customers who behave like them (not yet in the segment) rank before
    heavy returners and non-buying newsletter readers."""
    snap = _snapshot(per=150)
    seed = (snap.truth == 0) & (snap.index % 2 == 0)                  # half of group 0 is the seed
    scores, note = clusters.lookalike_scores(snap, seed)
    assert note is None and len(scores) == len(snap) - seed.sum()
    truth = snap.set_index("customer_id")["truth"]
    top = scores.head(75).customer_id.map(truth)
    assert (top == 0).all()                                            # the seed's twins come first
    mean = scores.assign(g=scores.customer_id.map(truth)).groupby("g")["lookalike_score"].mean()
    assert mean[0] > mean[2] and mean[0] > mean[3]
    few, why = clusters.lookalike_scores(snap, snap.index < 5)
    assert few.empty and "fewer than 20" in why
    # a seed larger than max_seed is represented by a sample of it: the same twins still come first
    sampled, _ = clusters.lookalike_scores(snap, seed, clusters.LookalikeConfig(max_seed=30))
    assert len(sampled) == len(scores) and (sampled.head(75).customer_id.map(truth) == 0).all()


def test_customers_who_behave_the_same_get_the_same_lookalike_distance():
    """Customers with the same behaviour are searched for once: every one of them is scored, with
    the same distance."""
    snap = _snapshot(per=150)
    seed = (snap.truth == 0) & (snap.index % 2 == 0)
    twins = snap[~seed].head(100).assign(customer_id=lambda d: d.customer_id + "-twin")
    both = pd.concat([snap, twins], ignore_index=True)
    scores, _ = clusters.lookalike_scores(both, np.r_[seed.to_numpy(), np.zeros(len(twins), bool)])
    alone, _ = clusters.lookalike_scores(snap, seed)
    d = scores.set_index("customer_id")["distance"]
    assert len(scores) == len(alone) + len(twins)
    assert (d[twins.customer_id].to_numpy() == d[twins.customer_id.str.removesuffix("-twin")].to_numpy()).all()


def test_lookalike_distance_is_the_mean_distance_to_the_nearest_seed_members():
    """The distance a customer is ranked by: the mean Euclidean distance, in standardized
    behaviour space, to the ``neighbours`` nearest seed members - checked against every
    distance computed by hand, with a neighbour count of one as well."""
    snap = _snapshot(per=60, seed=3)
    seed = ((snap.truth == 0) & (snap.index % 2 == 0)).to_numpy()
    x = snap[list(clusters.LOOKALIKE_FEATURES)].astype(float).fillna(0.0)
    for c in ("avg_order_value", "category_breadth", "web_sessions_90d", "tickets_total", "engagement_score"):
        x[c] = np.log1p(x[c].clip(lower=0))
    z = x.to_numpy()
    z = (z - z.mean(axis=0)) / np.where(z.std(axis=0) > 0, z.std(axis=0), 1)
    all_pairs = np.sqrt(((z[~seed][:, None, :] - z[seed][None, :, :]) ** 2).sum(axis=2))
    for k in (10, 1):
        scores, _ = clusters.lookalike_scores(snap, seed, clusters.LookalikeConfig(neighbours=k))
        expected = pd.Series(np.sort(all_pairs, axis=1)[:, :k].mean(axis=1).round(4),
                             index=snap.customer_id[~seed])
        got = scores.set_index("customer_id")["distance"]
        assert np.allclose(got[expected.index].to_numpy(), expected.to_numpy(), atol=1e-4)
        assert got.nunique() > 10


def test_a_days_clusters_do_not_depend_on_the_order_its_rows_are_stored_in():
    """The clustering sample is drawn by row position: the rows are read in customer order, so a
    rerun (whose parallel scan returns them in another order) clusters the same customers the same."""
    snap = _snapshot().drop(columns="truth").assign(snapshot_date=pd.Timestamp("2026-03-31"))
    cfg = clusters.ClusterConfig(k_min=2, k_max=6, sample=300)
    out = []
    for rows in (snap, snap.iloc[::-1].reset_index(drop=True).copy()):
        con = duckdb.connect()
        con.execute("CREATE SCHEMA features")
        con.register("_s", rows)
        con.execute("CREATE TABLE features.customer_features AS SELECT * REPLACE (snapshot_date::DATE AS snapshot_date) "
                    "FROM _s")
        clusters.build_day(con, date(2026, 3, 31), cfg)
        out.append([con.sql(f"SELECT * FROM marts.{t} ORDER BY ALL").df()
                    for t in ("behaviour_clusters", "behaviour_cluster_profiles")])
    for a, b in zip(*out):
        pd.testing.assert_frame_equal(a, b)
