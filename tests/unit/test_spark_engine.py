"""The heavy stages on Spark (local mode, two cores) and on DuckDB give the same tables: the
staged contacts of a generated world handed to Spark's Parquet warehouse, matched and resolved on
both engines, and the golden records built in DuckDB from each engine's identity tables."""

import shutil

import duckdb
import pytest

from crm_platform.golden import survivorship as golden
from crm_platform.identity import resolve
from tests.conftest import generator_spec
from tests.engines import differences

pytestmark = [pytest.mark.slow, pytest.mark.spark]

STAGING = "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema = 'staging'"
IDENTITY = ("records", "candidate_pairs", "patterns", "match_weights", "pair_scores", "links", "crosswalk",
            "review_queue", "id_registry", "id_changes")
# when a row was written: the two engines ran at other instants
TIMES = ("_built_at", "trained_at", "resolved_at", "minted_at", "changed_at", "retired_at")


@pytest.fixture(scope="module")
def both(loaded_world, spark, tmp_path_factory):
    from crm_platform.core.spark import SparkWarehouse, publish

    root = tmp_path_factory.mktemp("engines")
    shutil.copy(loaded_world, root / "warehouse.duckdb")
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    publish(con, [t for (t,) in con.execute(STAGING).fetchall()], root / "spark")
    on_spark = SparkWarehouse(spark, root / "spark")
    spec = generator_spec()
    reports = {}
    for name, engine in (("duckdb", con), ("spark", on_spark)):
        reports[name] = resolve.match(engine, spec), resolve.resolve(engine, spec)
    yield con, on_spark, reports, root
    on_spark.close()
    con.close()


@pytest.mark.parametrize("table", IDENTITY)
def test_identity_tables_are_equal_on_both_engines(both, table):
    con, on_spark, _, _ = both
    a = con.execute(f"SELECT * FROM identity.{table}").df()
    b = on_spark.execute(f"SELECT * FROM identity.{table}").df()
    assert len(a) == len(b)
    assert differences(a, b, TIMES) == ""


def test_both_engines_report_the_same_resolution(both):
    _, _, reports, _ = both
    (dm, dr), (sm, sr) = reports["duckdb"], reports["spark"]
    assert dm.decisions == sm.decisions and dm.candidate_pairs == sm.candidate_pairs > 0
    assert dm.prior_match_probability == pytest.approx(sm.prior_match_probability, rel=1e-9)
    assert (dr.records, dr.customers, dr.links_accepted, dr.refused) == (sr.records, sr.customers, sr.links_accepted, sr.refused)
    assert dr.customers < dr.records                         # duplicates were merged, on both


def test_golden_records_built_in_duckdb_from_the_spark_tables_are_the_same(both):
    from crm_platform.core.spark import attach

    con, _, _, root = both
    golden.build(con, golden.load_rules())
    expected = con.execute("SELECT * FROM core.customers").df()
    other = duckdb.connect(str(root / "from_spark.duckdb"))
    attach(other, [f"identity.{t}" for t in ("records", "crosswalk")], root / "spark")
    attach(other, [t for (t,) in con.execute(STAGING).fetchall()], root / "spark")
    golden.build(other, golden.load_rules())
    assert differences(expected, other.execute("SELECT * FROM core.customers").df(), TIMES) == ""
    other.close()
