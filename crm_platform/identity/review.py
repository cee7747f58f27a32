"""Clerical review: the queue a person works through and the decisions they hand back.

The review queue is exported to ``<home>/review/queue.csv``. A reviewer fills in the ``decision``
column (``match`` or ``no_match``) and saves the rows as ``<home>/review/decisions.csv``. On the
next run each decision is applied as a must-link or cannot-link and used as a training label.
Rows that cannot be used are reported with the reason, never dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crm_platform.core.spreadsheet import neutralize

DECISION_FILE = "decisions.csv"
QUEUE_FILE = "queue.csv"
LABELS = {"match": 1, "same": 1, "yes": 1, "1": 1, "no_match": 0, "different": 0, "no": 0, "0": 0}


def load_decisions(review_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Usable decisions (left_id, right_id, label) and rejected rows (with ``reason``)."""
    path = review_dir / DECISION_FILE
    empty = pd.DataFrame(columns=["left_id", "right_id", "label"])
    if not path.exists():
        return empty, pd.DataFrame(columns=["line", "reason"])
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"left_id", "right_id", "decision"} - set(df.columns)
    if missing:
        return empty, pd.DataFrame([{"line": 1, "reason": f"decisions.csv lacks columns {sorted(missing)}"}])
    df["line"] = range(2, len(df) + 2)
    df["label"] = df["decision"].str.strip().str.lower().map(LABELS)
    bad = df[df.label.isna() | (df.left_id.str.strip() == "") | (df.right_id.str.strip() == "")]
    rejected = pd.DataFrame({"line": bad["line"], "reason": [
        "left_id or right_id is empty" if not (r.left_id.strip() and r.right_id.strip())
        else f"decision '{r.decision}' is not match or no_match" for r in bad.itertuples()]})
    ok = df.drop(bad.index)
    # the last decision on a pair wins, whichever way round it was written
    ok = ok.assign(left_id=ok.left_id.str.strip(), right_id=ok.right_id.str.strip())
    key = ok[["left_id", "right_id"]].apply(lambda r: tuple(sorted(r)), axis=1) if len(ok) else []
    ok = ok.assign(_k=key).drop_duplicates("_k", keep="last")
    return ok[["left_id", "right_id", "label"]].astype({"label": int}).reset_index(drop=True), rejected


def export_queue(queue: pd.DataFrame, review_dir: Path) -> Path:
    review_dir.mkdir(parents=True, exist_ok=True)
    path = review_dir / QUEUE_FILE
    safe = queue.copy()
    for col in safe.columns:
        if safe[col].dtype == object:
            safe[col] = safe[col].map(neutralize)
    tmp = path.with_suffix(".csv.tmp")
    safe.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
