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
data the clustering is the same, so no id changes.
"""

from __future__ import annotations

import json

import pandas as pd

PREFIX = "C"
WIDTH = 9


def format_id(number: int) -> str:
    return f"{PREFIX}{number:0{WIDTH}d}"


def id_number(customer_id: str) -> int:
    return int(customer_id[len(PREFIX):])


def _evidence(links: pd.DataFrame | None, records: set[str]) -> dict[str, str]:
    """The strongest accepted link of each moved record, in words."""
    if links is None or not records:
        return {}
    both = pd.concat([links[["left_id", "right_id", "decision", "match_probability"]],
                      links.rename(columns={"left_id": "right_id", "right_id": "left_id"})
                      [["left_id", "right_id", "decision", "match_probability"]]])
    both = both[both.left_id.isin(records)].drop_duplicates("left_id")
    return {r.left_id: f"{r.decision} with {r.right_id} (p={r.match_probability:.4f})"
            for r in both.itertuples(index=False)}


def assign(records: pd.DataFrame, previous: pd.DataFrame, last_minted: int,
           links: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``records``: record_id, label. ``previous``: record_id, customer_id of the last run.
    ``links``: accepted links, strongest first, to explain changes.

    Returns the new crosswalk (record_id, customer_id) and the id changes (old_customer_id,
    new_customer_id, kind, records, evidence)."""
    df = records.merge(previous, on="record_id", how="left")
    first_member = df.sort_values("record_id").drop_duplicates("label").set_index("label")["record_id"]
    df["cluster_key"] = df["label"].map(first_member)
    prev = df.dropna(subset=["customer_id"])
    counts = prev.groupby(["customer_id", "cluster_key"]).size().rename("n").reset_index()
    counts = counts.sort_values(["customer_id", "n", "cluster_key"], ascending=[True, False, True])
    home = counts.drop_duplicates("customer_id")                  # customer_id -> home cluster
    home = home.assign(num=home.customer_id.map(id_number))
    keeper = home.sort_values(["cluster_key", "n", "num"], ascending=[True, False, True]) \
        .drop_duplicates("cluster_key")
    assigned = dict(zip(keeper.cluster_key, keeper.customer_id))
    # clusters without a home get new ids in the order of their first record
    fresh = pd.Index(df["cluster_key"].unique()).difference(pd.Index(list(assigned))).sort_values()
    numbers = pd.Series(range(last_minted + 1, last_minted + 1 + len(fresh)), dtype="int64")
    assigned.update(zip(fresh, PREFIX + numbers.astype(str).str.zfill(WIDTH)))
    df["new_id"] = df["cluster_key"].map(assigned)

    changes = []
    moved = prev.assign(new_id=prev["cluster_key"].map(assigned))
    moved = moved[moved.customer_id != moved.new_id]
    evidence = _evidence(links, set(moved.record_id))
    retired = set(home.customer_id) - set(keeper.customer_id)
    home_of = dict(zip(home.customer_id, home.cluster_key))
    minted = set(assigned.values()) - set(home.customer_id)
    for (old, new), g in moved.groupby(["customer_id", "new_id"]):
        if old in retired and assigned[home_of[old]] == new:
            kind = "merge"
        else:
            kind = "split" if new in minted else "move"
        recs = sorted(g.record_id)
        changes.append({"old_customer_id": old, "new_customer_id": new, "kind": kind,
                        "records": len(recs),
                        "evidence": json.dumps({"records": recs[:20],
                                                "links": [evidence[r] for r in recs[:20] if r in evidence]})})
    out = df[["record_id", "new_id"]].rename(columns={"new_id": "customer_id"})
    cols = ["old_customer_id", "new_customer_id", "kind", "records", "evidence"]
    return out, pd.DataFrame(changes, columns=cols)


def last_minted(ids: pd.Series) -> int:
    nums = ids.dropna().map(id_number)
    return int(nums.max()) if len(nums) else 0

