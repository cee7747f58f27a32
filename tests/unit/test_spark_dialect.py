"""The DuckDB SQL of the stages on Spark: the translation (crm_platform.core.spark_dialect) and
each rewritten idiom giving DuckDB's values on a Spark session."""

import datetime as dt

import duckdb
import pandas as pd
import pytest

pytest.importorskip("sqlglot", reason="the spark extra is not installed (pip install -e '.[spark]')")

from crm_platform.core import dialect  # noqa: E402
from crm_platform.core.spark_dialect import bind, spark_sql  # noqa: E402


def test_parameters_become_literals_in_the_order_written_and_a_question_mark_in_text_stays():
    sql = bind("SELECT ?::TIMESTAMP AS t, '?' AS q FROM x WHERE lower(?) = a AND b > ? AND c IS ?",
               [dt.datetime(2026, 1, 2, 3, 4, 5), "O'Brien", 0.25, None])
    assert "'?' AS q" in sql
    assert sql.index("2026-01-02 03:04:05") < sql.index("O''Brien") < sql.index("0.25") < sql.index("NULL")
    assert "CAST('0.25' AS DOUBLE)" in sql                   # a float binds as a DOUBLE, as in DuckDB
    with pytest.raises(ValueError, match="2 placeholders, 1 parameters"):
        bind("SELECT ? + ?", [1])


def test_hash_is_refused_because_engines_differ():
    with pytest.raises(ValueError, match="stable_hash"):
        spark_sql("SELECT * FROM t ORDER BY hash(id) LIMIT 5")


def test_list_functions_are_spelled_for_spark():
    out = spark_sql("SELECT len(list_intersect(a, b)) > 0, list_has_any(a, b), array_length(c), len(name), "
                    "list_distinct(d) FROM t")
    assert "SIZE(ARRAY_INTERSECT(a, b)) > 0" in out and "ARRAYS_OVERLAP(ARRAY_COMPACT(a), ARRAY_COMPACT(b))" in out and "SIZE(c)" in out
    assert "LENGTH(name)" in out and "ARRAY_DISTINCT(ARRAY_COMPACT(d))" in out


VALUES = pd.DataFrame({
    "a": ["martha", "dwayne", "dixon", "baur", "andrea", "", None, "müller", "heinrich", "ab"],
    "b": ["marhta", "duane", "dicksonx", "becker", "bradnt", "", "x", "mueller", "schneider", "ba"],
})


@pytest.mark.slow
def test_rewritten_functions_give_duckdbs_values_on_spark(spark, tmp_path):
    from crm_platform.core.spark import SparkWarehouse
    from tests.engines import differences

    sql = """SELECT a, b, jaro_winkler_similarity(a, b) AS jw, damerau_levenshtein(a, b) AS dl,
               len(list_distinct([a, b, NULL, a])) AS n_distinct, list_sort([b, a]) AS sorted_pair,
               len(list_intersect([a, 'x'], [b, 'x'])) AS shared, list_has_any([a], [b]) AS any_shared,
               {sample} AS sampled, {hashed} AS hashed
        FROM v""".format(sample=dialect.stable_sample("coalesce(a, '-') || b", 0.5),
                         hashed=dialect.stable_hash("coalesce(a, '-')"))
    con = duckdb.connect()
    con.register("v", VALUES)
    on_duckdb = con.execute(sql).df()
    wh = SparkWarehouse(spark, tmp_path / "wh")
    wh.register("v", VALUES)
    on_spark = wh.execute(sql).df()
    assert differences(on_duckdb, on_spark) == ""
    assert 0 < on_duckdb.sampled.sum() < len(VALUES)        # the sample keeps some, not all
    assert on_duckdb.jw.notna().sum() == 9 and on_duckdb.loc[0, "dl"] == 1


@pytest.mark.slow
def test_tables_are_parquet_folders_that_the_next_session_finds(spark, tmp_path):
    from crm_platform.core.spark import SparkWarehouse

    wh = SparkWarehouse(spark, tmp_path / "wh")
    wh.execute("CREATE SCHEMA IF NOT EXISTS identity")
    wh.execute("CREATE TABLE identity.ids (id VARCHAR, n INTEGER, at TIMESTAMP)")
    wh.execute("INSERT INTO identity.ids SELECT 'a', 1, ?", [dt.datetime(2026, 1, 1)])
    wh.execute("INSERT INTO identity.ids BY NAME SELECT 2 AS n, 'b' AS id")
    wh.execute("UPDATE identity.ids g SET n = n + 10 WHERE id = ?", ["b"])
    wh.execute("DELETE FROM identity.ids WHERE id = 'a'")
    wh.execute("CREATE OR REPLACE TABLE identity.ids AS SELECT *, n * 2 AS m FROM identity.ids")  # reads itself
    assert wh.execute("SELECT id, n, m, at FROM identity.ids").fetchall() == [("b", 12, 24, None)]
    assert list((tmp_path / "wh" / "identity" / "ids").glob("*.parquet"))
    again = SparkWarehouse(spark, tmp_path / "wh")
    assert again.table_exists("identity.ids") and again.execute("SELECT count(*) FROM identity.ids").fetchall() == [(1,)]
    with pytest.raises(ValueError, match="has no column"):
        wh.execute("INSERT INTO identity.ids BY NAME SELECT 'c' AS id, 1 AS no_such_column")


@pytest.mark.slow
def test_update_from_a_joined_table_changes_the_matched_rows_as_on_duckdb(spark, tmp_path):
    """The form identity resolution retires ids with: only matched rows change, from their match."""
    from crm_platform.core.spark import SparkWarehouse

    statements = [
        "CREATE SCHEMA IF NOT EXISTS identity",
        "CREATE TABLE identity.reg AS SELECT * FROM (VALUES ('a', 'active', NULL), ('b', 'active', NULL), "
        "('c', 'retired', 'x')) t(customer_id, status, retired_into)",
        "CREATE TABLE identity.xw AS SELECT 'a' AS customer_id",
        """UPDATE identity.reg g SET status = 'retired', retired_into = r.into
           FROM (SELECT a.customer_id, 'a' AS into FROM identity.reg a WHERE a.status = 'active'
                 AND NOT EXISTS (SELECT 1 FROM identity.xw x WHERE x.customer_id = a.customer_id)) r
           WHERE g.customer_id = r.customer_id""",
    ]
    con = duckdb.connect()
    wh = SparkWarehouse(spark, tmp_path / "wh")
    for sql in statements:
        con.execute(sql)
        wh.execute(sql)
    query = "SELECT * FROM identity.reg ORDER BY customer_id"
    expected = [("a", "active", None), ("b", "retired", "a"), ("c", "retired", "x")]
    assert con.execute(query).fetchall() == expected
    assert wh.execute(query).fetchall() == expected
