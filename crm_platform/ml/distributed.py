"""Scoring every customer on Spark's executors: the champion model travels to each partition of
the day's feature rows (``mapInPandas``) and the task's own ``score`` runs there, so the scores
are the DuckDB path's. Training stays on a seeded sample on the driver (``training.training_sample``).

A task's rows for one customer (NBO has one per candidate category) stay together: the rows are
partitioned and sorted by customer, and a customer's rows cut off at the end of an Arrow batch are
carried into the next one.
"""

from __future__ import annotations

from datetime import date
from types import ModuleType

import pandas as pd

from crm_platform.ml import training

KEY = "customer_id"


def _by_customer(batches, scorer):
    carry = None
    for batch in batches:
        if carry is not None:
            batch = pd.concat([carry, batch], ignore_index=True)
        if batch.empty:
            continue
        last = batch[KEY].iloc[-1]
        tail = (batch[KEY] == last).to_numpy()
        carry, batch = batch[tail], batch[~tail]
        if len(batch):
            yield scorer(batch)
    if carry is not None and len(carry):
        yield scorer(carry)


def _schema(spark, out: pd.DataFrame):
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    fields = [pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type)
              for f in pa.Schema.from_pandas(out, preserve_index=False)]
    return from_arrow_schema(pa.schema(fields))


def scores(frame, task: ModuleType, model, card: dict, cfg, partitions: int | None = None):
    """A Spark DataFrame: ``task.score`` over every row of the Spark DataFrame ``frame`` (a task's
    scoring rows), computed partition by partition where the data lies."""
    def scorer(rows: pd.DataFrame) -> pd.DataFrame:
        return task.score(model, card, rows.reset_index(drop=True), cfg)

    spark = frame.sparkSession
    # the output's columns and types: the task's own scores of the first rows (all of them if few)
    sample = frame.limit(2_000).toPandas()
    out = scorer(sample)
    if out.empty:
        out = scorer(frame.toPandas())
    schema = _schema(spark, out)
    parts = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    ordered = frame.repartition(parts, KEY).sortWithinPartitions(KEY)
    names = [f.name for f in schema.fields]
    return ordered.mapInPandas(lambda batches: (s[names] for s in _by_customer(batches, scorer)), schema)


# tasks whose scoring rows are the day's feature snapshot as it stands (no columns made on the driver)
def _snapshot_rows(task: ModuleType, model) -> bool:
    from crm_platform.ml import churn

    return task is churn and not isinstance(model, churn.CountRule)


def score_day(warehouse, task: ModuleType, model, card: dict, cfg, fcfg, day: date,
              events: str = "core.customer_events") -> pd.DataFrame:
    """The scores of ``day`` for every customer of the snapshot on the Spark warehouse, made on the
    executors. Refused, with the reason, for a champion whose scoring rows need columns fitted on
    the driver (the BTYD count models of CLV and of churn's count rules)."""
    if not _snapshot_rows(task, model):
        raise ValueError(f"{task.TASK} with a {type(model).__name__} champion scores from count-model columns fitted "
                         "on the driver: score it with ml.serving.score_day (the DuckDB path)")
    relation = training.snapshot(warehouse, fcfg, day, events)
    frame = warehouse.dataframe(f"SELECT * FROM {relation}")
    out = scores(frame, task, model, card, cfg).toPandas()
    return out.sort_values(KEY, ignore_index=True)
