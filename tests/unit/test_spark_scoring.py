"""Scoring on Spark's executors gives the DuckDB path's scores: every eligible customer once, the
same probability and band; a task with several rows per customer (next-best offer) keeps each
customer's rows together across partitions and Arrow batches."""

import shutil

import duckdb
import pandas as pd
import pytest

from crm_platform.features import snapshots as features
from crm_platform.ml import churn, distributed, load_config
from tests.engines import differences

pytestmark = [pytest.mark.slow, pytest.mark.spark]

CFG, FCFG = load_config(), features.load_config()


@pytest.fixture(scope="module")
def scored(timeline_world, spark, tmp_path_factory, monkeypatch_module):
    from crm_platform.core.spark import SparkWarehouse, publish

    root = tmp_path_factory.mktemp("scoring")
    shutil.copy(timeline_world, root / "warehouse.duckdb")
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    # a feature-model champion (count rules score from columns fitted on the driver)
    monkeypatch_module.setattr(churn, "count_rules", lambda available, horizon: {})
    model, card = churn.train(con, CFG, FCFG)
    day = con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]
    features.build_snapshot(con, FCFG, day)
    publish(con, ["features.customer_features", "core.customer_events"], root / "spark")
    on_spark = SparkWarehouse(spark, root / "spark")
    expected = churn.score(model, card, churn.scoring_frame(con, FCFG, day, model=model), CFG)
    got = distributed.score_day(on_spark, churn, model, card, CFG, FCFG, day)
    yield expected, got, model, card, on_spark, day
    on_spark.close()
    con.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_customer_gets_the_duckdb_paths_churn_score(scored):
    expected, got, model, _, _, _ = scored
    assert not isinstance(model, churn.CountRule)
    assert len(got) == len(expected) > 500 and got["customer_id"].is_unique
    assert differences(expected, got, ()) == ""
    assert set(got["risk_band"]) == set(expected["risk_band"])


def test_a_customers_rows_stay_together_across_batches_and_partitions(scored, spark):
    _, _, _, _, _, _ = scored
    rows = pd.DataFrame({"customer_id": [f"c{i // 3:04d}" for i in range(3_000)], "v": range(3_000)})

    class PerCustomer:             # one output row per customer, with the number of its input rows
        @staticmethod
        def score(model, card, frame, cfg):
            return frame.groupby("customer_id", as_index=False).agg(rows=("v", "size"))

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "100")
    try:
        out = distributed.scores(spark.createDataFrame(rows), PerCustomer, None, {}, None, partitions=3).toPandas()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert len(out) == 1_000 and out["customer_id"].is_unique and set(out["rows"]) == {3}


def test_a_count_rule_champion_is_refused_with_the_reason(scored):
    _, _, _, card, on_spark, day = scored
    with pytest.raises(ValueError, match="count-model columns fitted on the driver"):
        distributed.score_day(on_spark, churn, churn.CountRule("bg_nbd_probability_alive", 90), card, CFG, FCFG, day)
